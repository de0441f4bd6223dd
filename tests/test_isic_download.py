"""dcgan.data.isic against the fake ISIC API v2 (tests/fake_isic.py) over real sockets, no mocking.

The fake itself is tested first (pagination, DSL, error bodies), since the client tests are only as
good as the fake is faithful. Retries are kept fast with a tiny backoff and Retry-After: 1.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from click.testing import CliRunner
from PIL import Image
from tqdm import tqdm

import isic_dataset
from dcgan.data import isic
from dcgan.data.isic import DownloadSummary, build_query, download_images
from dcgan.errors import UserError
from tests.conftest import REPO
from tests.fake_isic import BAD_QUERY, LICENSE_TEXTS, NOT_FOUND, FakeImage, FakeIsicServer

FAST: dict[str, Any] = {"backoff_factor": 0.01, "progress": False}


@pytest.fixture
def fake() -> Iterator[FakeIsicServer]:
    """40 images (38 public), fresh for each test so that faults and the request log are its own."""
    with FakeIsicServer(n_images=40) as server:
        yield server


@pytest.fixture(scope="module")
def archive() -> Iterator[FakeIsicServer]:
    """A larger read-only archive for the DSL and pagination checks of the fake."""
    with FakeIsicServer(n_images=250, seed=3) as server:
        yield server


def run(fake: FakeIsicServer, out: Path, **kwargs: Any) -> DownloadSummary:
    return download_images(out, api_url=fake.api_url, **{**FAST, **kwargs})


def image_files(folder: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted(folder.glob("ISIC_*"))}


def ledger(folder: Path) -> dict[str, dict[str, Any]]:
    return json.loads((folder / ".download-state.json").read_text())["files"]


def partials(folder: Path) -> list[Path]:
    return list(folder.rglob(".partial-*"))


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def ids(images: list[FakeImage]) -> list[str]:
    return [img.isic_id for img in images]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------------
# The fake is faithful


def test_fake_pages_count_cursor_and_ties(archive: FakeIsicServer) -> None:
    url = archive.api_url + "images/search/"
    first = requests.get(url, params={"limit": 4, "query": ""}, timeout=5).json()
    assert first["count"] == len(archive.visible()) == 238
    assert first["previous"] is None
    nxt = first["next"]
    assert nxt.startswith(archive.url + "/api/v2/images/search/?cursor=")
    assert list(parse_qs(urlsplit(nxt).query, keep_blank_values=True)) == ["cursor", "limit", "query"]
    cursor = base64.b64decode(parse_qs(urlsplit(nxt).query)["cursor"][0]).decode()
    assert cursor.startswith("o=1&p=2020-")  # image 4 ties with image 3: marker image 2, skip 1

    seen, pages, offsets = list(ids_of(first)), [first], 0
    while nxt:
        page = requests.get(nxt, timeout=5).json()
        assert page["count"] is None and page["previous"] is not None
        offsets += "o=" in base64.b64decode(parse_qs(urlsplit(nxt).query)["cursor"][0]).decode()
        seen += ids_of(page)
        pages.append(page)
        nxt = page["next"]
    assert seen == ids(archive.visible())  # every image once, in created order, ties included
    assert offsets > 10
    back = requests.get(pages[2]["previous"], timeout=5).json()
    assert ids_of(back) == ids_of(pages[1])


def search_page(archive: FakeIsicServer, limit: int) -> list[dict[str, Any]]:
    page = requests.get(archive.api_url + "images/search/", params={"limit": limit}, timeout=5).json()
    return page["results"]


def ids_of(page: dict[str, Any]) -> list[str]:
    return [r["isic_id"] for r in page["results"]]


def test_fake_limits_and_error_bodies(archive: FakeIsicServer) -> None:
    api = archive.api_url

    def get(path: str, **params: Any) -> requests.Response:
        return requests.get(api + path, params=params, timeout=5)

    assert len(get("images/search/", limit=0).json()["results"]) == 100
    assert len(get("images/search/", limit=500).json()["results"]) == 100
    bad_limit = get("images/search/", limit="ten")
    assert bad_limit.status_code == 422 and bad_limit.json()["detail"][0]["loc"] == ["query", "limit"]
    bad_cursor = get("images/search/", cursor="!!not-base64")
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["detail"][0]["msg"] == "Value error, Invalid cursor."
    assert get("images/search/", collections="70,x").status_code == 422
    assert get("images/ISIC_0024306/").json() == NOT_FOUND  # routes the client never calls are left out
    lic = get("zip-download/license-file/CC-BY/")
    assert lic.headers["Content-Type"].startswith("text/plain") and lic.text == LICENSE_TEXTS["CC-BY"]
    assert get("zip-download/license-file/GPL/").status_code == 404
    assert get("collections/66/").status_code == 404  # private
    assert get("collections/70/").json()["name"] == "Challenge 2020: Training"


def test_fake_records_omit_nulls_and_serve_own_bytes(archive: FakeIsicServer) -> None:
    records = search_page(archive, 100)
    for record in records:
        acquisition, clinical = record["metadata"]["acquisition"], record["metadata"]["clinical"]
        assert {"pixels_x", "pixels_y"} <= set(acquisition)
        assert None not in acquisition.values() and None not in clinical.values()
        assert not {"benign_malignant", "diagnosis", "anatom_site_general"} & set(clinical)
    assert len({frozenset(r["metadata"]["clinical"]) for r in records}) > 10  # key sets differ
    record = records[3]  # a PNG: served as announced, as the real publish step leaves PNGs alone
    body = requests.get(record["files"]["full"]["url"], timeout=5)
    assert body.content[:8] == b"\x89PNG\r\n\x1a\n" and len(body.content) == record["files"]["full"]["size"]
    thumb = requests.get(record["files"]["thumbnail_256"]["url"], timeout=5)
    assert thumb.content[:2] == b"\xff\xd8" and len(thumb.content) > record["files"]["thumbnail_256"]["size"]


def test_fake_jpegs_carry_credit_and_are_larger_than_announced(archive: FakeIsicServer) -> None:
    records = search_page(archive, 40)
    for record in records:
        full = requests.get(record["files"]["full"]["url"], timeout=5)
        announced, served = record["files"]["full"]["size"], len(full.content)
        assert int(full.headers["Content-Length"]) == served
        img = Image.open(io.BytesIO(full.content))
        img.load()
        if img.format == "JPEG":
            assert served - announced > 1000
            assert b"Photoshop 3.0\x00" in full.content and record["isic_id"].encode() in full.content
            assert b"ISIC Archive" in img.info["photoshop"][0x0404]
        else:
            assert served == announced and img.format in ("PNG", "TIFF")
    assert {Image.open(io.BytesIO(requests.get(r["files"]["full"]["url"], timeout=5).content)).format
            for r in records} == {"JPEG", "PNG", "TIFF"}
    with FakeIsicServer(n_images=5, credit=False) as exact:
        for img in exact.images:
            assert (len(img.full), len(img.thumbnail)) == (img.full_size, img.thumbnail_size)


DSL_CASES: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
    ("diagnosis_1:Malignant", lambda v: v.get("diagnosis_1") == "Malignant"),
    ('diagnosis_3:"Melanoma Invasive"', lambda v: v.get("diagnosis_3") == "Melanoma Invasive"),
    ("age_approx:40 AND sex:male", lambda v: v.get("age_approx") == 40 and v.get("sex") == "male"),
    ("sex:female diagnosis_1:Benign",  # implicit AND
     lambda v: v.get("sex") == "female" and v.get("diagnosis_1") == "Benign"),
    ("(diagnosis_1:Malignant OR diagnosis_1:Indeterminate) AND melanocytic:true",
     lambda v: v.get("diagnosis_1") in ("Malignant", "Indeterminate") and v.get("melanocytic") is True),
    ("diagnosis_1:Malignant OR sex:female AND age_approx:30",  # AND binds tighter than OR
     lambda v: (v.get("diagnosis_1") == "Malignant"
                or (v.get("sex") == "female" and v.get("age_approx") == 30))),
    ("hairy:false", lambda v: v.get("hairy") is False),
    ("isic_id:ISIC_0024310", lambda v: v["isic_id"] == "ISIC_0024310"),
    ('image_type:"clinical: close-up" OR public:false',
     lambda v: v.get("image_type") == "clinical: close-up"),
]


@pytest.mark.parametrize(("query", "predicate"), DSL_CASES, ids=[q for q, _ in DSL_CASES])
def test_fake_dsl_matches_an_independent_predicate(archive: FakeIsicServer, query: str,
                                                   predicate: Callable[[dict[str, Any]], bool]) -> None:
    expected = [img.isic_id for img in archive.visible() if predicate(img.searchable())]
    assert 0 < len(expected) < len(archive.visible())  # a filter that filters
    assert ids(archive.search(query)) == expected


def test_fake_dsl_is_case_sensitive(archive: FakeIsicServer) -> None:
    assert archive.search("diagnosis_1:malignant") == []
    assert archive.search("diagnosis_1:Malignant")


@pytest.mark.parametrize("query", [
    "benign_malignant:malignant", "diagnosis:melanoma", "anatom_site_general:torso", "Sex:male",
    "sex:male AND", "(sex:male", "sex:ma.le", 'sex:"male', "age_approx:old", "melanocytic:yes",
    "sex:[1 TO 2]", "age_approx:[1 TO 2", "sex male"])
def test_fake_rejects_bad_queries_with_400(archive: FakeIsicServer, query: str) -> None:
    response = requests.get(archive.api_url + "images/search/", params={"query": query}, timeout=5)
    assert response.status_code == 400 and response.json() == BAD_QUERY


# --------------------------------------------------------------------------------------------------
# The client: listing


def test_follows_pages_and_stops_once_n_are_listed(tmp_path: Path) -> None:
    with FakeIsicServer(n_images=250) as fake:
        summary = run(fake, tmp_path, n=150)
        listing = fake.requests_to("images/search/")
        first_page = requests.get(fake.api_url + "images/search/", params={"limit": 100}, timeout=5).json()
        visible = fake.visible()
    assert summary == DownloadSummary(found=len(visible), downloaded=150, skipped=0, failed=[])
    assert len(visible) == 238 and len(listing) == 2  # 150 of 238: the third page is never asked for
    assert listing[0].params == {"limit": ["100"]}
    nxt = urlsplit(first_page["next"])
    assert listing[1].raw == f"{nxt.path}?{nxt.query}"  # `next` followed verbatim
    assert image_files(tmp_path) == {img.isic_id: img.full for img in visible[:150]}
    assert len(read_csv(tmp_path / "metadata.csv")[1]) == 150


def test_offset_and_small_pages(fake: FakeIsicServer, tmp_path: Path) -> None:
    summary = run(fake, tmp_path, n=5, offset=7, page_size=4)
    listing = fake.requests_to("images/search/")
    assert summary.found == 38 and summary.downloaded == 5
    assert sorted(image_files(tmp_path)) == ids(fake.visible()[7:12])
    assert len(listing) == 3  # 12 records at 4 a page
    assert all(r.params["limit"] == ["4"] and "offset" not in r.params for r in listing)


def test_server_side_page_cap_is_followed(fake: FakeIsicServer, tmp_path: Path) -> None:
    fake.max_limit = 6
    summary = run(fake, tmp_path, n=20)
    assert summary.downloaded == 20
    assert sorted(image_files(tmp_path)) == ids(fake.visible()[:20])
    assert len(fake.requests_to("images/search/")) == 4
    assert fake.requests_to("images/search/")[0].params["limit"] == ["20"]  # never more than 100


def test_query_benign_malignant_and_collections_combine(tmp_path: Path) -> None:
    with FakeIsicServer(n_images=120, seed=5) as fake:
        summary = run(fake, tmp_path, n=500, query="sex:male OR sex:female", benign_malignant="malignant",
                      collections=["70", " 249"])
        listing = fake.requests_to("images/search/")
        expected = [img.isic_id for img in fake.visible()
                    if img.clinical.get("diagnosis_1") == "Malignant" and img.clinical.get("sex")
                    and img.collections & {70, 249}]
        checked = [r.path for r in fake.requests_to("/") if "/collections/" in r.path]
    assert 3 < len(expected) < 60
    assert summary.found == summary.downloaded == len(expected)
    assert sorted(image_files(tmp_path)) == expected  # the OR stayed inside the parentheses
    assert "query=%28sex%3Amale+OR+sex%3Afemale%29+AND+diagnosis_1%3AMalignant" in listing[0].raw
    assert listing[0].params["collections"] == ["70,249"]
    assert checked == ["/api/v2/collections/70/", "/api/v2/collections/249/"]


def test_quoted_query_is_url_encoded(fake: FakeIsicServer, tmp_path: Path) -> None:
    summary = run(fake, tmp_path, n=100, query='diagnosis_3:"Melanoma Invasive"')
    expected = [i.isic_id for i in fake.visible() if i.clinical.get("diagnosis_3") == "Melanoma Invasive"]
    assert expected and sorted(image_files(tmp_path)) == expected and summary.found == len(expected)
    assert "query=diagnosis_3%3A%22Melanoma+Invasive%22" in fake.requests_to("images/search/")[0].raw


def test_build_query() -> None:
    assert build_query(None, None) == ""
    assert build_query("  ", "benign") == "diagnosis_1:Benign"
    assert build_query("a:b OR c:d", "Indeterminate") == "(a:b OR c:d) AND diagnosis_1:Indeterminate"
    with pytest.raises(UserError, match="--benign-malignant"):
        build_query(None, "unknown")


@pytest.mark.parametrize("query", ["benign_malignant:malignant", "diagnosis:melanoma"])
def test_v1_fields_are_a_clear_error(fake: FakeIsicServer, tmp_path: Path, query: str) -> None:
    with pytest.raises(UserError, match=r"Could not parse search query\..*gone from API v2") as err:
        run(fake, tmp_path, query=query)
    assert "\n" not in str(err.value)
    assert not image_files(tmp_path)


def test_collection_ids_are_checked(fake: FakeIsicServer, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="numeric collection ids"):
        run(fake, tmp_path, collections=["70", "7a"])
    assert fake.requests == []  # refused before asking the server
    with pytest.raises(UserError, match="collection 66 does not exist or is not public"):
        run(fake, tmp_path, collections=["66"])
    empty = run(fake, tmp_path, collections=[212])
    assert empty == DownloadSummary(found=0, downloaded=0, skipped=0, failed=[])


def test_empty_result_and_n_zero(fake: FakeIsicServer, tmp_path: Path) -> None:
    summary = run(fake, tmp_path / "a", query="diagnosis_1:malignant")  # case-sensitive: no match
    assert summary == DownloadSummary(found=0, downloaded=0, skipped=0, failed=[])
    counted = run(fake, tmp_path / "b", n=0)
    assert counted == DownloadSummary(found=38, downloaded=0, skipped=0, failed=[])
    assert list(tmp_path.iterdir()) == []  # nothing to fetch, no folder
    assert [r.params["limit"] for r in fake.requests_to("images/search/")] == [["100"], ["1"]]


def test_unreachable_api_is_a_user_error_and_creates_no_folder(tmp_path: Path) -> None:
    api = f"http://127.0.0.1:{free_port()}/api/v2/"
    with pytest.raises(UserError) as err:
        download_images(tmp_path / "new" / "orig", api_url=api, **FAST)
    assert str(err.value) == f"cannot connect to the ISIC API at {api} (connection refused)"
    assert list(tmp_path.iterdir()) == []  # the folder is made only once the first page is read


def test_wrong_api_url_is_a_user_error(fake: FakeIsicServer, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"HTTP 404 Not Found .*: Not Found \(is --api-url right"):
        download_images(tmp_path / "orig", api_url=fake.url + "/api/v1/", **FAST)
    assert not (tmp_path / "orig").exists()


# --------------------------------------------------------------------------------------------------
# The client: retries and faults


def test_429_with_retry_after_is_honoured(fake: FakeIsicServer, tmp_path: Path) -> None:
    target = fake.visible()[2]
    fake.fail_next(429, retry_after="1", path_prefix="/api/v2/images/search/")
    fake.fail_next(429, retry_after="1", path_prefix=f"/files/images/{target.isic_id}")
    summary = run(fake, tmp_path, n=5)
    listing = fake.requests_to("images/search/")
    image_tries = [r for r in fake.requests if target.isic_id in r.path]
    assert summary.downloaded == 5 and not summary.failed
    assert len(listing) == 2 and listing[1].at - listing[0].at >= 0.95
    assert len(image_tries) == 2 and image_tries[1].at - image_tries[0].at >= 0.95
    assert not fake.fail_statuses


def test_burst_of_503s_is_ridden_out(fake: FakeIsicServer, tmp_path: Path) -> None:
    fake.fail_next(503, times=6, path_prefix="/files/")
    summary = run(fake, tmp_path, n=10, workers=3)
    assert summary.downloaded == 10 and not summary.failed and not fake.fail_statuses
    assert len([r for r in fake.requests if r.path.startswith("/files/")]) == 16
    assert image_files(tmp_path) == {img.isic_id: img.full for img in fake.visible()[:10]}


def test_persistent_error_fails_that_image_only(fake: FakeIsicServer, tmp_path: Path) -> None:
    target = fake.visible()[4].isic_id
    fake.fail_next(503, times=3, path_prefix=f"/files/images/{target}")
    summary = run(fake, tmp_path, n=8, retries=2)
    assert summary.failed == [target] and summary.downloaded == 7
    assert target not in image_files(tmp_path) and not partials(tmp_path)
    assert target not in {row["isic_id"] for row in read_csv(tmp_path / "metadata.csv")[1]}


def test_connection_dropped_mid_body_is_retried(fake: FakeIsicServer, tmp_path: Path) -> None:
    dropped, truncated, hopeless = (img.isic_id for img in fake.visible()[1:4])
    fake.drop_mid_body[dropped] = 1
    fake.truncate_body[truncated] = 2
    fake.drop_mid_body[hopeless] = 10
    summary = run(fake, tmp_path, n=6, stream_attempts=3)
    tries = Counter(r.path.split("/")[-1].split(".")[0] for r in fake.requests
                    if r.path.startswith("/files/"))
    assert summary.failed == [hopeless] and summary.downloaded == 5
    assert (tries[dropped], tries[truncated], tries[hopeless]) == (2, 3, 3)
    files = image_files(tmp_path)
    assert files[dropped] == fake.image(dropped).full and files[truncated] == fake.image(truncated).full
    assert hopeless not in files and not partials(tmp_path)


def test_chunked_bodies_are_complete_when_the_stream_ends_cleanly(fake: FakeIsicServer,
                                                                  tmp_path: Path) -> None:
    vis = fake.visible()
    fake.chunked = True
    fake.drop_mid_body[vis[1].isic_id] = 1  # the stream stops before its last chunk: retried
    fake.drop_mid_body[vis[3].isic_id] = 1  # (a PNG)
    summary = run(fake, tmp_path, n=6)
    assert summary == DownloadSummary(found=38, downloaded=6, skipped=0, failed=[])
    assert image_files(tmp_path) == {img.isic_id: img.full for img in vis[:6]}
    assert sorted(fake.bodies_requested()) == sorted([*ids(vis[:6]), vis[1].isic_id, vis[3].isic_id])
    head = requests.get(fake.record(vis[0])["files"]["full"]["url"], timeout=5)
    assert head.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in head.headers


def test_announced_size_is_only_a_hint(fake: FakeIsicServer, tmp_path: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    vis = fake.visible()
    fake.wrong_size.add(vis[3].isic_id)  # a PNG announced 100 bytes too big
    huge = 10**12  # a hostile or broken record: the client must not trust it for anything but a hint
    url = f"{fake.url}/files/images/{vis[1].isic_id}.jpg"
    vis[1].override["files"] = {"full": {"url": url, "size": huge}}
    with caplog.at_level(logging.DEBUG, logger="dcgan.data.isic"):
        summary = run(fake, tmp_path, n=6)
    assert summary == DownloadSummary(found=38, downloaded=6, skipped=0, failed=[])
    assert image_files(tmp_path) == {img.isic_id: img.full for img in vis[:6]}  # no preallocation either
    assert all(len(img.full) > img.full_size for img in vis[:6] if img.ext == "jpg")
    assert f"{vis[1].isic_id}: {len(vis[1].full)} bytes, the API announced {huge}" in caplog.text
    png = vis[3]
    assert f"{png.isic_id}: {len(png.full)} bytes, the API announced {len(png.full) + 100}" in caplog.text
    assert sorted(fake.bodies_requested()) == ids(vis[:6])


@pytest.mark.parametrize("with_length", [True, False])
def test_oversized_body_is_refused_without_filling_the_disk(fake: FakeIsicServer, tmp_path: Path,
                                                            with_length: bool) -> None:
    vis = fake.visible()
    fake.junk_body[vis[0].isic_id] = (isic.BODY_FLOOR + (4 << 20), with_length)  # announced: about 3 KB
    summary = run(fake, tmp_path, n=3)
    assert summary.failed == [vis[0].isic_id] and summary.downloaded == 2
    assert vis[0].isic_id not in image_files(tmp_path) and not partials(tmp_path)
    assert fake.bodies_requested().count(vis[0].isic_id) == 1  # not worth a retry
    assert isic.body_limit(10**12) == 512 << 20 and isic.body_limit(0) == isic.BODY_FLOOR
    assert isic.body_limit(2 << 20) == 40 << 20


def test_a_body_that_is_no_image_fails_without_retry(fake: FakeIsicServer, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    vis = fake.visible()
    fake.junk_body[vis[0].isic_id] = (5000, True)
    summary = run(fake, tmp_path, n=2)
    assert summary.failed == [vis[0].isic_id] and summary.downloaded == 1
    assert fake.bodies_requested().count(vis[0].isic_id) == 1
    assert f"failed {vis[0].isic_id}: not a readable JPEG image" in capsys.readouterr().err
    assert vis[0].isic_id not in ledger(tmp_path) and not partials(tmp_path)


def test_hostile_records_never_write_outside(fake: FakeIsicServer, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "out"
    vis = fake.visible()
    vis[0].override["isic_id"] = "../evil"
    vis[1].override["isic_id"] = "ISIC_0000001/../../../evil2"
    vis[2].override["files"] = {"full": {"url": f"{fake.url}/files/images/{vis[2].isic_id}.sh", "size": 10}}
    vis[3].override["files"] = None
    vis[4].override["files"] = {"full": {"url": "file:///etc/passwd", "size": 10}}
    summary = run(fake, out, n=8)
    assert summary.failed == sorted(["../evil", "ISIC_0000001/../../../evil2", vis[2].isic_id,
                                     vis[3].isic_id, vis[4].isic_id])
    assert summary.downloaded == 3
    assert not [r for r in fake.requests if r.path.endswith(".sh")]  # refused before fetching
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    licenses = [f"deep/out/licenses/{lic}.txt" for lic in {img.copyright_license for img in vis[5:8]}]
    assert written == sorted([*(f"deep/out/{i.isic_id}.{i.ext}" for i in vis[5:8]), "deep/out/metadata.csv",
                              "deep/out/attribution.txt", *licenses, "deep/out/.lock",
                              "deep/out/.download-state.json"])


def test_ids_must_be_exactly_isic_and_seven_ascii_digits(fake: FakeIsicServer, tmp_path: Path) -> None:
    vis = fake.visible()
    vis[0].override["isic_id"] = "ISIC_0000001\n"  # `$` would match before the newline
    vis[1].override["isic_id"] = "ISIC_\u0660\u0661\u0662\u0663\u0664\u0665\u0666"  # Arabic-Indic digits
    vis[2].override["isic_id"] = "ISIC_\uff10\uff10\uff10\uff10\uff10\uff10\uff11"  # fullwidth digits
    summary = run(fake, tmp_path, n=5)
    shown = [vis[i].override["isic_id"].encode("unicode_escape").decode("ascii") for i in range(3)]
    assert shown[0] == "ISIC_0000001\\n"
    assert summary.failed == sorted(shown)
    assert summary.downloaded == 2
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_file() and p.name.startswith("ISIC_"))
    assert names == sorted(f"{i.isic_id}.{i.ext}" for i in vis[3:5])
    assert all(name.isascii() and "\n" not in name for name in names)
    rows = read_csv(tmp_path / "metadata.csv")[1]
    assert [r["isic_id"] for r in rows] == ids(vis[3:5])


def test_odd_license_names_are_not_fetched(fake: FakeIsicServer, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    vis = fake.visible()
    vis[0].override["copyright_license"] = "CC-0\n"
    vis[1].override["copyright_license"] = "../CC-0"
    summary = run(fake, tmp_path, n=2)
    assert summary.downloaded == 2
    err = capsys.readouterr().err
    assert "not fetching a license with the odd name 'CC-0\\n'" in err
    assert "not fetching a license with the odd name '../CC-0'" in err
    assert not [r for r in fake.requests if "license-file" in r.path]
    assert not (tmp_path / "licenses").exists() or list((tmp_path / "licenses").iterdir()) == []
    assert isic.LICENSE_NAME.fullmatch("CC-BY-NC") and not isic.LICENSE_NAME.fullmatch("CC-BY\n")


def test_disk_full_is_a_user_error_naming_the_folder(fake: FakeIsicServer, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(_path: Path) -> IO[bytes]:  # the kernel's own ENOSPC, not a made-up exception
        return open("/dev/full", "wb", buffering=0)

    monkeypatch.setattr(isic, "_open_for_writing", full_disk)
    with pytest.raises(UserError) as err:
        run(fake, tmp_path, n=6, workers=2)
    assert str(err.value) == f"disk full while writing into {tmp_path}"
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]


# --------------------------------------------------------------------------------------------------
# The client: files on disk


def test_metadata_attribution_and_licenses(fake: FakeIsicServer, tmp_path: Path) -> None:
    summary = run(fake, tmp_path, n=100)
    visible = fake.visible()
    assert summary.downloaded == len(visible) == 38
    header, rows = read_csv(tmp_path / "metadata.csv")
    keys = {k for img in visible for k in (*img.acquisition, *img.clinical)}
    assert header == ["isic_id", "attribution", "copyright_license", *sorted(keys)]
    assert [r["isic_id"] for r in rows] == ids(visible)
    first = visible[0]
    assert rows[0]["pixels_x"] == str(first.acquisition["pixels_x"])
    assert rows[0]["melanocytic"] == str(first.clinical["melanocytic"]) in ("True", "False")
    missing = next(k for k in sorted(keys) if k not in first.acquisition and k not in first.clinical)
    assert rows[0][missing] == ""
    assert (tmp_path / "metadata.csv").read_bytes().count(b"\r\n") == 39

    names = (tmp_path / "attribution.txt").read_text(encoding="utf8").split("\n\n")
    counts = Counter(img.attribution for img in visible)
    assert sorted(names) == sorted(counts) and names[-1] == "Anonymous"
    assert [counts[n] for n in names[:-1]] == sorted((counts[n] for n in names[:-1]), reverse=True)
    assert not (tmp_path / "attribution.txt").read_text(encoding="utf8").endswith("\n")

    licenses = {img.copyright_license for img in visible}
    assert {p.stem: p.read_text() for p in (tmp_path / "licenses").iterdir()} == {
        lic: LICENSE_TEXTS[lic] for lic in licenses}


def test_rerun_skips_complete_files_and_merges_metadata(fake: FakeIsicServer, tmp_path: Path) -> None:
    vis = fake.visible()
    assert run(fake, tmp_path, n=6).downloaded == 6
    header, rows = read_csv(tmp_path / "metadata.csv")
    rows.append({"isic_id": "ISIC_9999999", "attribution": "Old", "copyright_license": "CC-0",
                 "note": "keep"})
    with open(tmp_path / "metadata.csv", "w", newline="", encoding="utf8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*header, "note"])
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / f"{vis[1].isic_id}.{vis[1].ext}").write_bytes(vis[1].full[:100])  # truncated by a crash
    (tmp_path / ".partial-stale.jpg").write_bytes(b"left by kill -9")
    vis[0].clinical["sex"] = "changed"

    summary = run(fake, tmp_path, n=10)
    assert summary == DownloadSummary(found=38, downloaded=5, skipped=5, failed=[])
    assert sorted(fake.bodies_requested()[6:]) == sorted([vis[1].isic_id, *ids(vis[6:10])])
    assert image_files(tmp_path) == {img.isic_id: img.full for img in vis[:10]}
    assert not partials(tmp_path)
    header, rows = read_csv(tmp_path / "metadata.csv")
    by_id = {r["isic_id"]: r for r in rows}
    assert [r["isic_id"] for r in rows] == sorted([*ids(vis[:10]), "ISIC_9999999"])  # none lost, no duplicate
    assert by_id[vis[0].isic_id]["sex"] == "changed"  # the new value wins
    assert by_id["ISIC_9999999"]["note"] == "keep" and "note" in header
    assert "Old" in (tmp_path / "attribution.txt").read_text(encoding="utf8").split("\n\n")


def test_unmergeable_metadata_is_refused_before_downloading(fake: FakeIsicServer, tmp_path: Path) -> None:
    (tmp_path / "metadata.csv").write_text("name,size\nx,1\n")
    with pytest.raises(UserError, match="no isic_id column"):
        run(fake, tmp_path, n=3)
    assert not image_files(tmp_path) and fake.requests == []


def test_ragged_metadata_rows_are_merged(fake: FakeIsicServer, tmp_path: Path) -> None:
    (tmp_path / "metadata.csv").write_text("isic_id,attribution\nISIC_1111111,Someone,stray cell\n")
    assert run(fake, tmp_path, n=2).downloaded == 2
    header, rows = read_csv(tmp_path / "metadata.csv")
    assert header[:3] == ["isic_id", "attribution", "copyright_license"]
    assert [r["isic_id"] for r in rows] == ["ISIC_0024306", "ISIC_0024307", "ISIC_1111111"]
    assert rows[-1]["attribution"] == "Someone" and None not in rows[-1]


def test_thumbnails(fake: FakeIsicServer, tmp_path: Path) -> None:
    vis = fake.visible()
    summary = run(fake, tmp_path, n=5, thumbnails=True)
    assert summary.downloaded == 5
    assert {p.name: p.read_bytes() for p in tmp_path.glob("ISIC_*")} == {
        f"{img.isic_id}.jpg": img.thumbnail for img in vis[:5]}  # vis[3] is a PNG; its thumbnail a JPEG
    assert {r.path.split("/")[2] for r in fake.requests if r.path.startswith("/files/")} == {"thumbnails"}
    assert all(len(img.thumbnail) > img.thumbnail_size for img in vis[:5])  # credit segments, as full JPEGs
    assert {v["kind"] for v in ledger(tmp_path).values()} == {"thumbnail_256"}

    assert run(fake, tmp_path, n=5, thumbnails=True).skipped == 5 and len(fake.bodies_requested()) == 5
    full = run(fake, tmp_path, n=5)  # a full image never passes for its thumbnail, nor the reverse
    assert (full.downloaded, full.skipped) == (5, 0)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("ISIC_*")} == {
        f"{img.isic_id}.{img.ext}": img.full for img in vis[:5]} | {  # the PNG's thumbnail stays beside it
        f"{img.isic_id}.jpg": img.thumbnail for img in vis[:5] if img.ext != "jpg"}


# --------------------------------------------------------------------------------------------------
# The CLI


def cli(*args: str) -> Any:
    return CliRunner().invoke(isic_dataset.cli, ["download", *args])


def test_cli_download(fake: FakeIsicServer, tmp_path: Path) -> None:
    result = cli(str(tmp_path), "-n", "5", "--benign-malignant", "benign", "--collection", "70,249",
                 "--api-url", fake.api_url, "--workers", "2")
    expected = fake.search("diagnosis_1:Benign", [70, 249])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"found {len(expected)}, downloaded 5, skipped 0, failed 0"
    assert "5/5" in result.stderr  # the progress bar
    assert sorted(image_files(tmp_path)) == ids(expected[:5])


def test_cli_failed_images_exit_1(fake: FakeIsicServer, tmp_path: Path) -> None:
    fake.junk_body[fake.visible()[1].isic_id] = (3000, True)
    result = cli(str(tmp_path), "-n", "3", "--api-url", fake.api_url)
    assert result.exit_code == 1
    assert result.stdout.strip() == "found 38, downloaded 2, skipped 0, failed 1"
    assert f"failed: {fake.visible()[1].isic_id}" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--query", "benign_malignant:malignant"],
     "Error: the ISIC API rejected the query 'benign_malignant:malignant': Could not parse search query."),
    (["--collection", "70,abc"], "Error: --collection takes numeric collection ids"),
])
def test_cli_errors_are_one_line(fake: FakeIsicServer, tmp_path: Path, args: list[str], message: str) -> None:
    result = cli(str(tmp_path), "--api-url", fake.api_url, *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_cli_unreachable(tmp_path: Path) -> None:
    api = f"http://127.0.0.1:{free_port()}/api/v2/"
    result = cli(str(tmp_path), "--api-url", api)
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot connect to the ISIC API at {api} (connection refused)\n"


def with_sigint(disposition: signal.Handlers, argv: list[str]) -> list[str]:
    """`argv` exec'd with SIGINT set to `disposition`, whatever the test runner's own. SIG_IGN is how
    a non-interactive shell starts `cmd &` (exec keeps it; Python then raises no KeyboardInterrupt).
    An exec'ing trampoline, since `preexec_fn` is unsafe with the fake server's threads running."""
    code = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.Handlers(int(sys.argv[1]))); "
            "os.execv(sys.argv[2], sys.argv[2:])")
    return [sys.executable, "-c", code, str(int(disposition)), *argv]


def start_download(fake: FakeIsicServer, out: Path, n: int, workers: int) -> subprocess.Popen[str]:
    """`download` in a child process, returned once its first partial file exists (or after 60 s)."""
    argv = [sys.executable, "isic_dataset.py", "download", str(out), "-n", str(n),
            "--api-url", fake.api_url, "--workers", str(workers)]
    proc = subprocess.Popen(with_sigint(signal.SIG_DFL, argv), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60  # generous: a loaded machine takes seconds to import the CLI
    while not (out.is_dir() and partials(out)) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    return proc


# The child gets SIGINT at its default whatever pytest inherited: a script's `pytest ... &` starts
# it ignored, exec keeps that, and the download then rightly ignores Ctrl-C (the Unix convention
# for background jobs, which the toolkit respects), which this test would mistake for a bug.
def test_ctrl_c_leaves_no_partial_file(fake: FakeIsicServer, tmp_path: Path) -> None:
    fake.chunk_delay = 0.1  # each image takes about a second to arrive
    out = tmp_path / "out"
    proc = start_download(fake, out, 30, workers=3)
    try:
        assert partials(out), "the download never started"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Interrupted." in stderr and "Traceback" not in stderr, (
        proc.returncode, stdout[-500:], stderr[-2000:])
    assert not partials(out)
    for path in out.glob("ISIC_*"):  # whatever finished is complete
        assert path.read_bytes() == fake.image(path.stem).full
    assert len(list(out.glob("ISIC_*"))) < 30


class HeldWriteLock:
    """tqdm's write lock as a Ctrl-C inside the main thread's `refresh` leaves it: tqdm releases it
    outside a `finally`, so it stays held by that thread (reentrant there, blocking everyone else)."""

    def __init__(self) -> None:
        self.owner = threading.get_ident()
        self.freed = threading.Event()  # the test's way out if a worker is stuck on it

    def acquire(self, *_args: Any, **_kwargs: Any) -> bool:
        return threading.get_ident() == self.owner or self.freed.wait()

    def release(self) -> None:
        pass

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *_exc: object) -> None:
        pass


def test_workers_never_wait_on_the_progress_bar(fake: FakeIsicServer, tmp_path: Path) -> None:
    """CI once hung for 60 s after a Ctrl-C: the worker threads ticked the bar and waited forever on
    the lock the interrupted main thread held. Only the main thread may touch the bar."""
    fake.chunk_delay = 0.02  # slow enough that the bar would refresh from a worker
    previous = tqdm.get_lock()
    outcome: dict[str, Any] = {}

    def download_holding_the_lock() -> None:
        lock = HeldWriteLock()
        outcome["lock"] = lock
        tqdm.set_lock(lock)
        outcome["summary"] = run(fake, tmp_path / "out", n=12, workers=3, progress=True)

    thread = threading.Thread(target=download_holding_the_lock, daemon=True)
    try:
        thread.start()
        thread.join(timeout=30)  # the download itself takes about a second
        stuck = thread.is_alive()
    finally:
        if "lock" in outcome:
            outcome["lock"].freed.set()
        thread.join(timeout=60)
        tqdm.set_lock(previous)
    assert not stuck, "a download worker waited on the progress bar's lock"
    assert outcome["summary"].downloaded == 12


# --------------------------------------------------------------------------------------------------
# The real archive's habits: JPEGs larger than announced, re-runs, interrupts, a second download


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes; `.lock` only by name (it holds the last pid)."""
    return {p.relative_to(folder).as_posix(): b"" if p.name == ".lock" else p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_done_when_25_malignant_survive_the_faults_and_a_rerun_fetches_no_body(tmp_path: Path) -> None:
    with FakeIsicServer(n_images=80) as fake:
        malignant = fake.search("diagnosis_1:Malignant")
        hostile = malignant[5]
        hostile.override["isic_id"] = "../../escape"  # listed among the first 26, refused
        wanted = [img for img in malignant[:26] if img is not hostile]
        assert len(wanted) == 25 and {img.ext for img in wanted} == {"jpg", "png", "tif"}
        assert sum(len(img.full) > img.full_size for img in wanted) == sum(img.ext == "jpg" for img in wanted)
        fake.fail_next(429, retry_after="1", path_prefix=f"/files/images/{wanted[2].isic_id}")
        fake.fail_next(503, times=5, path_prefix="/files/")
        fake.drop_mid_body[wanted[7].isic_id] = 1
        fake.truncate_body[wanted[9].isic_id] = 1
        out = tmp_path / "orig"
        args = [str(out), "-n", "26", "--benign-malignant", "malignant", "--api-url", fake.api_url]
        first = cli(*args)
        assert first.stdout.strip() == f"found {len(malignant)}, downloaded 25, skipped 0, failed 1"
        assert first.stderr.endswith("failed: ../../escape\n") and first.exit_code == 1
        assert image_files(out) == {img.isic_id: img.full for img in wanted}  # 25/25 byte-identical
        assert {k: v["sha256"] for k, v in ledger(out).items()} == {
            img.isic_id: hashlib.sha256(img.full).hexdigest() for img in wanted}
        assert not fake.fail_statuses and not partials(out)
        assert [p.name for p in tmp_path.iterdir()] == ["orig"] and not (tmp_path.parent / "escape").exists()
        bodies = len(fake.bodies_requested())
        assert bodies == 25 + 1 + 5 + 1 + 1  # the 429, the 503s, the dropped and the truncated body
        before = snapshot(out)

        second = cli(*args)
        assert second.stdout.strip() == f"found {len(malignant)}, downloaded 0, skipped 25, failed 1"
        assert len(fake.bodies_requested()) == bodies  # zero bodies fetched on the re-run
        assert snapshot(out) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_stopped_half_way_then_rerun_equals_an_uninterrupted_run(tmp_path: Path, sig: signal.Signals) -> None:
    with FakeIsicServer(n_images=80) as fake:
        args = ["-n", "25", "--benign-malignant", "malignant", "--api-url", fake.api_url]
        assert cli(str(tmp_path / "whole"), *args).exit_code == 0
        fake.chunk_delay = 0.05  # each image takes a few tenths of a second
        out = tmp_path / "resumed"
        argv = [sys.executable, "isic_dataset.py", "download", str(out), *args, "--workers", "2"]
        proc = subprocess.Popen(with_sigint(signal.SIG_DFL, argv), cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while len(image_files(out) if out.is_dir() else {}) < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(sig)
            _, stderr = proc.communicate(timeout=20)
        finally:
            proc.kill()
        kept = image_files(out)
        saved = (out / "metadata.csv").exists()  # a kill -9 may come before the first save
        rows = read_csv(out / "metadata.csv")[1] if saved else []
        assert (sorted(ledger(out)) if saved else []) == [r["isic_id"] for r in rows]  # they always agree
        attribution = (out / "attribution.txt").read_text(encoding="utf8") if saved else ""
        assert attribution == isic.attribution_text(rows)
        if sig == signal.SIGINT:  # ... and, after Ctrl-C, with the files on disk, none half-written
            assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
            assert 6 <= len(kept) < 25 and not partials(out) and sorted(ledger(out)) == sorted(kept)
        else:  # a kill -9 can leave temp files and finished files the last save did not list yet
            assert proc.returncode == -signal.SIGKILL and 6 <= len(kept) < 25
            assert not saved or set(ledger(out)) <= set(kept)

        fake.chunk_delay = 0
        bodies = len(fake.bodies_requested())
        result = cli(str(out), *args)
        assert result.stdout.strip().endswith(f"downloaded {25 - len(kept)}, skipped {len(kept)}, failed 0")
        assert len(fake.bodies_requested()) - bodies == 25 - len(kept)
        assert snapshot(out) == snapshot(tmp_path / "whole")


def test_a_second_download_into_the_folder_is_refused_and_the_first_finishes(tmp_path: Path) -> None:
    with FakeIsicServer(n_images=40) as fake:
        fake.chunk_delay = 0.05
        out = tmp_path / "orig"
        proc = start_download(fake, out, 12, workers=2)
        try:
            second = cli(str(out), "-n", "12", "--api-url", fake.api_url)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert second.exit_code == 1 and second.stdout == ""
        assert second.stderr == (f"Error: {out} is in use by another download (pid {proc.pid}, "
                                 f"lock {out}/.lock); wait for it to finish or stop it\n")
        assert proc.returncode == 0, stderr[-2000:]
        assert stdout.strip() == "found 38, downloaded 12, skipped 0, failed 0"
        vis = fake.visible()
        assert image_files(out) == {img.isic_id: img.full for img in vis[:12]} and not partials(out)
        assert sorted(ledger(out)) == ids(vis[:12])
        assert sorted(fake.bodies_requested()) == ids(vis[:12])  # the refused run fetched no body


def test_files_without_ledger_entry_are_checked_then_adopted(fake: FakeIsicServer, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    vis = fake.visible()
    for img in vis[:4]:  # as isic-cli leaves them: right bytes, no ledger
        (tmp_path / f"{img.isic_id}.{img.ext}").write_bytes(img.full)
    (tmp_path / f"{vis[4].isic_id}.{vis[4].ext}").write_bytes(vis[4].full[:-300])  # cut short
    assert run(fake, tmp_path, n=6) == DownloadSummary(found=38, downloaded=2, skipped=4, failed=[])
    assert sorted(fake.bodies_requested()) == ids(vis[4:6])
    assert ledger(tmp_path)[vis[0].isic_id] == {
        "file": f"{vis[0].isic_id}.jpg", "kind": "full", "size": len(vis[0].full),
        "sha256": hashlib.sha256(vis[0].full).hexdigest()}

    flipped = tmp_path / f"{vis[1].isic_id}.{vis[1].ext}"  # same size, other bytes: not the file we had
    flipped.write_bytes(vis[1].full[:-10] + bytes(10))
    assert run(fake, tmp_path, n=6) == DownloadSummary(found=38, downloaded=1, skipped=5, failed=[])
    assert fake.bodies_requested()[2:] == [vis[1].isic_id]
    assert image_files(tmp_path) == {img.isic_id: img.full for img in vis[:6]}

    (tmp_path / ".download-state.json").write_text("{not json")  # unreadable: every file gets decoded
    assert run(fake, tmp_path, n=6) == DownloadSummary(found=38, downloaded=0, skipped=6, failed=[])
    assert "ignoring unreadable" in capsys.readouterr().err
    assert len(fake.bodies_requested()) == 3 and len(ledger(tmp_path)) == 6
