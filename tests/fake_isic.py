"""A faithful fake of the ISIC Archive API v2, served on 127.0.0.1 for tests and benchmarks.

It follows /work/shared/docs/isic-api-v2.md (section 10 is its checklist) for what the client calls:
`images/search/` with the cursor pagination of `isic/core/pagination.py` ported line by line (base64
cursors, `count` on the first page only, absolute `next`/`previous` URLs with sorted keys, ties on
`created` resolved by the cursor's offset), the part of the search DSL the tests send (exact values,
AND/OR, parentheses) with the server's 400 for unknown fields, `collections/<id>/`, license texts,
the 404/422 bodies of django-ninja, records that omit null metadata, and image bytes (real
JPEG/PNG/TIFF made with Pillow) served from its own host. Routes the client never calls are left out.

Like the real archive, JPEG bodies (full images and thumbnails) carry the credit metadata that the
publish step embeds after the size was recorded, so they are larger than `files.*.size` announces;
PNG and TIFF bodies are exact (`credit=False` or `--exact-sizes` serves every body as announced).

Faults are injected per test through attributes of the server object:
`fail_statuses` (a queue of statuses to answer, optionally with Retry-After and a path prefix),
`drop_mid_body` (ids whose next N bodies are cut in half with the connection closed),
`truncate_body` (ids whose next N bodies are cut short with no Content-Length), `wrong_size` (ids whose
records announce 100 bytes too many), `junk_body` (ids served `(size, with_length)` bytes of zeros
instead of their image), `latency` (seconds added to every request), `chunk_delay` (seconds between
512-byte pieces of an image body), `chunked` (image bodies sent with chunked transfer encoding, no
Content-Length) and `max_limit` (the server's page-size cap).

Run it alone (for a benchmark in another process): `python -m tests.fake_isic --images 300 --latency 0.05`;
it prints its API URL on the first line of stdout.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from PIL import Image

MAX_PAGE_SIZE = 100
OFFSET_CUTOFF = 100  # the server clamps a cursor's offset "to protect against malicious queries"
NOT_FOUND = {"detail": "Not Found"}
BAD_QUERY = {"message": "Could not parse search query."}
LICENSE_TEXTS = {
    "CC-0": "CC0 1.0 Universal\n\nThe person who associated a work with this deed has dedicated the work "
            "to the public domain.\n",
    "CC-BY": "Attribution 4.0 International\n\nYou are free to share and adapt the material, as long as "
             "you give appropriate credit.\n",
    "CC-BY-NC": "Attribution-NonCommercial 4.0 International\n\nYou may not use the material for "
                "commercial purposes.\n",
}
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "tif": "image/tiff"}
PIL_FORMATS = {"jpg": "JPEG", "png": "PNG", "tif": "TIFF"}

# The searchable fields (isic-metadata FIELD_REGISTRY entries with a search config, plus the four
# that are always there). Anything else, `benign_malignant` and `diagnosis` included, is a 400.
KEYWORD_FIELDS = frozenset({
    "isic_id", "copyright_license", "sex", *(f"diagnosis_{k}" for k in range(1, 6)),
    *(f"anatom_site_{k}" for k in range(1, 6)), "diagnosis_confirm_type", "image_type", "dermoscopic_type",
    "tbp_tile_type", "mel_mitotic_index", "anatom_site_special", "color_tint", "patient_id", "lesion_id",
    "rcm_case_id", "image_manipulation", "fitzpatrick_skin_type"})
BOOLEAN_FIELDS = frozenset({"public", "melanocytic", "personal_hx_mm", "family_hx_mm", "mel_ulcer",
                            "concomitant_biopsy", "blurry", "hairy", "marker_pen"})
NUMBER_FIELDS = frozenset({"age_approx", "clin_size_long_diam_mm", "mel_thick_mm"})

DIAGNOSES = [
    ("Benign", "Benign melanocytic proliferations", "Nevus"),
    ("Benign", "Benign epidermal proliferations", "Seborrheic keratosis"),
    ("Benign", "Benign soft tissue proliferations - Vascular", "Hemangioma"),
    ("Malignant", "Malignant melanocytic proliferations (Melanoma)", "Melanoma Invasive"),
    ("Malignant", "Malignant melanocytic proliferations (Melanoma)", "Melanoma in situ"),
    ("Malignant", "Malignant adnexal epithelial proliferations - Follicular", "Basal cell carcinoma"),
    ("Indeterminate", "Indeterminate melanocytic proliferations", None),
]
SITES = [("Trunk", "Anterior trunk", "Anterior chest"), ("Upper extremity", None, None),
         ("Head & neck", "Face", None), ("Lower extremity", "Thigh", None)]
ATTRIBUTIONS = ["Anonymous", "ViDIR Group, Department of Dermatology, Medical University of Vienna",
                "Memorial Sloan Kettering Cancer Center", "Hospital Clínic de Barcelona"]
COLLECTIONS = [  # id, name, public, pinned, locked, doi
    (70, "Challenge 2020: Training", True, True, True, "10.34970/2020-ds01"),
    (249, "HAM10000", True, True, True, "10.34970/432233"),
    (66, "A private study", False, False, False, None),
    (212, "An empty public collection", True, False, False, None),
]


# --------------------------------------------------------------------------------------------------
# Data


@dataclass
class FakeImage:
    """One image of the fake archive, with its real bytes."""

    isic_id: str
    created: datetime
    public: bool
    copyright_license: str
    attribution: str
    acquisition: dict[str, Any]
    clinical: dict[str, Any]
    collections: frozenset[int]
    ext: str
    full: bytes  # the bytes served (after the publish step, see `embed_credit`)
    thumbnail: bytes
    full_size: int  # the size the API announces: the blob's size at ingest, before the publish step
    thumbnail_size: int
    override: dict[str, Any] = field(default_factory=dict)  # record keys replaced as served (faults)

    def searchable(self) -> dict[str, Any]:
        """The values the DSL searches: four top-level fields plus all metadata."""
        return {"isic_id": self.isic_id, "public": self.public, "copyright_license": self.copyright_license,
                **self.acquisition, **self.clinical}


def _encode(img: Image.Image, ext: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=PIL_FORMATS[ext])
    return buf.getvalue()


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _iim(record: int, dataset: int, value: bytes) -> bytes:
    return bytes([0x1C, record, dataset]) + len(value).to_bytes(2, "big") + value


def embed_credit(jpeg: bytes, isic_id: str, attribution: str, copyright_license: str) -> bytes:
    """What publishing does to every JPEG (isic `embed_iptc_metadata`, pyexiv2): credit metadata in.

    An XMP packet (APP1) and an IPTC-IIM record in a Photoshop resource block (APP13) go in after the
    JFIF header, so the served file is larger than the `blob_size` the API announces. PNG and TIFF
    are left alone by the real server, and here.
    """
    iptc = (_iim(1, 90, b"\x1b%G") + _iim(2, 110, attribution.encode()) + _iim(2, 115, b"ISIC Archive"))
    resource = b"8BIM" + (0x0404).to_bytes(2, "big") + b"\x00\x00" + len(iptc).to_bytes(4, "big") + iptc
    app13 = _jpeg_segment(0xED, b"Photoshop 3.0\x00" + resource + b"\x00" * (len(iptc) % 2))
    xmp = (f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
           f'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""'
           f' xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/"'
           f' xmlns:xmpRights="http://ns.adobe.com/xap/1.0/rights/" plus:ImageSupplierImageID="{isic_id}"'
           f' xmpRights:UsageTerms="{copyright_license}"><dc:title><rdf:Alt><rdf:li xml:lang="x-default">'
           f'{isic_id}</rdf:li></rdf:Alt></dc:title></rdf:Description></rdf:RDF></x:xmpmeta>'
           f'{" " * 1024}<?xpacket end="w"?>')
    app1 = _jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + xmp.encode())
    at = 2  # after SOI, or after the JFIF APP0 segment when there is one
    if jpeg[2:4] == b"\xff\xe0":
        at = 4 + int.from_bytes(jpeg[4:6], "big")
    return jpeg[:at] + app1 + app13 + jpeg[at:]


def _metadata(rng: random.Random, i: int, width: int, height: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Acquisition and clinical metadata with null keys left out, as the API does."""
    acquisition: dict[str, Any] = {"pixels_x": width, "pixels_y": height}
    if rng.random() < 0.9:
        acquisition["image_type"] = "dermoscopic" if rng.random() < 0.8 else "clinical: close-up"
    if acquisition.get("image_type") == "dermoscopic" and rng.random() < 0.5:
        acquisition["dermoscopic_type"] = rng.choice(["contact polarized", "contact non-polarized"])
    if rng.random() < 0.3:
        acquisition["hairy"] = rng.random() < 0.5
    clinical: dict[str, Any] = {}
    if rng.random() < 0.9:
        clinical["age_approx"] = 5 * rng.randint(1, 17)
    if rng.random() < 0.9:
        clinical["sex"] = rng.choice(["male", "female"])
    if rng.random() < 0.95:
        diagnosis = DIAGNOSES[i % len(DIAGNOSES)] if i < len(DIAGNOSES) else rng.choice(DIAGNOSES)
        clinical.update({f"diagnosis_{k}": v for k, v in enumerate(diagnosis, 1) if v is not None})
        clinical["melanocytic"] = "melanocytic" in diagnosis[1]
        clinical["diagnosis_confirm_type"] = rng.choice(["histopathology", "single image expert consensus"])
    if rng.random() < 0.8:
        site = rng.choice(SITES)
        clinical.update({f"anatom_site_{k}": v for k, v in enumerate(site, 1) if v is not None})
    if rng.random() < 0.2:
        clinical["clin_size_long_diam_mm"] = f"{rng.randint(20, 150) / 10:.2f}"  # a Decimal: a string
    if rng.random() < 0.5:
        clinical["lesion_id"] = f"IL_{rng.randint(0, 9_999_999):07d}"
        clinical["patient_id"] = f"IP_{rng.randint(0, 9_999_999):07d}"
    return acquisition, clinical


def make_images(n: int, seed: int = 0, credit: bool = True) -> list[FakeImage]:
    """`n` images in `created` order; every 5th shares its `created` with the one before (a tie).

    With `credit` (the real archive's way), JPEG bodies carry `embed_credit`'s segments and are
    larger than announced; without it every announced size is exact.
    """
    rng = random.Random(seed)
    created = datetime(2020, 1, 1, tzinfo=UTC)
    images = []
    for i in range(n):
        if i == 0 or not (i % 5 == 4 or i % 25 == 23):
            created += timedelta(minutes=rng.randint(1, 900), microseconds=rng.randint(1, 999_999))
        width, height = rng.randint(24, 64), rng.randint(18, 48)
        pixels = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
        ext = "png" if i % 10 == 3 else "tif" if i % 25 == 7 else "jpg"
        thumb = pixels.resize((max(1, width // 2), max(1, height // 2)))
        acquisition, clinical = _metadata(rng, i, width, height)
        isic_id = f"ISIC_{24306 + i:07d}"
        lic, attribution = rng.choice(list(LICENSE_TEXTS)), rng.choice(ATTRIBUTIONS)
        full, thumbnail = _encode(pixels, ext), _encode(thumb, "jpg")
        sizes = len(full), len(thumbnail)
        if credit:
            thumbnail = embed_credit(thumbnail, isic_id, attribution, lic)
            full = embed_credit(full, isic_id, attribution, lic) if ext == "jpg" else full
        images.append(FakeImage(
            isic_id=isic_id, created=created, public=i % 20 != 13, copyright_license=lic,
            attribution=attribution, acquisition=acquisition, clinical=clinical,
            collections=frozenset(c for c, member in ((70, i % 3 == 0), (249, i % 4 == 1), (66, i % 7 == 2))
                                  if member),
            ext=ext, full=full, thumbnail=thumbnail, full_size=sizes[0], thumbnail_size=sizes[1]))
    return images


# --------------------------------------------------------------------------------------------------
# The search DSL (the subset of isic/core/dsl.py that the client's tests send)

Predicate = Callable[[Mapping[str, Any]], bool]


class DslError(ValueError):
    """The query does not parse: the server answers 400 Could not parse search query."""


def parse_query(text: str) -> Predicate:
    """Compile a DSL query into a predicate over `FakeImage.searchable()`; '' matches everything."""
    if not text.strip():
        return lambda _values: True
    return _DslParser(text).parse()


def _as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


class _DslParser:
    """Recursive descent: or := and (OR and)*; and := atom (AND? atom)*; atom := ( or ) | field:value.

    Values are exact (quoted or bare); negation, wildcards and ranges are left out (the real server
    has them) because the client passes `--query` through verbatim and never builds them itself.
    """

    FIELD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):")
    WORD = re.compile(r"[A-Za-z0-9_-]+")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> Predicate:
        expr = self._or()
        self._skip_ws()
        if self.pos != len(self.text):
            raise DslError(f"unexpected {self.text[self.pos:self.pos + 10]!r}")
        return expr

    def _skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _keyword(self, word: str, consume: bool = True) -> bool:
        self._skip_ws()
        match = re.compile(rf"{word}(?=[\s(]|$)").match(self.text, self.pos)
        if match and consume:
            self.pos = match.end()
        return match is not None

    def _or(self) -> Predicate:
        terms = [self._and()]
        while self._keyword("OR"):
            terms.append(self._and())
        return terms[0] if len(terms) == 1 else lambda v: any(t(v) for t in terms)

    def _and(self) -> Predicate:
        terms = [self._atom()]
        while True:
            self._skip_ws()
            if self.pos >= len(self.text) or self.text[self.pos] == ")" or self._keyword("OR", consume=False):
                break
            self._keyword("AND")
            terms.append(self._atom())
        return terms[0] if len(terms) == 1 else lambda v: all(t(v) for t in terms)

    def _atom(self) -> Predicate:
        self._skip_ws()
        if self.text.startswith("(", self.pos):
            self.pos += 1
            inner = self._or()
            self._skip_ws()
            if not self.text.startswith(")", self.pos):
                raise DslError("missing )")
            self.pos += 1
            return inner
        return self._term()

    def _term(self) -> Predicate:
        match = self.FIELD.match(self.text, self.pos)
        if not match:
            raise DslError(f"expected field:value at {self.pos}")
        name = match.group(1)
        self.pos = match.end()
        value = self._value()
        if self.pos < len(self.text) and not (self.text[self.pos].isspace() or self.text[self.pos] == ")"):
            raise DslError(f"unexpected {self.text[self.pos]!r}")
        if name in KEYWORD_FIELDS:
            return lambda v: isinstance(v.get(name), str) and v.get(name) == value
        if name in BOOLEAN_FIELDS:
            if value not in ("true", "false"):
                raise DslError(f"not a boolean: {value}")
            return lambda v: isinstance(v.get(name), bool) and v.get(name) == (value == "true")
        if name in NUMBER_FIELDS:
            wanted = _as_number(value)
            if wanted is None:
                raise DslError(f"not a number: {value}")
            return lambda v: _as_number(v.get(name)) == wanted
        raise DslError(f"unknown field {name}")

    def _value(self) -> str:
        if self.text.startswith('"', self.pos):
            end = self.text.find('"', self.pos + 1)
            if end < 0:
                raise DslError("unterminated quote")
            value, self.pos = self.text[self.pos + 1:end], end + 1
            return value
        match = self.WORD.match(self.text, self.pos)
        if not match:
            raise DslError(f"expected a value at {self.pos}")
        self.pos = match.end()
        return match.group()


# --------------------------------------------------------------------------------------------------
# Cursor pagination (a port of isic/core/pagination.py CursorPagination)


@dataclass
class Cursor:
    offset: int = 0
    reverse: bool = False
    position: str | None = None


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def decode_cursor(encoded: str | None) -> Cursor:
    """base64(urlencode({o, r, p})); ValueError('Invalid cursor.') for anything else."""
    if encoded is None:
        return Cursor()
    try:
        tokens = parse_qs(base64.b64decode(encoded).decode(), keep_blank_values=True)
        offset = _clamp(int(tokens.get("o", ["0"])[0]), 0, OFFSET_CUTOFF)
        reverse = bool(int(tokens.get("r", ["0"])[0]))
        position = tokens.get("p", [None])[0]
    except (TypeError, ValueError) as err:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise ValueError("Invalid cursor.") from err
    if position is not None:
        try:
            datetime.fromisoformat(position)
        except ValueError as err:  # the real server would fail in the database; a 422 is kinder
            raise ValueError("Invalid cursor.") from err
    return Cursor(offset, reverse, position)


def encode_cursor(cursor: Cursor, base_url: str) -> str:
    """The page URL: `base_url` with its cursor replaced and all keys sorted (blank values kept)."""
    tokens = {}
    if cursor.offset != 0:
        tokens["o"] = str(cursor.offset)
    if cursor.reverse:
        tokens["r"] = "1"
    if cursor.position is not None:
        tokens["p"] = cursor.position
    encoded = base64.b64encode(urlencode(tokens, doseq=True).encode()).decode()
    scheme, netloc, path, query, fragment = urlsplit(base_url)
    query_dict = parse_qs(query, keep_blank_values=True)
    query_dict["cursor"] = [encoded]
    return urlunsplit((scheme, netloc, path, urlencode(sorted(query_dict.items()), doseq=True), fragment))


def paginate(items: Sequence[Any], cursor: Cursor, limit: int | None, base_url: str,
             key: Callable[[Any], datetime], descending: bool = False,
             max_page_size: int = MAX_PAGE_SIZE) -> dict[str, Any]:
    """One page of `items` (already in their ordering) as the server's envelope."""
    limit = _clamp(limit or max_page_size, 0, max_page_size)
    total = len(items) if cursor.position is None else None
    seq = list(reversed(items)) if cursor.reverse else list(items)
    if cursor.position is not None:
        position = datetime.fromisoformat(cursor.position)
        if cursor.reverse != descending:
            seq = [x for x in seq if key(x) < position]
        else:
            seq = [x for x in seq if key(x) > position]
    results = seq[cursor.offset:cursor.offset + limit + 1]
    page = results[:limit]
    has_following = len(results) > len(page)
    following = str(key(results[-1])) if has_following else None
    if cursor.reverse:
        page.reverse()
        has_next = cursor.position is not None or cursor.offset > 0
        has_previous = has_following
        next_position = cursor.position if has_next else None
        previous_position = following if has_previous else None
    else:
        has_next = has_following
        has_previous = cursor.position is not None or cursor.offset > 0
        next_position = following if has_next else None
        previous_position = cursor.position if has_previous else None
    positions = [str(key(x)) for x in page]
    links = _Links(base_url, positions, cursor, limit, next_position, previous_position)
    return {"count": total, "next": links.next_link(has_previous) if has_next else None,
            "previous": links.previous_link(has_next) if has_previous else None, "results": page}


def _find_marker(positions: Sequence[str], compare: str | None) -> tuple[int, str | None, bool]:
    """The first position that differs from the one after it (a usable marker), and the ties skipped."""
    for offset, position in enumerate(positions):
        if position != compare:
            return offset, position, True
        compare = position
    return len(positions), None, False


@dataclass
class _Links:
    base_url: str
    positions: list[str]  # of the page's items, in page order
    cursor: Cursor
    limit: int
    next_position: str | None
    previous_position: str | None

    def next_link(self, has_previous: bool) -> str:
        page, cursor = self.positions, self.cursor
        compare = page[-1] if page and cursor.reverse and cursor.offset else self.next_position
        offset, position, unique = _find_marker(list(reversed(page)), compare)
        if page and not unique:
            if not has_previous:
                offset, position = self.limit, None
            elif cursor.reverse:
                offset, position = 0, self.previous_position
            else:
                offset, position = cursor.offset + self.limit, self.previous_position
        if not page:
            position = self.next_position
        return encode_cursor(Cursor(offset, False, position), self.base_url)

    def previous_link(self, has_next: bool) -> str:
        page, cursor = self.positions, self.cursor
        compare = page[0] if page and not cursor.reverse and cursor.offset else self.previous_position
        offset, position, unique = _find_marker(page, compare)
        if page and not unique:
            if not has_next:
                offset, position = self.limit, None
            elif cursor.reverse:
                offset, position = cursor.offset + self.limit, self.next_position
            else:
                offset, position = 0, self.next_position
        if not page:
            position = self.previous_position
        return encode_cursor(Cursor(offset, True, position), self.base_url)


# --------------------------------------------------------------------------------------------------
# HTTP


@dataclass
class InjectedStatus:
    """A status the server answers instead of the real thing, once, to the next matching request."""

    status: int
    retry_after: str | None = None
    path_prefix: str = "/"


@dataclass
class LoggedRequest:
    path: str
    params: dict[str, list[str]]
    raw: str  # the request target as sent, to check URL encoding
    at: float


class _Answer(Exception):
    """Raised by a route to answer JSON with a status (404, 422, 400)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # 8+ workers connecting at once must not wait for a SYN retransmit
    fake: FakeIsicServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up is normal here
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so that a client's connection pool matters
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        params = parse_qs(parts.query, keep_blank_values=True)
        fake.log(LoggedRequest(parts.path, params, self.path, time.monotonic()))
        if fake.latency:
            time.sleep(fake.latency)
        fault = fake.take_fault(parts.path)
        try:
            if fault is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                self.send_json(fault.status, {"detail": f"injected {fault.status}"}, headers)
            else:
                fake.route(self, parts.path, params)
        except _Answer as answer:
            self.send_json(answer.status, answer.body)
        except ConnectionError:
            self.close_connection = True

    def send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_text(self, text: str) -> None:
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_file(self, data: bytes, content_type: str, isic_id: str) -> None:
        """Image bytes, or a broken version of them when a fault is set for `isic_id`."""
        fake = self.server.fake
        if isic_id in fake.junk_body:
            self.send_junk(*fake.junk_body[isic_id])
            return
        drop = fake.take_count(fake.drop_mid_body, isic_id)
        truncate = fake.take_count(fake.truncate_body, isic_id)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if truncate:
            self.send_header("Connection", "close")  # no length: the body ends when the socket closes
        elif fake.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        chunked = fake.chunked and not truncate
        frame = (lambda piece: b"%x\r\n%s\r\n" % (len(piece), piece)) if chunked else bytes
        if drop or truncate:  # a chunked body also stops without its final 0-length chunk
            self.wfile.write(frame(data[:len(data) // 2]))
            self.wfile.flush()
            self.close_connection = True
            return
        step = 512 if fake.chunk_delay else max(1, len(data))
        for start in range(0, len(data), step):
            if start:
                time.sleep(fake.chunk_delay)
            self.wfile.write(frame(data[start:start + step]))
            self.wfile.flush()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def send_junk(self, size: int, with_length: bool) -> None:
        """`size` bytes that are no image, with a Content-Length or ended by closing the connection."""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header(*(("Content-Length", str(size)) if with_length else ("Connection", "close")))
        self.end_headers()
        self.close_connection = not with_length
        for start in range(0, size, 1 << 20):
            self.wfile.write(bytes(min(1 << 20, size - start)))


class FakeIsicServer:
    """The fake archive: data, routes, fault switches, and a log of every request received."""

    def __init__(self, n_images: int = 30, seed: int = 0, host: str = "127.0.0.1", port: int = 0,
                 credit: bool = True) -> None:
        self.images = make_images(n_images, seed, credit)
        self.collections = {cid: {"id": cid, "name": name, "description": "", "public": public,
                                  "pinned": pinned, "locked": locked, "doi": doi,
                                  "doi_url": f"https://doi.org/{doi}" if doi else None,
                                  "created": datetime(2019, 1, 1, tzinfo=UTC) + timedelta(days=k)}
                            for k, (cid, name, public, pinned, locked, doi) in enumerate(COLLECTIONS)}
        self.max_limit = MAX_PAGE_SIZE
        self.latency = 0.0
        self.chunk_delay = 0.0
        self.fail_statuses: deque[InjectedStatus] = deque()
        self.drop_mid_body: Counter[str] = Counter()
        self.truncate_body: Counter[str] = Counter()
        self.wrong_size: set[str] = set()
        self.junk_body: dict[str, tuple[int, bool]] = {}
        self.chunked = False
        self.requests: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.fake = self
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FakeIsicServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-isic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeIsicServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v2/"

    # -- faults and log ----------------------------------------------------------------------------
    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None,
                  path_prefix: str = "/") -> None:
        """Answer `status` to the next `times` requests whose path starts with `path_prefix`."""
        self.fail_statuses.extend(InjectedStatus(status, retry_after, path_prefix) for _ in range(times))

    def take_fault(self, path: str) -> InjectedStatus | None:
        with self._lock:
            for fault in self.fail_statuses:
                if path.startswith(fault.path_prefix):
                    self.fail_statuses.remove(fault)
                    return fault
        return None

    def take_count(self, counter: Counter[str], key: str) -> bool:
        with self._lock:
            if counter[key] > 0:
                counter[key] -= 1
                return True
        return False

    def log(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    def bodies_requested(self) -> list[str]:
        """The isic ids of every image or thumbnail body asked for, in order (retries included)."""
        with self._lock:
            return [r.path.rsplit("/", 1)[-1][:12] for r in self.requests if r.path.startswith("/files/")]

    def requests_to(self, path_suffix: str) -> list[LoggedRequest]:
        """Logged requests whose path ends with `path_suffix` (e.g. 'images/search/')."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith(path_suffix)]

    # -- data --------------------------------------------------------------------------------------
    def visible(self) -> list[FakeImage]:
        """What an anonymous user can see, in the API's order (created ascending)."""
        return [img for img in self.images if img.public]

    def image(self, isic_id: str) -> FakeImage:
        return next(img for img in self.images if img.isic_id == isic_id)

    def search(self, query: str = "", collections: Sequence[int] | None = None) -> list[FakeImage]:
        """Visible images matching the DSL query and any of the visible `collections`."""
        predicate = parse_query(query)
        found = [img for img in self.visible() if predicate(img.searchable())]
        if collections:
            wanted = {c for c in collections if self.collections.get(c, {}).get("public")}
            found = [img for img in found if img.collections & wanted]
        return found

    def record(self, img: FakeImage) -> dict[str, Any]:
        """The `ImageOut` JSON of an image, with any injected override applied."""
        extra = 100 if img.isic_id in self.wrong_size else 0
        record = {
            "isic_id": img.isic_id, "public": img.public, "copyright_license": img.copyright_license,
            "attribution": img.attribution,
            "files": {
                "full": {"url": f"{self.url}/files/images/{img.isic_id}.{img.ext}",
                         "size": img.full_size + extra},
                "thumbnail_256": {"url": f"{self.url}/files/thumbnails/{img.isic_id}_thumbnail.jpg",
                                  "size": img.thumbnail_size + extra}},
            "metadata": {"acquisition": dict(img.acquisition), "clinical": dict(img.clinical)},
        }
        record.update(img.override)
        return record

    # -- routes ------------------------------------------------------------------------------------
    def route(self, handler: _Handler, path: str, params: dict[str, list[str]]) -> None:
        for pattern, method in self._routes():
            match = re.fullmatch(pattern, path)
            if match:
                method(handler, params, *match.groups())
                return
        raise _Answer(404, NOT_FOUND)

    def _routes(self) -> list[tuple[str, Callable[..., None]]]:
        return [  # only what the client calls; the real server has more (images/, collections/, ...)
            (r"/api/v2/images/search/", self._image_search),
            (r"/api/v2/collections/(\d+)/", self._collection_detail),
            (r"/api/v2/zip-download/license-file/([^/]+)/", self._license_file),
            (r"/files/images/(ISIC_\d{7})\.(\w+)", self._full_file),
            (r"/files/thumbnails/(ISIC_\d{7})_thumbnail\.jpg", self._thumbnail_file),
        ]

    def _base_url(self, handler: _Handler) -> str:
        return f"http://{handler.headers.get('Host') or self.url.removeprefix('http://')}{handler.path}"

    def _page(self, handler: _Handler, params: dict[str, list[str]], items: Sequence[Any],
              key: Callable[[Any], datetime], render: Callable[[Any], Any]) -> None:
        limit = _int_param(params, "limit")
        try:
            cursor = decode_cursor(_param(params, "cursor"))
        except ValueError as err:
            raise _Answer(422, {"detail": [{"type": "value_error", "loc": ["query", "cursor"],
                                            "msg": f"Value error, {err}"}]}) from None
        body = paginate(items, cursor, limit, self._base_url(handler), key, max_page_size=self.max_limit)
        body["results"] = [render(x) for x in body["results"]]
        handler.send_json(200, body)

    def _matches(self, params: dict[str, list[str]]) -> list[FakeImage]:
        collections = _param(params, "collections") or ""
        try:
            ids = [int(x) for x in collections.split(",")] if collections else None
        except ValueError:
            raise _Answer(422, {"detail": [{"type": "value_error", "loc": ["query", "collections"],
                                            "msg": "Value error, invalid literal for int()"}]}) from None
        try:
            return self.search(_param(params, "query") or "", ids)
        except DslError:
            raise _Answer(400, BAD_QUERY) from None

    def _image_search(self, handler: _Handler, params: dict[str, list[str]]) -> None:
        self._page(handler, params, self._matches(params), lambda img: img.created, self.record)

    def _collection_detail(self, handler: _Handler, params: dict[str, list[str]], cid: str) -> None:
        collection = self.collections.get(int(cid))
        if collection is None or not collection["public"]:
            raise _Answer(404, NOT_FOUND)
        handler.send_json(200, {k: v for k, v in collection.items() if k != "created"})

    def _license_file(self, handler: _Handler, params: dict[str, list[str]], name: str) -> None:
        if name not in LICENSE_TEXTS:
            raise _Answer(404, NOT_FOUND)
        handler.send_text(LICENSE_TEXTS[name])

    def _full_file(self, handler: _Handler, params: dict[str, list[str]], isic_id: str, ext: str) -> None:
        img = next((i for i in self.images if i.isic_id == isic_id and i.ext == ext), None)
        if img is None:
            raise _Answer(404, NOT_FOUND)
        handler.send_file(img.full, CONTENT_TYPES[ext], isic_id)

    def _thumbnail_file(self, handler: _Handler, params: dict[str, list[str]], isic_id: str) -> None:
        img = next((i for i in self.images if i.isic_id == isic_id), None)
        if img is None:
            raise _Answer(404, NOT_FOUND)
        handler.send_file(img.thumbnail, "image/jpeg", isic_id)


def _param(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _int_param(params: dict[str, list[str]], name: str) -> int | None:
    value = _param(params, name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise _Answer(422, {"detail": [{"type": "int_parsing", "loc": ["query", name],
                                        "msg": "Input should be a valid integer"}]}) from None


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the fake until killed; print the API URL first so a parent process can read it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--exact-sizes", action="store_true",
                        help="serve JPEGs as announced, without the publish step's credit segments")
    args = parser.parse_args(argv)
    server = FakeIsicServer(args.images, args.seed, port=args.port, credit=not args.exact_sizes)
    server.latency = args.latency
    print(server.api_url, flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()


if __name__ == "__main__":
    main()
