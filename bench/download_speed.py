"""Benchmark: ISIC downloads with 8 concurrent workers against one at a time.

Serves the fake ISIC API v2 (tests/fake_isic.py) in a separate process, so that the server does not
compete with the client for the GIL, with a fixed latency added to every request (a stand-in for the
round trip to S3), and downloads the same images with `workers=1` and `workers=8`, alternating the
order between rounds. With small images the time is almost all latency, which is exactly what
concurrency hides: the target is a speed-up of at least 6x. As on the real archive, the fake's JPEGs
are larger than announced, and every body is checked as the client always does (Content-Length,
decoding, sha256 for the ledger).

Run from the repository root:  .venv/bin/python bench/download_speed.py [--rounds 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import argparse  # noqa: E402 - after the sys.path line, like the imports below
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402

from dcgan.data.isic import download_images  # noqa: E402

TARGET_SPEEDUP = 6.0


@contextmanager
def fake_server(images: int, latency: float) -> Iterator[str]:
    """Start `python -m tests.fake_isic` and yield its API URL (its first line of output)."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_isic", "--images", str(images),
                             "--latency", str(latency)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def time_download(api_url: str, n: int, workers: int) -> float:
    """Seconds to download `n` images into a fresh folder, listing included."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        summary = download_images(folder, n=n, api_url=api_url, workers=workers, progress=False)
        elapsed = time.perf_counter() - start
    if summary.downloaded != n or summary.failed:
        raise SystemExit(f"benchmark run went wrong: {summary}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=300, help="images per run")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every request")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    times: dict[int, list[float]] = {1: [], args.workers: []}
    # One in 20 fake images is private, so ask for enough that n are public.
    with fake_server(images=args.n * 21 // 19 + 1, latency=args.latency) as api_url:
        for r in range(args.rounds):
            order = [1, args.workers] if r % 2 == 0 else [args.workers, 1]
            for workers in order:
                times[workers].append(time_download(api_url, args.n, workers))
                print(f"round {r + 1}: workers={workers:<2} {times[workers][-1]:6.2f} s", flush=True)

    sequential, concurrent = statistics.median(times[1]), statistics.median(times[args.workers])
    speedup = sequential / concurrent
    verdict = "met" if speedup >= TARGET_SPEEDUP else "MISSED"
    print(f"\n{args.n} images, {args.latency * 1000:.0f} ms latency per request, "
          f"median of {args.rounds} rounds:")
    print(f"  one at a time (workers=1): {sequential:6.2f} s  ({args.n / sequential:5.1f} images/s)")
    print(f"  concurrent   (workers={args.workers}): {concurrent:6.2f} s  "
          f"({args.n / concurrent:5.1f} images/s)")
    print(f"  speed-up: {speedup:.1f}x (target >= {TARGET_SPEEDUP:.0f}x: {verdict})")


if __name__ == "__main__":
    main()
