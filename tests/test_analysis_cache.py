"""dcgan.analysis.cache: the on-disk feature cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dcgan.analysis.cache import FeatureCache, default_cache_dir, file_digest


def test_round_trip_and_content_keys(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "kind-a")
    assert cache.get(["0" * 32]) == [None]
    cache.put(["a" * 32, "b" * 32], np.arange(6.0).reshape(2, 3))
    cache.save()
    again = FeatureCache(tmp_path, "kind-a")
    rows = again.get(["b" * 32, "c" * 32])
    np.testing.assert_array_equal(rows[0], [3.0, 4.0, 5.0])
    assert rows[1] is None and again.hits == 1
    assert FeatureCache(tmp_path, "kind-b").get(["a" * 32]) == [None]  # parameters are part of the key


def test_digest_follows_content_not_name(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"same")
    (tmp_path / "y.png").write_bytes(b"same")
    (tmp_path / "z.png").write_bytes(b"other")
    x, y, z = (file_digest(tmp_path / name) for name in ("x.png", "y.png", "z.png"))
    assert x == y != z


def test_corrupt_cache_is_ignored_and_disabled_cache_is_a_no_op(tmp_path: Path) -> None:
    FeatureCache(tmp_path, "k").path.write_bytes(b"garbage")
    cache = FeatureCache(tmp_path, "k")
    assert cache.get(["a" * 32]) == [None]
    cache.put(["a" * 32], [np.ones(2)])
    cache.save()
    assert FeatureCache(tmp_path, "k").get(["a" * 32])[0] is not None
    off = FeatureCache(None, "k")
    off.put(["a" * 32], [np.ones(2)])
    off.save()
    assert off.path is None


def test_xdg_cache_home_is_respected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "isic-gan"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "isic-gan"


def _write_cache(path: Path, keys: list[str], values: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.savez(f, keys=np.array(keys, dtype="S32"), values=values)


@pytest.mark.parametrize("damage", ["shape", "nan"])
def test_damaged_entries_are_misses_and_recomputed(tmp_path: Path, image_folder: Path, damage: str) -> None:
    from dcgan.analysis.features import FeatureOptions, color_features, pixel_features

    paths = sorted(image_folder.iterdir())
    cache_dir = tmp_path / "cache"
    clean = {kind: fn(paths, FeatureOptions(cache_dir=None, progress=False, pixel_size=8))
             for kind, fn in (("color", color_features), ("pixels", pixel_features))}
    digests = [file_digest(p) for p in paths]
    for kind, fn in (("color", color_features), ("pixels", pixel_features)):
        opts = FeatureOptions(cache_dir=cache_dir, progress=False, pixel_size=8)
        fn(paths, opts)  # fills the cache
        (file,) = cache_dir.glob(f"{kind}-*.npz")
        with np.load(file) as stored:
            values = stored["values"].astype(np.float32)
        values = values[:, :2] if damage == "shape" else np.where(np.arange(values.size).reshape(
            values.shape) % 7 == 0, np.nan, values).astype(np.float32)
        _write_cache(file, digests, values)
        again = fn(paths, opts)
        assert again.cache_hits == 0
        np.testing.assert_allclose(again.distances, clean[kind].distances, rtol=1e-5, atol=1e-5)
        assert np.isfinite(again.distances).all()
        third = fn(paths, opts)  # the recomputed rows replaced the damaged ones on disk
        assert third.cache_hits == len(paths)
        np.testing.assert_allclose(third.distances, clean[kind].distances, rtol=1e-5, atol=1e-5)
        file.unlink()
