"""What makes a downloaded ISIC file complete, and the ledger that remembers it between runs.

The archive's announced sizes are not file sizes: publishing embeds credit metadata into every JPEG
after the size was recorded (isic `embed_iptc_metadata`), so a complete JPEG is larger than its
`files.full.size`. A file therefore counts as complete when its body matched the HTTP response's own
Content-Length and it decodes as the image type its name says (`check_image`), and a re-run knows it
by the ledger `.download-state.json` (isic_id -> file, kind, size, sha256), not by the API's size.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from dcgan.files import write_json

LEDGER_NAME = ".download-state.json"
LEDGER_VERSION = 1
PIL_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "tif": "TIFF", "tiff": "TIFF"}
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: length 0, type, CRC


@dataclass(frozen=True)
class Entry:
    """One completed file as it was written: enough to recognise it again without the network."""

    file: str  # the name inside OUTPUT_PATH, `<isic_id>.<ext>`
    kind: str  # "full" or "thumbnail_256": a thumbnail never stands in for a full image
    size: int
    sha256: str


def file_digest(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a file, streamed (hashlib reads it in pieces)."""
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256")
        return fh.tell(), digest.hexdigest()


def check_image(path: Path, suffix: str) -> str | None:
    """None when `path` decodes completely as the format `suffix` names, else why it does not.

    JPEGs are decoded at 1/8 scale (libjpeg still reads every entropy-coded byte, so a cut-off
    file fails, at a fraction of the cost). A PNG must also end with its IEND chunk: Pillow decodes
    one that lacks it without complaint.
    """
    expected = PIL_FORMATS[suffix.lower()]
    try:
        with Image.open(path) as img:
            if img.format != expected:
                return f"not a {expected} image (it reads as {img.format or 'unknown'})"
            if expected == "JPEG":
                img.draft(None, (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
        if expected == "PNG":
            with open(path, "rb") as fh:
                fh.seek(max(0, path.stat().st_size - len(PNG_END)))
                if fh.read() != PNG_END:
                    return "not a complete PNG image (no IEND chunk at the end)"
    except Image.DecompressionBombError:
        return f"refused: over {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels"
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # what Pillow raises for a bad file
        return f"not a readable {expected} image ({' '.join(str(err).split())[:120]})"
    return None


class Ledger:
    """`.download-state.json` in OUTPUT_PATH: the files this tool completed there, by isic_id."""

    def __init__(self, folder: Path, entries: dict[str, Entry] | None = None) -> None:
        self.path = folder / LEDGER_NAME
        self.entries: dict[str, Entry] = dict(entries or {})

    @classmethod
    def load(cls, folder: Path) -> Ledger:
        """The folder's ledger, without entries whose file is gone; empty when there is none.

        An unreadable ledger is not fatal: every file is then verified by decoding instead.
        """
        path = folder / LEDGER_NAME
        if not path.exists():
            return cls(folder)
        try:
            raw: Any = json.loads(path.read_text(encoding="utf8"))
            entries = {k: Entry(**v) for k, v in raw["files"].items()}
            if raw.get("version") != LEDGER_VERSION:
                raise ValueError(f"version {raw.get('version')!r}")
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            print(f"warning: ignoring unreadable {path} ({err}); existing files will be checked by decoding",
                  file=sys.stderr)
            return cls(folder)
        return cls(folder, {k: e for k, e in entries.items() if (folder / e.file).is_file()})

    def save(self) -> None:
        """Write atomically and durably (fsync): a power cut leaves the old ledger or the new one."""
        files = {k: asdict(self.entries[k]) for k in sorted(self.entries)}
        write_json(self.path, {"version": LEDGER_VERSION, "files": files}, durable=True)
