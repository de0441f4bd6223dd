"""The embedding scatter plot, drawn with matplotlib's object-oriented API.

No pyplot: a `Figure` is created directly, so there is no global figure state, no GUI backend is
ever touched (the Agg canvas renders PNG/JPG; PDF and SVG pick their own canvas from the suffix),
and tests can inspect the returned artists (texts, legend entries) instead of pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..files import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.collections import PathCollection
    from matplotlib.figure import Figure

PLOT_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def group_colors(n: int) -> list:
    """Distinct colors: tab10 up to 10 groups, tab20 up to 20, then evenly spaced hues."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["hsv"](i / n) for i in range(n)]


def plain(text: str) -> str:
    """`text` shown as written: a `$` pair would otherwise start matplotlib's mathtext (a folder
    named `grp$\\frac$` is a parse error, `a$x$` silently turns italic)."""
    return text.replace("$", r"\$")


def scatter_plot(coords: np.ndarray, labels: np.ndarray, names: Sequence[str],
                 point_labels: Sequence[str | None] | None = None, *, title: str = "",
                 axis_labels: tuple[str, str] = ("", ""), limits: float | None = None,
                 legend: bool = False, real: int | None = None, subtitle: str = "",
                 centroid_names: bool = False) -> Figure:
    """Scatter `coords` (N, 2) colored by group `labels` (indices into `names`).

    `point_labels[i]` is drawn next to point i unless None. `limits` sets symmetric axis limits
    [-limits, limits] on both axes. The legend, when asked for, sits outside the axes on the right,
    so that it never hides points. The `real` group is drawn as hollow circles under the others.
    `centroid_names` writes each group's name at the group's center, marked with a cross (beside one
    of its points, a name read as if that image were special). `subtitle`: a smaller second line.
    """
    from matplotlib.figure import Figure

    n = len(coords)
    fig = Figure(figsize=(9, 7.5), layout="constrained")
    ax = fig.add_subplot()
    colors = group_colors(len(names))
    # Smaller markers and type for larger sets; labels of hundreds of points overlap regardless.
    size = float(np.clip(2000 / max(n, 1), 6, 60))
    font = float(np.clip(14 - 2 * np.log10(max(n, 1)) * 1.5, 4, 9))
    order = sorted(range(len(names)), key=lambda g: g != real)  # the reals first, underneath
    for g in order:
        pts = coords[labels == g]
        if len(pts) == 0:
            continue
        if g == real:
            ax.scatter(pts[:, 0], pts[:, 1], s=size, facecolors="none", edgecolors=[colors[g]],
                       linewidths=0.8, label=f"{plain(names[g])} (real)", zorder=1)
        else:
            ax.scatter(pts[:, 0], pts[:, 1], s=size, color=[colors[g]], alpha=0.8, linewidths=0,
                       label=plain(names[g]), zorder=2)
    if point_labels is not None:
        shown = [(xy, text) for xy, text in zip(coords, point_labels, strict=True) if text]
        if shown:
            # A few labels (group names) are large with a white halo; one per point follow the markers.
            few = len(shown) <= 20 and len(shown) < n
            ax.add_collection(text_labels(fig, ax, np.array([xy for xy, _ in shown]), [t for _, t in shown],
                                          9.0 if few else font, halo=few), autolim=False)
    if centroid_names:
        present = [g for g in range(len(names)) if (labels == g).any()]
        centers = np.array([coords[labels == g].mean(axis=0) for g in present])
        ax.scatter(centers[:, 0], centers[:, 1], s=120, marker="P", color=[colors[g] for g in present],
                   edgecolors="white", linewidths=1.0, zorder=4)
        ax.add_collection(text_labels(fig, ax, centers, [names[g] for g in present], 10.0, offset=(6, 6),
                                      halo=True), autolim=False)
    if limits is not None:
        ax.set_xlim(-limits, limits)
        ax.set_ylim(-limits, limits)
    ax.set_aspect("equal", adjustable="datalim" if limits is None else "box")
    ax.set_xlabel(plain(axis_labels[0]))
    ax.set_ylabel(plain(axis_labels[1]))
    if subtitle:
        fig.suptitle(plain(title), fontsize=11)
        ax.set_title(plain(subtitle), fontsize=8, color="0.35")
    else:
        ax.set_title(plain(title), fontsize=10)
    ax.grid(True, linewidth=0.3, alpha=0.5)
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=8,
                  markerscale=max(1.0, 30 / size) ** 0.5, frameon=False)
    return fig


def text_labels(fig: Figure, ax: Axes, xy: np.ndarray, texts: Sequence[str], fontsize: float,
                offset: tuple[float, float] = (3, 3), halo: bool = False) -> PathCollection:
    """Many short labels as ONE collection of glyph outlines, `offset` points up-right of each point.

    Why not `Text` artists: matplotlib lays out and rasterizes every glyph of every Text on each draw,
    so 500 labels took longer than everything else in `embedding` together (docs/performance.md).
    Here each distinct character's outline is loaded once and a label is its glyphs placed at their
    advance widths (no kerning; fine for file names), drawn in one call.
    The label strings are kept on the collection as `.texts` (tests read them there).
    """
    from matplotlib.collections import PathCollection
    from matplotlib.font_manager import FontProperties, findfont, get_font
    from matplotlib.ft2font import LoadFlags
    from matplotlib.path import Path as MplPath
    from matplotlib.transforms import Affine2D

    font = get_font(findfont(FontProperties()))
    font.set_size(100, 72)  # outlines in units of 1/100 point, as matplotlib's TextPath does
    glyphs = {}
    for ch in set("".join(texts)):
        advance = font.load_char(ord(ch), flags=LoadFlags.NO_HINTING).linearHoriAdvance / 65536
        glyphs[ch] = (*font.get_path(), advance)
    paths = []
    for text in texts:
        verts, codes, x = [np.zeros((1, 2))], [np.array([MplPath.MOVETO], np.uint8)], 0.0
        for ch in text:
            v, c, advance = glyphs[ch]
            if len(v):
                verts.append(v + np.array([x, 0.0]))
                codes.append(c)
            x += advance
        paths.append(MplPath(np.concatenate(verts) * (fontsize / 100), np.concatenate(codes)))
    points_to_pixels = Affine2D().translate(*offset).scale(1 / 72) + fig.dpi_scale_trans
    labels = PathCollection(paths, offsets=xy, offset_transform=ax.transData, transform=points_to_pixels,
                            facecolors="0.1", edgecolors="none", alpha=0.9, zorder=3)
    if halo:
        from matplotlib import patheffects

        labels.set_path_effects([patheffects.withStroke(linewidth=2.5, foreground="white"),
                                 patheffects.Normal()])
    labels.texts = list(texts)
    return labels


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 150) -> None:
    """Save `fig` atomically; the format follows the suffix (png, jpg, pdf, svg)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lower().lstrip(".").replace("jpg", "jpeg"))
