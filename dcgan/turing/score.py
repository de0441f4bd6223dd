"""Score "Real or Fake?" answers against the key: per rater, pooled, agreement, per image.

Detecting a fake is the positive class: sensitivity is the share of fakes called fake, specificity
the share of reals called real. A rater's accuracy is tested against chance (p = 0.5, two-sided
exact binomial test): a GAN whose fakes experts cannot tell apart gives accuracies near 0.5 and
large p-values; a rater far *below* 0.5 tells fakes apart too, with the labels swapped.

Fleiss' kappa measures how much the raters agree with each other beyond chance (on the images that
all of them answered), whatever the truth: raters who all make the same mistakes agree. Per image,
the fool rate is the share of raters who got it wrong; the fakes with the highest fool rates are the
generator's most convincing work, and a grid of them is drawn (only fakes that fooled at least one
rater: when none did, no grid is written, and the result says why).

Answers files are checked against the key before anything is computed: a file from another site,
or naming an image the key does not know, is refused with a `UserError` naming the file.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..files import atomic_path, write_json
from .site import ANSWERS_FORMAT, IMAGES_DIR, KEY_FILE, KEY_FORMAT, LABELS, SITE_DIR

SCORE_FILE = "score.json"
GRID_FILE = "convincing_fakes.png"


@dataclass(frozen=True)
class Key:
    """key.json, read: the site id and the truth of every image, in the site's order."""

    path: Path
    site_id: str
    labels: dict[str, str]   # image id -> "real" | "fake"
    sources: dict[str, str]  # image id -> source path
    images_dir: Path


@dataclass(frozen=True)
class Answer:
    """One rater's verdict on one image."""

    id: str
    answer: str
    confidence: int | None


@dataclass(frozen=True)
class Rater:
    """One answers file, read and checked against the key."""

    name: str
    file: Path
    answers: tuple[Answer, ...]


# ---------------------------------------------------------------------------------------------------
# Reading and checking


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except RecursionError:  # e.g. 200,000 nested `[`: json recurses once per level
        raise UserError(f"{path}: not a readable {what} (nested too deeply)") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"{path}: not a readable {what} ({err})") from None


def load_key(path: str | os.PathLike[str]) -> Key:
    """Read key.json from OUTPUT_DIR (or the file itself), as written by `img2dist.py turing`."""
    path = Path(path)
    if path.is_dir():
        path = path / KEY_FILE
    if not path.exists():
        raise UserError(f"{path}: no such file (the key is written by `img2dist.py turing`)")
    data = _read_json(path, "key file")
    if not isinstance(data, dict) or data.get("format") != KEY_FORMAT:
        raise UserError(f"{path}: not a key file of `img2dist.py turing`")
    try:
        labels = {str(item["id"]): str(item["label"]) for item in data["items"]}
        sources = {str(item["id"]): str(item.get("source", "")) for item in data["items"]}
        site_id = str(data["site_id"])
    except (KeyError, TypeError) as err:
        raise UserError(f"{path}: damaged key file (missing {err})") from None
    if not labels or set(labels.values()) - set(LABELS):
        raise UserError(f"{path}: damaged key file (labels must be real or fake)")
    return Key(path, site_id, labels, sources, path.parent / SITE_DIR / IMAGES_DIR)


def _parse_answer(path: Path, raw: Any) -> Answer:
    """One entry of an answers file; anything malformed is a `UserError` naming the file."""
    if not isinstance(raw, dict) or "id" not in raw or "answer" not in raw:
        raise UserError(f"{path}: every answer needs an id and an answer, got {raw!r:.80}")
    verdict = raw["answer"]
    if verdict not in LABELS:
        raise UserError(f"{path}: answer for {raw['id']} is {verdict!r}, not real or fake")
    confidence = raw.get("confidence")
    if confidence is not None and (isinstance(confidence, bool) or confidence not in (1, 2, 3, 4, 5)):
        raise UserError(f"{path}: confidence for {raw['id']} is {confidence!r}, not 1 to 5 or null")
    return Answer(str(raw["id"]), verdict, None if confidence is None else int(confidence))


def load_answers(path: str | os.PathLike[str], key: Key) -> Rater:
    """Read one rater's answers file and check it belongs to `key`'s site and names only its images."""
    path = Path(path)
    data = _read_json(path, "answers file")
    if not isinstance(data, dict) or data.get("format") != ANSWERS_FORMAT:
        raise UserError(f"{path}: not an answers file of the turing page")
    if str(data.get("site_id")) != key.site_id:
        raise UserError(f"{path}: answers for site {data.get('site_id')}, but {key.path} is the key of "
                        f"site {key.site_id}")
    if not isinstance(data.get("answers"), list):
        raise UserError(f"{path}: has no list of answers")
    answers = [_parse_answer(path, raw) for raw in data["answers"]]
    ids = [a.id for a in answers]
    unknown = [i for i in ids if i not in key.labels]
    if unknown:
        raise UserError(f"{path}: {len(unknown)} answer(s) name images that are not in {key.path}: "
                        f"{', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}")
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise UserError(f"{path}: answers {', '.join(twice[:3])} more than once")
    name = printable(str(data.get("rater") or "")).strip() or printable(path.stem)
    return Rater(name, path, tuple(answers))


def printable(text: str) -> str:
    """`text` without control and format characters: a rater name holding terminal escape codes
    (or bidi overrides) must not rewrite the organiser's terminal or reorder a report line."""
    return "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf"))


def load_raters(paths: Sequence[str | os.PathLike[str]], key: Key) -> list[Rater]:
    """Read every answers file; a file given twice is refused, a name used twice gets its file's name."""
    resolved = [Path(p).resolve() for p in paths]
    for i, p in enumerate(resolved):
        if p in resolved[:i]:
            raise UserError(f"{paths[i]}: given twice")
    raters = [load_answers(p, key) for p in paths]
    seen: dict[tuple[str, frozenset[Answer]], Rater] = {}
    for r in raters:
        earlier = seen.setdefault((r.name, frozenset(r.answers)), r)
        if earlier is not r:
            raise UserError(f"{r.file}: the same answers of rater {r.name!r} as {earlier.file} (a copy?); "
                            "give each rater's answers once")
    names = [r.name for r in raters]
    return [Rater(f"{r.name} ({r.file.name})", r.file, r.answers) if names.count(r.name) > 1 else r
            for r in raters]


# ---------------------------------------------------------------------------------------------------
# Statistics


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def rater_stats(rater: Rater, key: Key) -> dict[str, Any]:
    """Accuracy, sensitivity and specificity for fakes, binomial test and confidences of one rater."""
    from scipy.stats import binomtest

    right = [a for a in rater.answers if a.answer == key.labels[a.id]]
    wrong = [a for a in rater.answers if a.answer != key.labels[a.id]]
    fakes = [a for a in rater.answers if key.labels[a.id] == "fake"]
    reals = [a for a in rater.answers if key.labels[a.id] == "real"]
    fakes_found = sum(a.answer == "fake" for a in fakes)
    reals_found = sum(a.answer == "real" for a in reals)
    n = len(rater.answers)
    sens, spec = _ratio(fakes_found, len(fakes)), _ratio(reals_found, len(reals))
    stats: dict[str, Any] = {
        "rater": rater.name, "file": str(rater.file), "answered": n, "images": len(key.labels),
        "correct": len(right), "accuracy": _ratio(len(right), n),
        "sensitivity": sens, "specificity": spec,
        "balanced_accuracy": None if sens is None or spec is None else (sens + spec) / 2,
        "fakes_called_fake": fakes_found, "fakes": len(fakes),
        "reals_called_real": reals_found, "reals": len(reals),
        "p_value": None, "accuracy_ci95": None,
        "confidence_right": _mean([a.confidence for a in right if a.confidence is not None]),
        "confidence_wrong": _mean([a.confidence for a in wrong if a.confidence is not None]),
    }
    if n:
        test = binomtest(len(right), n, 0.5, alternative="two-sided")
        ci = test.proportion_ci(confidence_level=0.95, method="exact")
        stats["p_value"], stats["accuracy_ci95"] = float(test.pvalue), [float(ci.low), float(ci.high)]
    return stats


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa of an (items x categories) table of rating counts, same raters per item.

    None when undefined: fewer than 2 raters or no item, or every rating in one category (then
    agreement expected by chance is already perfect).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return None
    m = counts.sum(axis=1)
    if m[0] < 2 or not np.all(m == m[0]):
        return None
    m = m[0]
    p_item = ((counts * counts).sum(axis=1) - m) / (m * (m - 1))
    p_cat = counts.sum(axis=0) / counts.sum()
    agreement, chance = p_item.mean(), (p_cat * p_cat).sum()
    if np.isclose(chance, 1.0):
        return None
    return float((agreement - chance) / (1 - chance))


def _verdicts(raters: Sequence[Rater]) -> list[dict[str, str]]:
    """Each rater's answers as image id -> "real" | "fake"."""
    return [{a.id: a.answer for a in r.answers} for r in raters]


def agreement(raters: Sequence[Rater], key: Key) -> dict[str, Any]:
    """Fleiss' kappa over the images every rater answered (kappa needs the same raters per image)."""
    verdicts = _verdicts(raters)
    common = [i for i in key.labels if all(i in v for v in verdicts)]
    counts = np.array([[sum(v[i] == label for v in verdicts) for label in LABELS] for i in common])
    kappa = fleiss_kappa(counts) if len(raters) >= 2 and common else None
    return {"fleiss_kappa": kappa, "raters": len(raters), "images": len(common)}


def image_stats(raters: Sequence[Rater], key: Key) -> list[dict[str, Any]]:
    """Per image: how many raters answered it, how many it fooled, and the fool rate."""
    verdicts = _verdicts(raters)
    rows = []
    for image_id, label in key.labels.items():
        given = [v[image_id] for v in verdicts if image_id in v]
        fooled = sum(answer != label for answer in given)
        rows.append({"id": image_id, "label": label, "source": key.sources.get(image_id, ""),
                     "answered": len(given), "fooled": fooled, "fool_rate": _ratio(fooled, len(given))})
    return rows


def ranked(rows: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    """The answered images of `label`, most fooling first (ties: most raters fooled, then id)."""
    chosen = [r for r in rows if r["label"] == label and r["answered"]]
    return sorted(chosen, key=lambda r: (-r["fool_rate"], -r["fooled"], r["id"]))


def convincing_fakes(report: dict[str, Any], top: int) -> list[dict[str, Any]]:
    """The `top` fakes that fooled at least one rater, most convincing first: the grid's images."""
    return [r for r in report["fakes_called_real"] if r["fooled"]][:top]


def score(raters: Sequence[Rater], key: Key) -> dict[str, Any]:
    """The whole report: per rater, pooled accuracy, Fleiss' kappa, per-image fool rates."""
    per_rater = [rater_stats(r, key) for r in raters]
    answered = sum(s["answered"] for s in per_rater)
    correct = sum(s["correct"] for s in per_rater)
    rows = image_stats(raters, key)
    return {
        "site_id": key.site_id, "key": str(key.path), "images": len(key.labels),
        "raters": per_rater,
        "pooled": {"raters": len(raters), "answered": answered, "correct": correct,
                   "accuracy": _ratio(correct, answered)},
        "agreement": agreement(raters, key),
        "fakes_called_real": ranked(rows, "fake"),
        "reals_called_fake": ranked(rows, "real"),
    }


# ---------------------------------------------------------------------------------------------------
# Output


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _percent(correct: int, n: int) -> str:
    """`correct` of `n` as the page shows it: a whole percent, halves rounded up (JS Math.round)."""
    return "-" if not n else f"{(200 * correct + n) // (2 * n)}%"


def _fmt_p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def format_report(report: dict[str, Any], top: int = 5) -> str:
    """A plain-text summary: one table row per rater, then pooled figures and the top fooling images."""
    lines = [f"{'rater':<24} {'answered':>9} {'accuracy':>11} {'sens.':>6} {'spec.':>6} {'p':>8} "
             f"{'conf. right':>11} {'conf. wrong':>11}"]
    for s in report["raters"]:
        answered = f"{s['answered']}/{s['images']}"
        accuracy = f"{s['correct']}/{s['answered']} {_percent(s['correct'], s['answered'])}"
        lines.append(f"{s['rater'][:24]:<24} {answered:>9} {accuracy:>11} "
                     f"{_fmt(s['sensitivity']):>6} {_fmt(s['specificity']):>6} {_fmt_p(s['p_value']):>8} "
                     f"{_fmt(s['confidence_right'], 1):>11} {_fmt(s['confidence_wrong'], 1):>11}")
    pooled, agree = report["pooled"], report["agreement"]
    lines.append(f"pooled accuracy {_percent(pooled['correct'], pooled['answered'])} "
                 f"({pooled['correct']}/{pooled['answered']} "
                 f"answers, {pooled['raters']} rater(s)); Fleiss' kappa {_fmt(agree['fleiss_kappa'])} "
                 f"({agree['raters']} raters, {agree['images']} images answered by all)")
    for title, key in (("fakes most often called real", "fakes_called_real"),
                       ("reals most often called fake", "reals_called_fake")):
        rows = [r for r in report[key] if r["fooled"]][:top]
        listing = ", ".join(f"{r['id']} {r['fooled']}/{r['answered']}" for r in rows) or "none"
        lines.append(f"{title}: {listing}")
    return "\n".join(lines)


def fakes_grid(report: dict[str, Any], key: Key, path: str | os.PathLike[str], top: int = 16,
               columns: int = 4) -> int:
    """Draw the `top` most convincing fakes (as shown on the site) with their fool rates; returns the count.

    Only fakes that fooled at least one rater are drawn (a fake every rater caught is not
    convincing); with none, nothing is written and 0 is returned. Pillow rather than torchvision:
    a caption under each image says how many raters it fooled, which is the point of the picture.
    """
    from PIL import Image, ImageDraw, ImageFont

    from ..images import open_image

    rows = convincing_fakes(report, top)
    if not rows:
        return 0
    tiles = [open_image(key.images_dir / f"{r['id']}.png") for r in rows]
    w, h = tiles[0].size
    scale = min(max(1.0, 160 / max(w, h)), 256 / max(w, h))
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    font = ImageFont.load_default(size=14)
    pad, caption, title = 8, 22, 30
    cols = min(columns, len(tiles))
    nrows = -(-len(tiles) // cols)
    grid = Image.new("RGB", (cols * (tw + pad) + pad, title + nrows * (th + caption + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((pad, 8), "Most convincing fakes: raters who called them real", fill=(27, 36, 48), font=font)
    for i, (tile, row) in enumerate(zip(tiles, rows, strict=True)):
        x = pad + (i % cols) * (tw + pad)
        y = title + (i // cols) * (th + caption + pad)
        grid.paste(tile.resize((tw, th), Image.Resampling.LANCZOS), (x, y))
        draw.text((x, y + th + 3), f"{row['id']}  {row['fooled']}/{row['answered']}", fill=(60, 70, 85),
                  font=font)
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
    return len(tiles)


@dataclass
class ScoreResult:
    """The report and the files written."""

    report: dict[str, Any]
    json_path: Path
    grid_path: Path | None
    grid_count: int = 0
    grid_note: str | None = None  # why there is no grid, when there is none


def score_answers(output_dir: str | os.PathLike[str], answer_files: Sequence[str | os.PathLike[str]],
                  report_dir: str | os.PathLike[str] | None = None, top: int = 16) -> ScoreResult:
    """Read the key and the answers, write score.json and the grid of convincing fakes to `report_dir`.

    `report_dir` defaults to OUTPUT_DIR itself, beside key.json and outside the site folder, so
    that the results (which name the answers) never travel with the site.
    """
    if not answer_files:
        raise UserError("no answers file given")
    key = load_key(output_dir)
    raters = load_raters(answer_files, key)
    report = score(raters, key)
    folder = Path(report_dir) if report_dir is not None else key.path.parent
    grid_path: Path | None = folder / GRID_FILE
    count, note = 0, None
    if not convincing_fakes(report, top):
        note = "no fake fooled any rater"
    elif not key.images_dir.is_dir():
        note = f"{key.images_dir} is gone"
    else:
        count = fakes_grid(report, key, grid_path, top=top)
    if note is not None:
        # A grid left by an earlier scoring would no longer match score.json.
        (folder / GRID_FILE).unlink(missing_ok=True)
        grid_path, note = None, f"no {GRID_FILE} written: {note}"
    json_path = folder / SCORE_FILE
    report["outputs"] = {"json": str(json_path), "grid": None if grid_path is None else str(grid_path),
                         "grid_note": note}
    write_json(json_path, report)
    return ScoreResult(report, json_path, grid_path, count, note)
