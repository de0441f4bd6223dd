"""dcgan.analysis.plot and the 2018 plot options, checked on matplotlib's artists, not on pixels."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.axes import Axes

from dcgan.analysis.embed import EmbedOptions
from dcgan.analysis.features import FeatureOptions
from dcgan.analysis.plot import save_figure, scatter_plot
from dcgan.analysis.report import EmbeddingOptions, EmbeddingResult, embed_images
from tests.conftest import make_image

matplotlib.use("Agg")


def _label_texts(ax: Axes) -> list[str]:
    return [t for c in ax.collections for t in getattr(c, "texts", [])]


@pytest.fixture
def folders(tmp_path: Path) -> list[str]:
    for i in range(4):
        make_image(tmp_path / "reals" / f"real{i}.png", size=(16, 16), seed=i)
        make_image(tmp_path / "fakes" / f"fake{i}.png", size=(16, 16), color=(20 * i, 100, 200))
    return [str(tmp_path / "reals"), str(tmp_path / "fakes")]


def _run(tmp_path: Path, folders: list[str], **options: object) -> EmbeddingResult:
    opts = EmbeddingOptions(embed=EmbedOptions(progress=False),
                            feature=FeatureOptions(cache_dir=None, progress=False), **options)
    return embed_images(tmp_path / "plot.png", folders, opts)


def test_default_labels_every_point_with_its_file_stem(tmp_path: Path, folders: list[str]) -> None:
    result = _run(tmp_path, folders)
    ax = result.figure.axes[0]
    assert sorted(_label_texts(ax)) == sorted([f"real{i}" for i in range(4)] + [f"fake{i}" for i in range(4)])
    assert ax.get_legend() is None
    assert result.names == ["reals", "fakes"]  # several folders: a group each, unless --no-group
    assert _run(tmp_path, folders, group=False).names == ["images"]
    assert _run(tmp_path, folders[:1]).names == ["reals"]


def test_skip_labels(tmp_path: Path, folders: list[str]) -> None:
    ax = _run(tmp_path, folders, skip_labels=True, group=True).figure.axes[0]
    assert _label_texts(ax) == []


def test_group_legend_and_limits(tmp_path: Path, folders: list[str]) -> None:
    ax = _run(tmp_path, folders, group=True, legend=True, limits=2.5).figure.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["reals", "fakes"]
    assert ax.get_xlim() == (-2.5, 2.5) and ax.get_ylim() == (-2.5, 2.5)
    assert len(_label_texts(ax)) == 8


def test_group_labels_name_each_group_at_its_center(tmp_path: Path, folders: list[str]) -> None:
    # Beside one of its points, a group's name read as if that image were special: it sits at the
    # group's center, on a cross, and no point gets a label.
    result = _run(tmp_path, folders, group_labels=True, real=folders[0])
    ax = result.figure.axes[0]
    assert sorted(_label_texts(ax)) == ["fakes", "reals"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["reals (real)", "fakes"]
    coords, labels = result.embedding.coords, result.labels
    (labelled,) = [c for c in ax.collections if getattr(c, "texts", None)]
    for name, xy in zip(labelled.texts, labelled.get_offsets(), strict=True):
        g = result.names.index(name)
        np.testing.assert_allclose(xy, coords[labels == g].mean(0))
        assert not any(np.allclose(xy, p) for p in coords)  # not at any image's point


def test_the_title_is_plain_words_and_the_method_a_subtitle(tmp_path: Path, folders: list[str]) -> None:
    result = _run(tmp_path, folders, group_labels=True, real=folders[0])
    fig = result.figure
    assert fig.get_suptitle() == "8 images placed so that images with similar colors lie close together"
    subtitle = fig.axes[0].get_title()
    assert subtitle.startswith("MDS of ") and "stress" in subtitle.lower()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".pdf", ".svg"])
def test_every_format_is_written(tmp_path: Path, suffix: str) -> None:
    coords = np.array([[0.0, 0.0], [1.0, 0.5], [-1.0, 0.2]])
    fig = scatter_plot(coords, np.array([0, 0, 1]), ["a", "b"], ["x", None, "z"], title="t", legend=True)
    save_figure(fig, tmp_path / f"p{suffix}")
    data = (tmp_path / f"p{suffix}").read_bytes()
    assert len(data) > 1000
    assert not list(tmp_path.glob(".partial-*"))


def test_dollar_signs_in_group_names_are_shown_as_written(tmp_path: Path) -> None:
    odd = [tmp_path / "grp$\\frac$", tmp_path / "a$x$"]
    for i in range(3):
        make_image(odd[0] / f"r{i}.png", size=(16, 16), seed=i)
        make_image(odd[1] / f"f{i}.png", size=(16, 16), color=(30 * i, 90, 200))
    result = _run(tmp_path, [str(p) for p in odd], group=True, legend=True, group_labels=True)
    ax = result.figure.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["grp\\$\\frac\\$", "a\\$x\\$"]  # escaped: matplotlib draws a literal $
    assert (tmp_path / "plot.png").stat().st_size > 1000  # drawn without a mathtext error
