"""The `embedding` command end to end: folders -> features -> 2-D embedding -> plot, tables, files.

Beside OUTPUT_IMAGE (`plot.png`) it writes `plot.csv` (path, group, x, y per image), `plot.npy` (the
symmetric distance matrix, rows in CSV order) and `plot.json` (what was computed, skipped files and
the group statistics), so that every number on the plot can be checked or re-plotted elsewhere.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from ..files import atomic_path, write_json, write_text
from ..images import find_images
from .embed import EMBEDDINGS, Embedding, EmbedOptions, format_statistics, group_statistics
from .features import FEATURES, FeatureOptions, FeatureSet
from .plot import PLOT_SUFFIXES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MIN_IMAGES = 3


@dataclass
class EmbeddingOptions:
    """Everything the `embedding` command can be asked for (CLI options map 1:1)."""

    features: str = "color"
    method: str = "mds"
    feature: FeatureOptions = field(default_factory=FeatureOptions)
    embed: EmbedOptions = field(default_factory=EmbedOptions)
    group: bool | None = None  # None: a group per IMAGE_PATH if several (or with real, group_labels)
    group_labels: bool = False
    skip_labels: bool = False
    legend: bool = False
    limits: float | None = None
    real: str | None = None


@dataclass
class EmbeddingResult:
    figure: Figure
    stats: dict
    table: str
    outputs: dict[str, Path]
    features: FeatureSet
    embedding: Embedding
    labels: np.ndarray  # group index of each image, in `features.paths` order
    names: list[str]  # group names
    skipped: list[str]


def output_paths(output: str | os.PathLike[str]) -> dict[str, Path]:
    """The plot and the three files written beside it."""
    plot = Path(output)
    if plot.suffix.lower() not in PLOT_SUFFIXES:
        raise UserError(f"{plot}: the plot must end in one of {', '.join(PLOT_SUFFIXES)}")
    return {"plot": plot, "csv": plot.with_suffix(".csv"), "distances": plot.with_suffix(".npy"),
            "json": plot.with_suffix(".json")}


def group_names(image_paths: Sequence[str]) -> list[str]:
    """A short name per IMAGE_PATH (its last component), the full argument where two would clash."""
    short = [Path(p).name or Path(p).resolve().name or str(p) for p in image_paths]
    return [s if short.count(s) == 1 else str(p).rstrip("/") for s, p in zip(short, image_paths, strict=True)]


def _real_index(real: str, image_paths: Sequence[str], names: Sequence[str]) -> int:
    target = Path(real).resolve()
    for i, (p, name) in enumerate(zip(image_paths, names, strict=True)):
        if Path(p).resolve() == target or real == name:
            return i
    raise UserError(f"--real {real}: must be one of the IMAGE_PATH arguments ({', '.join(image_paths)})")


def embed_images(output: str | os.PathLike[str], image_paths: Sequence[str],
                 opts: EmbeddingOptions) -> EmbeddingResult:
    """Embed the images of `image_paths` in 2-D, plot them and write the tables beside the plot."""
    outputs = output_paths(output)
    if opts.features not in FEATURES:
        raise UserError(f"unknown --features {opts.features!r}; choose from {', '.join(FEATURES)}")
    if opts.method not in EMBEDDINGS:
        raise UserError(f"unknown --method {opts.method!r}; choose from {', '.join(EMBEDDINGS)}")
    if not image_paths:
        raise UserError("no IMAGE_PATH given")
    if opts.group is False and (opts.group_labels or opts.real is not None):
        raise UserError(f"--no-group: {'--real' if opts.real is not None else '--group-labels'} needs a "
                        "group per IMAGE_PATH")
    # Several folders are most often reals and fakes: pooled into one colour, they would read as one set.
    grouped = opts.group if opts.group is not None else (
        len(image_paths) > 1 or opts.group_labels or opts.real is not None)
    names = group_names(image_paths) if grouped else [group_names(image_paths)[0] if len(image_paths) == 1
                                                      else "images"]
    real = _real_index(opts.real, image_paths, names) if opts.real is not None else None

    paths: list[Path] = []
    input_group: list[int] = []
    for g, arg in enumerate(image_paths):
        found = find_images(arg, required=True)
        paths += found
        input_group += [g if grouped else 0] * len(found)

    return _embed(outputs, names, real, paths, input_group, opts)


def _embed(outputs: dict[str, Path], names: list[str], real: int | None, paths: list[Path],
           input_group: list[int], opts: EmbeddingOptions) -> EmbeddingResult:
    """Features, embedding, statistics, plot and files for the validated request."""
    fs = FEATURES[opts.features](paths, opts.feature)
    if len(fs.paths) < MIN_IMAGES:
        raise UserError(f"an embedding needs at least {MIN_IMAGES} readable images, found {len(fs.paths)}"
                        + (f" ({len(fs.skipped)} unreadable)" if fs.skipped else ""))
    labels = np.array([input_group[i] for i in fs.index])
    missing = [names[g] for g in range(len(names)) if not (labels == g).any()]
    if missing:
        raise UserError(f"no readable images in {', '.join(missing)}")

    emb = EMBEDDINGS[opts.method](fs.distances, fs.vectors, opts.embed)
    stats = group_statistics(fs.distances, emb.coords, labels, names, [str(p) for p in fs.paths], real)

    from .plot import save_figure, scatter_plot

    # The title in plain words; the method's details (e.g. its stress) in a subtitle and the JSON.
    what = PLAIN_FEATURES.get(opts.features, fs.description)
    title = f"{len(fs.paths):,} images placed so that images with similar {what} lie close together"
    subtitle = f"{opts.method.upper() if opts.method != 'tsne' else 't-SNE'} of {fs.description}; {emb.note}"
    fig = scatter_plot(emb.coords, labels, names, _point_labels(fs.paths, emb.coords, labels, names, opts),
                       title=title, subtitle=subtitle, axis_labels=emb.axis_labels, limits=opts.limits,
                       legend=opts.legend or opts.group_labels, real=real,
                       centroid_names=opts.group_labels and not opts.skip_labels)
    save_figure(fig, outputs["plot"])
    _write_csv(outputs["csv"], fs.paths, [names[g] for g in labels], emb.coords)
    with atomic_path(outputs["distances"]) as tmp, open(tmp, "wb") as f:
        np.save(f, fs.distances)
    write_json(outputs["json"], {
        "features": opts.features, "feature_description": fs.description, "method": opts.method,
        "embedding": emb.note, "images": len(fs.paths), "groups": names,
        "distances_file": outputs["distances"].name, "skipped": fs.skipped, "statistics": stats,
    })
    return EmbeddingResult(fig, stats, format_statistics(stats), outputs, fs, emb, labels, names, fs.skipped)


PLAIN_FEATURES = {"color": "colors", "pixels": "pixels (downscaled)"}


def _point_labels(paths: Sequence[Path], coords: np.ndarray, labels: np.ndarray, names: Sequence[str],
                  opts: EmbeddingOptions) -> list[str | None] | None:
    """File stems; none with --group-labels (the groups are then named at their centers)."""
    if opts.skip_labels or opts.group_labels:
        return None
    return [p.stem for p in paths]


def _write_csv(path: Path, paths: Sequence[Path], groups: Sequence[str], coords: np.ndarray) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "group", "x", "y"])
    for p, g, (x, y) in zip(paths, groups, coords, strict=True):
        writer.writerow([str(p), g, f"{x:.6g}", f"{y:.6g}"])
    write_text(path, buf.getvalue())
