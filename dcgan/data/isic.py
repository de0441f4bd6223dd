"""ISIC Archive API v2 client: paged search, pooled retrying downloads, metadata.csv.

The 2018 tool spoke API v1, which is gone. This module follows the official client (isic-cli) where it
is right and fixes what it gets wrong (see /work/shared/docs/isic-api-v2.md):

- the search query goes through `params=` so that it is URL-encoded (isic-cli builds it with an
  f-string);
- every worker's result is checked (isic-cli drops worker exceptions silently);
- listing and downloading overlap: downloads of page 1 start while page 2 is being fetched;
- nothing the server says can write outside the output folder: the file name is built from an
  `ISIC_\\d{7}` id and a whitelisted extension, never from the server's text as such.

The API's `files.*.size` is only a hint: the archive embeds credit metadata into every JPEG after
recording it, so served JPEGs are larger (see `isic_ledger`). Files are written under a temporary name
(`dcgan.files.TEMP_PREFIX`, ignored by `find_images`) and renamed only when the body matched the
response's own Content-Length and decodes as the announced image type, so a folder never holds a
truncated image under its final name, whatever happens (Ctrl-C, a broken connection, a full disk).
Completed files go into the ledger, and metadata.csv, attribution.txt and the ledger are rewritten
as the run goes, so an interrupted run leaves them consistent and a re-run fetches only what is missing.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import itertools
import logging
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from dcgan import __version__
from dcgan.errors import UserError
from dcgan.files import atomic_path, folder_lock, is_disk_full, remove_partials, write_text

from .isic_ledger import Entry, Ledger, check_image, file_digest

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.isic-archive.com/api/v2/"
MAX_PAGE_SIZE = 100  # the server clamps `limit` to 100; asking for more is pointless
RETRY_STATUSES = (429, 500, 502, 503, 504)
BENIGN_MALIGNANT = {"benign": "Benign", "malignant": "Malignant", "indeterminate": "Indeterminate"}
IMAGE_SUFFIXES = frozenset({"jpg", "jpeg", "png", "tif", "tiff"})
ISIC_ID = re.compile(r"ISIC_[0-9]{7}")  # fullmatch: no trailing newline, ASCII digits only
LICENSE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,39}")  # fullmatch; CC-0, CC-BY-NC, ...: never a path
METADATA_CSV = "metadata.csv"
ATTRIBUTION_TXT = "attribution.txt"
FIXED_COLUMNS = ("isic_id", "attribution", "copyright_license")
CHUNK_BYTES = 1 << 20
# A body is refused beyond 20x its announced size (the credit segments add a few KiB, a thumbnail
# grows about 3x), never below 16 MiB of allowance and never above 512 MiB, whatever a record says.
BODY_FACTOR = 20
BODY_FLOOR = 16 << 20
BODY_CAP = 512 << 20
SAVE_EVERY_S = 1.0  # metadata.csv, attribution.txt and the ledger are rewritten at most this often
SAVE_SHARE = 0.1  # ... and at most this share of the time (a big folder's files take longer to write)


@dataclass
class DownloadSummary:
    """What a download run did; the CLI prints it as `found F, downloaded D, skipped S, failed X`."""

    found: int  # matches reported by the API's `count` (or the number listed when it has none)
    downloaded: int
    skipped: int  # already complete on disk (in the ledger, or a file without entry that decodes)
    failed: list[str] = field(default_factory=list)  # isic ids (or the bad id a record carried)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up on a request.

    Defaults are gentler than isic-cli's (15 tries, 5 s backoff factor, up to 20 minutes of waiting)
    but still ride out a short outage: about 90 s in all before a request is given up.
    """

    total: int = 8  # retries per request, statuses and read errors together
    connect: int = 2  # few: a refused connection is rarely fixed by waiting, and the user is waiting
    backoff_factor: float = 0.5  # sleeps 0, 1, 2, 4, ... seconds between retries
    backoff_max: float = 30.0
    retry_after_max: int = 120  # a server asking for an hour's pause gets two minutes
    stream_attempts: int = 4  # tries of one image whose body breaks off mid-stream

    def urllib3_retry(self) -> Retry:
        """The urllib3 policy: statuses 429/5xx and Retry-After (429, 503) for GETs only."""
        return Retry(total=self.total, connect=self.connect, status_forcelist=RETRY_STATUSES,
                     backoff_factor=self.backoff_factor, backoff_max=self.backoff_max,
                     retry_after_max=self.retry_after_max, respect_retry_after_header=True,
                     allowed_methods=frozenset({"GET", "HEAD"}), redirect=5, raise_on_status=False)

    def stream_backoff(self, attempt: int) -> float:
        """Seconds to wait before re-fetching a body that broke off for the `attempt`-th time (1-based)."""
        return min(self.backoff_max, self.backoff_factor * 2 ** (attempt - 1))


class DownloadError(Exception):
    """One image could not be fetched; the run goes on and names it in `failed`."""


class BadRecord(DownloadError):
    """A record that cannot be trusted to name a file; `name` is what the `failed` list shows."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason)
        self.name = name


class ApiError(UserError):
    """The API answered an HTTP error; `status` lets callers treat a 404 specially."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _BrokenStream(DownloadError):
    """The body ended early or the connection broke mid-body: worth another try."""


class _Cancelled(Exception):
    """The run is being stopped (Ctrl-C or a full disk): drop this image, leave no file."""


@dataclass(frozen=True)
class _Job:
    """One validated image: where to get it, where it goes, what type it must decode as."""

    isic_id: str
    url: str
    size: int  # the API's announced size: a hint (and the base of the body cap), never a check
    path: Path
    row: dict[str, Any]
    kind: str = "full"  # or "thumbnail_256"

    @property
    def suffix(self) -> str:
        return self.path.suffix.lstrip(".")


def body_limit(announced: int) -> int:
    """The most bytes accepted for a body announced at `announced` bytes (see BODY_FACTOR)."""
    return min(BODY_CAP, max(BODY_FACTOR * announced, BODY_FLOOR))


# --------------------------------------------------------------------------------------------------
# The search: query, parameters, pages


def build_query(query: str | None, benign_malignant: str | None) -> str:
    """The DSL query for `--query` and `--benign-malignant` together (ANDed).

    The user's query is parenthesised so that an `OR` inside it cannot swallow the extra term.
    """
    parts = []
    if query and query.strip():
        parts.append(query.strip())
    if benign_malignant:
        key = benign_malignant.lower()
        if key not in BENIGN_MALIGNANT:
            raise UserError(f"--benign-malignant must be one of {', '.join(BENIGN_MALIGNANT)}, "
                            f"not {benign_malignant!r}")
        parts.append(f"diagnosis_1:{BENIGN_MALIGNANT[key]}")
    if len(parts) == 2:
        return f"({parts[0]}) AND {parts[1]}"
    return parts[0] if parts else ""


def collection_ids(collections: Sequence[str | int] | None) -> list[str]:
    """Validate collection ids client-side: the server answers a 422 that is hard to read."""
    ids = [str(c).strip() for c in collections or () if str(c).strip()]
    for c in ids:
        if not c.isascii() or not c.isdigit():
            raise UserError(f"--collection takes numeric collection ids such as 70,249; got {c!r}")
    return ids


def search_params(query: str, collections: Sequence[str], limit: int) -> dict[str, str]:
    """Parameters of the first `images/search/` request; later pages follow `next` verbatim."""
    params = {"limit": str(limit)}
    if query:
        params["query"] = query
    if collections:
        params["collections"] = ",".join(collections)
    return params


@dataclass(frozen=True)
class _Page:
    count: int | None
    records: list[Any]


def iter_pages(session: requests.Session, url: str, params: Mapping[str, str],
               timeout: tuple[float, float], query: str = "") -> Iterator[_Page]:
    """Yield pages of a cursor-paginated listing, following each `next` URL verbatim.

    An empty page ends the listing even if it has a `next`, so that a broken server cannot keep
    the client paging forever.
    """
    next_url: str | None = url
    next_params: Mapping[str, str] | None = params
    while next_url:
        body = _api_json(session, next_url, next_params, timeout, query)
        page = _parse_page(body, next_url)
        yield page
        nxt = body.get("next")
        if not page.records or not nxt:
            return
        if urlsplit(nxt).scheme not in ("http", "https"):
            raise UserError(f"the ISIC API answered an invalid next-page URL: {nxt[:200]!r}")
        next_url, next_params = nxt, None


def _parse_page(body: Any, url: str) -> _Page:
    """Check the envelope `{count, next, previous, results}` before trusting it."""
    if (not isinstance(body, dict) or not isinstance(body.get("results"), list)
            or not isinstance(body.get("next"), (str, type(None)))):
        raise UserError(f"unexpected answer from {url}: not an ISIC API v2 page (is --api-url right?)")
    count = body.get("count")
    return _Page(count if isinstance(count, int) and not isinstance(count, bool) else None,
                 body["results"])


def _api_json(session: requests.Session, url: str, params: Mapping[str, str] | None,
              timeout: tuple[float, float], query: str = "") -> Any:
    """GET an API URL and decode its JSON, turning every failure into a one-line `UserError`."""
    response = _api_get(session, url, params, timeout, query)
    try:
        return response.json()
    except ValueError:
        raise UserError(f"the ISIC API at {url} did not answer JSON (is --api-url right?)") from None


def _api_get(session: requests.Session, url: str, params: Mapping[str, str] | None,
             timeout: tuple[float, float], query: str = "", accept: str = "application/json"
             ) -> requests.Response:
    """GET with the session's retries; a final failure becomes a `UserError` the user can act on."""
    try:
        response = session.get(url, params=params, timeout=timeout, headers={"Accept": accept})
    except requests.Timeout:
        raise UserError(f"the ISIC API at {_origin(url)} did not answer in time") from None
    except requests.ConnectionError as err:
        raise UserError(f"cannot connect to the ISIC API at {_origin(url)} ({_reason(err)})") from None
    except requests.RequestException as err:
        raise UserError(f"request to {url} failed: {_one_line(str(err))}") from None
    if response.ok:
        return response
    raise ApiError(_status_message(response, url, query), response.status_code)


def _status_message(response: requests.Response, url: str, query: str) -> str:
    """A one-line explanation of an HTTP error answer, with the server's own message when it has one."""
    server_says = _server_message(response)
    if response.status_code == 400:
        hint = ""
        if re.search(r"\b(benign_malignant|diagnosis|anatom_site_general):", query):
            hint = (" (benign_malignant, diagnosis and anatom_site_general are gone from API v2: "
                    "use --benign-malignant or diagnosis_1..5, anatom_site_1..5)")
        return f"the ISIC API rejected the query {query!r}: {server_says or 'HTTP 400'}{hint}"
    hint = " (is --api-url right? it should end in /api/v2/)" if response.status_code == 404 else ""
    detail = f": {server_says}" if server_says else ""
    return f"the ISIC API answered HTTP {response.status_code} {response.reason} for {url}{detail}{hint}"


def _server_message(response: requests.Response) -> str:
    """`message` (400) or `detail` (404, 422) from an error body, on one line."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    message = body.get("message") or body.get("detail") or ""
    if isinstance(message, list):  # ninja's 422: [{"loc": [...], "msg": "..."}]
        message = "; ".join(str(m.get("msg", m)) if isinstance(m, dict) else str(m) for m in message)
    return _one_line(str(message))


def _origin(url: str) -> str:
    """The API base of `url` (up to /api/v2/) or its host: what to name when it cannot be reached."""
    parts = urlsplit(url)
    path = parts.path[:parts.path.index("/api/v2/") + 8] if "/api/v2/" in parts.path else ""
    return f"{parts.scheme}://{parts.netloc}{path}"


def _reason(err: Exception) -> str:
    """'connection refused', 'name not known', ... from the chain of urllib3 exceptions."""
    text = str(err).lower()
    for needle, reason in (("refused", "connection refused"), ("name or service not known", "unknown host"),
                           ("nodename nor servname", "unknown host"), ("temporary failure", "DNS failure"),
                           ("network is unreachable", "network unreachable"), ("ssl", "TLS error")):
        if needle in text:
            return reason
    return _one_line(str(err))[:200]


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------------
# Records -> jobs


def plan_job(record: Any, out: Path, thumbnails: bool) -> _Job:
    """Validate one API record and decide the file it becomes.

    Raises `BadRecord` naming what to list in `failed`: the record's isic_id as given (a hostile
    one too, escaped, for the user to see), or `<record without isic_id>`.
    """
    isic_id = record.get("isic_id") if isinstance(record, dict) else None
    name = _display_id(isic_id)
    if not isinstance(isic_id, str) or not ISIC_ID.fullmatch(isic_id):
        raise BadRecord(name, "not an ISIC id (ISIC_ and 7 digits); record ignored")
    kind = "thumbnail_256" if thumbnails else "full"
    file_info = (record.get("files") or {}).get(kind) if isinstance(record.get("files"), dict) else None
    url = file_info.get("url") if isinstance(file_info, dict) else None
    size = file_info.get("size") if isinstance(file_info, dict) else None
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise BadRecord(name, f"no http(s) URL in files.{kind}.url")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRecord(name, f"no byte size in files.{kind}.size")
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower().lstrip(".") or "jpg"
    if suffix not in IMAGE_SUFFIXES:
        raise BadRecord(name, f"refused file type {suffix[:20]!r} (expected one of "
                              f"{', '.join(sorted(IMAGE_SUFFIXES))})")
    return _Job(isic_id, url, size, out / f"{isic_id}.{suffix}", metadata_row(record), kind)


def _display_id(isic_id: Any) -> str:
    """The record's id, printable on one line and short, for the `failed` list."""
    if not isinstance(isic_id, str) or not isic_id:
        return "<record without isic_id>"
    return isic_id.encode("unicode_escape").decode("ascii")[:80]


def metadata_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata.csv row of a record, as isic-cli builds it: fixed columns, then all metadata keys."""
    metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
    row: dict[str, Any] = {"isic_id": record.get("isic_id"), "attribution": record.get("attribution", ""),
                           "copyright_license": record.get("copyright_license", "")}
    for section in ("acquisition", "clinical"):
        values = metadata.get(section)
        if isinstance(values, dict):
            row.update({k: v for k, v in values.items() if k not in FIXED_COLUMNS})
    return row


# --------------------------------------------------------------------------------------------------
# Fetching one image


def make_session(workers: int, policy: RetryPolicy) -> requests.Session:
    """One pooled, retrying session shared by every worker (keep-alive saves a handshake per image)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=workers + 2, max_retries=policy.urllib3_retry())
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"dcgan-isic/{__version__} {requests.utils.default_user_agent()}"
    return session


def _open_for_writing(path: Path) -> IO[bytes]:
    """Open a temp file for the image bytes (a seam: tests swap in /dev/full to get a real ENOSPC)."""
    return open(path, "wb")


class _Fetcher:
    """Downloads jobs with one session; `stop` aborts every worker at its next chunk."""

    def __init__(self, session: requests.Session, policy: RetryPolicy, timeout: tuple[float, float]) -> None:
        self.session = session
        self.policy = policy
        self.timeout = timeout
        self.stop = threading.Event()

    def __call__(self, job: _Job, known: Entry | None) -> tuple[bool, Entry]:
        """Keep the file already there or fetch `job` into place: (fetched?, its ledger entry).

        `DownloadError` fails this image only; `OSError` (disk) stops everyone.
        """
        try:
            kept = self._existing(job, known)
            if kept is not None:
                return False, kept
            return True, self._fetch_with_retries(job)
        except requests.RequestException as err:  # before OSError: requests' errors subclass it
            raise DownloadError(_request_failure(err)) from None
        except OSError:
            self.stop.set()  # a full or read-only disk fails every other image too
            raise

    def _existing(self, job: _Job, known: Entry | None) -> Entry | None:
        """The entry of a complete file already at `job.path`, or None to fetch it.

        With a ledger entry the file must still be those bytes (size, then sha256); without one
        (isic-cli's files, or a run killed before it saved the ledger) it must decode.
        """
        if not job.path.is_file():
            return None
        if known is not None:
            if (known.file, known.kind) != (job.path.name, job.kind) or job.path.stat().st_size != known.size:
                return None
            return known if file_digest(job.path) == (known.size, known.sha256) else None
        if check_image(job.path, job.suffix) is not None:
            return None
        size, sha256 = file_digest(job.path)
        return Entry(job.path.name, job.kind, size, sha256)

    def _fetch_with_retries(self, job: _Job) -> Entry:
        """Retry a body that breaks off; statuses and connects are urllib3 `Retry`'s business."""
        for attempt in range(1, self.policy.stream_attempts + 1):
            try:
                return self._fetch_once(job)
            except _BrokenStream as err:
                if attempt == self.policy.stream_attempts:
                    raise DownloadError(f"{err} ({attempt} tries)") from None
                if self.stop.wait(self.policy.stream_backoff(attempt)):
                    raise _Cancelled from None
        raise AssertionError("unreachable")  # the loop returns or raises

    def _fetch_once(self, job: _Job) -> Entry:
        """Stream the body into a temp file; rename it to `<isic_id>.<ext>` only once it is complete.

        Complete means: as long as the response's own Content-Length (or, without one, the stream
        ended cleanly) and decodable as the announced type. The API's size is only compared for a
        debug line. Identity encoding is asked for so that the bytes on disk are the bytes served.
        """
        if self.stop.is_set():
            raise _Cancelled
        limit = body_limit(job.size)
        with atomic_path(job.path) as tmp:
            with self.session.get(job.url, stream=True, timeout=self.timeout,
                                  headers={"Accept-Encoding": "identity"}) as response:
                if not response.ok:
                    raise DownloadError(f"HTTP {response.status_code} {response.reason} for {job.url}")
                declared = _content_length(response)
                if declared is not None and declared > limit:
                    raise DownloadError(f"refused a body of {declared} bytes (the limit for an image "
                                        f"announced at {job.size} bytes is {limit})")
                with _open_for_writing(tmp) as fh:
                    written, sha256 = self._copy_body(response, fh, limit, job.size)
            if declared is not None and written != declared:
                raise _BrokenStream(f"body ended after {written} of {declared} bytes")
            problem = check_image(tmp, job.suffix)
            if problem is not None:
                if declared is None:  # no length to go by: a cut-off body looks just like this
                    raise _BrokenStream(f"body without Content-Length is {problem}")
                raise DownloadError(problem)
            if written != job.size:
                log.debug("%s: %d bytes, the API announced %d", job.isic_id, written, job.size)
        return Entry(job.path.name, job.kind, written, sha256)

    def _copy_body(self, response: requests.Response, fh: IO[bytes], limit: int, announced: int
                   ) -> tuple[int, str]:
        """Copy the body chunk by chunk, hashing it; stop on cancel or when it passes `limit`."""
        written = 0
        digest = hashlib.sha256()
        try:
            for chunk in response.iter_content(CHUNK_BYTES):
                if self.stop.is_set():
                    raise _Cancelled
                written += len(chunk)
                if written > limit:
                    raise DownloadError(f"refused a body of more than {limit} bytes (the limit for an "
                                        f"image announced at {announced} bytes)")
                fh.write(chunk)
                digest.update(chunk)
        except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError) as err:
            raise _BrokenStream(f"connection broke mid-body ({_reason(err)})") from None
        return written, digest.hexdigest()


def _content_length(response: requests.Response) -> int | None:
    """The response's Content-Length as an int, or None when absent or malformed."""
    value = response.headers.get("Content-Length", "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


def _request_failure(err: requests.RequestException) -> str:
    if isinstance(err, requests.Timeout):
        return "timed out"
    if isinstance(err, requests.ConnectionError):
        return f"cannot connect ({_reason(err)})"
    return _one_line(str(err))[:200]


# --------------------------------------------------------------------------------------------------
# metadata.csv, attribution.txt, licenses/


def read_metadata(path: Path) -> list[dict[str, str]]:
    """Rows of an existing metadata.csv (to merge into), or [] when there is none."""
    if not path.exists():
        return []
    try:
        with open(path, newline="", encoding="utf8") as fh:
            reader = csv.DictReader(fh)
            if "isic_id" not in (reader.fieldnames or []):
                raise UserError(f"{path} has no isic_id column, so it cannot be merged: move it away "
                                "or download into another folder")
            # Cells beyond the header land under the key None; they have no column to go back to.
            return [{k: v for k, v in row.items() if k is not None} for row in reader if row.get("isic_id")]
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path} is not a readable CSV file ({err}); move it away") from None


def merge_rows(existing: Sequence[Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]
               ) -> list[dict[str, Any]]:
    """Union of old and new rows by isic_id, the new row winning; sorted by isic_id."""
    merged: dict[str, dict[str, Any]] = {str(r["isic_id"]): dict(r) for r in existing}
    merged.update({isic_id: dict(r) for isic_id, r in new.items()})
    return [merged[k] for k in sorted(merged)]


def write_metadata(path: Path, rows: Sequence[Mapping[str, Any]], durable: bool = False) -> None:
    """Write metadata.csv as isic-cli does: fixed columns, then the sorted union of every other key."""
    extra = sorted({k for row in rows for k in row} - set(FIXED_COLUMNS))
    with atomic_path(path, durable=durable) as tmp, open(tmp, "w", newline="", encoding="utf8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*FIXED_COLUMNS, *extra])
        writer.writeheader()
        writer.writerows(rows)


def attribution_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """Distinct attributions, most images first, then by name, "Anonymous" last (as isic-cli)."""
    counts = Counter(str(r["attribution"]) for r in rows if r.get("attribution"))
    ordered = sorted(counts.items(), key=lambda kv: (kv[0] == "Anonymous", -kv[1], kv[0]))
    return "\n\n".join(name for name, _ in ordered)


def fetch_licenses(session: requests.Session, api_url: str, folder: Path, rows: Sequence[Mapping[str, Any]],
                   timeout: tuple[float, float]) -> None:
    """Write `licenses/<license>.txt` for every license in `rows` that has no file yet.

    A license that cannot be fetched is a warning, not a failure: the images are there, and a
    re-run fetches the missing text.
    """
    for name in sorted({str(r.get("copyright_license") or "") for r in rows} - {""}):
        if not LICENSE_NAME.fullmatch(name):
            _warn(f"warning: not fetching a license with the odd name {name[:40]!r}")
            continue
        target = folder / f"{name}.txt"
        if target.exists():
            continue
        try:
            url = urljoin(api_url, f"zip-download/license-file/{name}/")
            response = _api_get(session, url, None, timeout, accept="text/plain")
        except UserError as err:
            _warn(f"warning: license text {name} not saved: {err}")
            continue
        write_text(target, response.text)


def _warn(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


# --------------------------------------------------------------------------------------------------
# The run


def _check_output_path(output_path: str | Path) -> Path:
    """Refuse a path that cannot become the folder, or whose metadata.csv cannot be merged, before
    asking the network anything; the folder itself is created only once the first page is read."""
    out = Path(output_path)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    read_metadata(out / METADATA_CSV)
    return out


def _disk_error(err: OSError, out: Path) -> UserError:
    if is_disk_full(err):
        return UserError(f"disk full while writing into {out}")
    return UserError(f"cannot write into {out}: {err.strerror or err}")


class _Output:
    """OUTPUT_PATH while a run holds it: the lock, the ledger and the metadata rows of completed files.

    `save` writes metadata.csv, attribution.txt and then the ledger, each atomically, for the files
    completed so far; the run calls it about every SAVE_EVERY_S and once more at the end or on an
    interrupt, so an interrupted run leaves them describing the images it finished. After a crash
    (kill -9, power cut) the files finished since the last save have no entry yet; the next run
    finds that they decode and adopts them.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.existing = read_metadata(out / METADATA_CSV)
        self.ledger = Ledger.load(out)
        self.rows: dict[str, dict[str, Any]] = {}
        self.dirty = False
        self.saved_at = time.monotonic()
        self.save_every = SAVE_EVERY_S

    @classmethod
    @contextlib.contextmanager
    def open(cls, output_path: Path) -> Iterator[_Output]:
        """Create the folder, lock it (a second download refuses at once), then clear old temp files."""
        try:
            output_path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise UserError(f"{output_path} exists and is not a folder") from None
        except OSError as err:
            raise _disk_error(err, output_path) from None
        with folder_lock(output_path, "download"):
            remove_partials(output_path)  # only now: they might have been another run's
            yield cls(output_path)

    def record(self, job: _Job, entry: Entry) -> None:
        self.rows[job.isic_id] = job.row
        self.ledger.entries[job.isic_id] = entry
        self.dirty = True

    def all_rows(self) -> list[dict[str, Any]]:
        return merge_rows(self.existing, self.rows)

    def save_if_due(self) -> None:
        if time.monotonic() - self.saved_at >= self.save_every:
            self.save()

    def save(self) -> None:
        """The ledger goes last, so that it never names a file that metadata.csv lacks."""
        if not self.dirty:
            return
        start = time.monotonic()
        rows = self.all_rows()
        write_metadata(self.out / METADATA_CSV, rows, durable=True)  # a power cut keeps old or new
        write_text(self.out / ATTRIBUTION_TXT, attribution_text(rows), durable=True)
        self.ledger.save()
        self.dirty = False
        self.saved_at = time.monotonic()
        self.save_every = max(SAVE_EVERY_S, (self.saved_at - start) / SAVE_SHARE)


def _normalise_api_url(api_url: str) -> str:
    if urlsplit(api_url).scheme not in ("http", "https") or not urlsplit(api_url).netloc:
        raise UserError(f"--api-url must be an http(s) URL such as {DEFAULT_API_URL}, not {api_url!r}")
    return api_url.rstrip("/") + "/"


def _check_collections(session: requests.Session, api_url: str, ids: Sequence[str],
                       timeout: tuple[float, float]) -> None:
    """Fail early on an unknown collection: the search would silently match nothing (as isic-cli)."""
    for cid in ids:
        try:
            _api_get(session, urljoin(api_url, f"collections/{cid}/"), None, timeout)
        except ApiError as err:
            if err.status == 404:
                raise UserError(f"collection {cid} does not exist or is not public") from None
            raise


class _Run:
    """State of one download run: the listing feeds jobs to the pool, results are tallied here."""

    def __init__(self, output: _Output, fetcher: _Fetcher, workers: int, bar: tqdm, thumbnails: bool) -> None:
        self.output = output
        self.fetcher = fetcher
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="isic-download")
        # Only the main thread touches the bar: tqdm's refresh releases its write lock outside a
        # `finally`, so a Ctrl-C inside it would leave a worker that ticks blocked for good.
        self.bar = bar
        self.thumbnails = thumbnails
        self.futures: dict[Future[tuple[bool, Entry]], _Job] = {}
        self.failed: list[str] = []
        self.seen: set[str] = set()
        self.disk_error: OSError | None = None
        self.added = 0
        self.skipped = 0
        self.downloaded = 0

    def add(self, record: Any) -> None:
        """Reject or schedule one record (a worker decides whether the file on disk can stay)."""
        self.added += 1
        try:
            job = plan_job(record, self.output.out, self.thumbnails)
        except BadRecord as err:
            self._fail(err.name, str(err))
            self._tick()
            return
        if job.isic_id in self.seen:
            self._tick()  # listed twice: one download is enough
            return
        self.seen.add(job.isic_id)
        future = self.pool.submit(self.fetcher, job, self.output.ledger.entries.get(job.isic_id))
        self.futures[future] = job
        self.settle_done()

    def set_total(self) -> None:
        """Correct the bar's total once the listing is done (the API's count may be off or absent)."""
        self.bar.total = self.added
        self.bar.refresh()

    def collect(self) -> None:
        """Wait for every future, saving as they complete; a disk error becomes one `UserError`."""
        for future in as_completed(list(self.futures)):
            self._settle(future)
            self.output.save_if_due()
        if self.disk_error is not None:
            raise _disk_error(self.disk_error, self.output.out)

    def settle_done(self) -> None:
        """Tally the futures that are already done (while listing, and after an interrupt)."""
        for future in [f for f in self.futures if f.done()]:
            self._settle(future)
        self.output.save_if_due()

    def _settle(self, future: Future[tuple[bool, Entry]]) -> None:
        job = self.futures.pop(future)
        self._tick()
        try:
            fetched, entry = future.result()
        except DownloadError as err:
            self._fail(job.isic_id, str(err))
        except (_Cancelled, CancelledError):
            pass  # stopped by Ctrl-C or because another worker hit a disk error, reported below
        except OSError as err:
            self.disk_error = self.disk_error or err
        else:
            if fetched:
                self.downloaded += 1
            else:
                self.skipped += 1
            self.output.record(job, entry)

    def _tick(self) -> None:
        self.bar.update()

    def _fail(self, name: str, message: str) -> None:
        self.failed.append(name)
        _warn(f"failed {name}: {message}")


def download_images(output_path: str | Path, n: int = 100, offset: int = 0, query: str | None = None,
                    benign_malignant: str | None = None, collections: Sequence[str | int] | None = None,
                    thumbnails: bool = False, api_url: str = DEFAULT_API_URL, workers: int = 8, *,
                    page_size: int = MAX_PAGE_SIZE, backoff_factor: float = 0.5,
                    retries: int = RetryPolicy.total, stream_attempts: int = RetryPolicy.stream_attempts,
                    timeout: tuple[float, float] = (3.05, 30.0), progress: bool = True) -> DownloadSummary:
    """Download `n` images matching the filters (after skipping `offset`) into `output_path`.

    Also writes metadata.csv (merged with an existing one), attribution.txt, licenses/ and the
    ledger. Files the ledger knows (or that decode, without an entry) are not fetched again, so an
    interrupted run can simply be repeated. Problems the user can fix (unreachable API, bad query,
    full disk, another download in the folder) raise `UserError`; an image that fails is listed in
    `failed` and the others still download. The folder is created only once the API has answered.
    """
    if n < 0 or offset < 0 or workers < 1 or page_size < 1:
        raise UserError("n and offset must be >= 0, workers and page_size >= 1")
    api_url = _normalise_api_url(api_url)
    full_query = build_query(query, benign_malignant)
    ids = collection_ids(collections)
    out = _check_output_path(output_path)
    policy = RetryPolicy(total=retries, backoff_factor=backoff_factor, stream_attempts=stream_attempts)
    limit = max(1, min(page_size, MAX_PAGE_SIZE, offset + n))  # the first page also brings `count`
    with make_session(workers, policy) as session:
        _check_collections(session, api_url, ids, timeout)
        pages = iter_pages(session, urljoin(api_url, "images/search/"), search_params(full_query, ids, limit),
                           timeout, full_query)
        first = next(pages)
        if n == 0 or not first.records:  # nothing to fetch: leave no empty folder behind
            return DownloadSummary(found=first.count or 0, downloaded=0, skipped=0, failed=[])
        with _Output.open(out) as output:
            with tqdm(total=_expected(first.count, offset, n), unit="img", desc="download", file=sys.stderr,
                      disable=not progress, dynamic_ncols=True) as bar:
                run = _Run(output, _Fetcher(session, policy, timeout), workers, bar, thumbnails)
                listed = _download(run, first, pages, offset, n)
            try:
                fetch_licenses(session, api_url, out / "licenses", output.all_rows(), timeout)
            except OSError as err:
                raise _disk_error(err, out) from None
    found = first.count if first.count is not None else listed
    return DownloadSummary(found=found, downloaded=run.downloaded, skipped=run.skipped,
                           failed=sorted(run.failed))


def _expected(count: int | None, offset: int, n: int) -> int | None:
    return None if count is None else max(0, min(n, count - offset))


def _download(run: _Run, first: _Page, pages: Iterator[_Page], offset: int, n: int) -> int:
    """List and download at once; on any exception (Ctrl-C included) stop workers, leave no temp file.

    Downloads of the first page start while later pages are fetched. Whatever happens, the files
    completed so far are saved to metadata.csv, attribution.txt and the ledger before returning.
    Returns the number of records listed (the found count when the API gives none).
    """
    listed = 0

    def records() -> Iterator[Any]:
        nonlocal listed
        for page in itertools.chain([first], pages):
            for record in page.records:
                listed += 1
                yield record

    try:
        for record in itertools.islice(records(), offset, offset + n):  # islice stops the paging too
            if run.fetcher.stop.is_set():
                break
            run.add(record)
        run.set_total()
        run.collect()
    except BaseException:
        run.fetcher.stop.set()
        run.pool.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(Exception):  # the first error is the one to report
            run.settle_done()
            run.output.save()
        raise
    run.pool.shutdown(wait=True)
    try:
        run.output.save()
    except OSError as err:
        raise _disk_error(err, run.output.out) from None
    return listed
