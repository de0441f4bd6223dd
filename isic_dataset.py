#!/usr/bin/env python3
"""isic_dataset.py: get dermoscopy images from the ISIC Archive and make them ready for a GAN.

\b
  download   images and metadata from the ISIC Archive (API v2)
  transform  center-crop and resize a folder of images
  augment    enlarge a folder with random rotations, flips and zooms (Augmentor)
"""

from __future__ import annotations

try:
    import click

    from dcgan.cli import comma_list, user_errors
except ModuleNotFoundError as err:  # started by a Python without the set-up: one line, not a traceback
    from dcgan.errors import exit_on_missing_dependency

    exit_on_missing_dependency(err)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(help=__doc__, context_settings=CONTEXT)
def cli() -> None:
    pass


@cli.command()
@click.argument("output_path", type=click.Path(file_okay=False))
@click.option("-n", "--num-images", "n", type=click.IntRange(min=0), default=100, show_default=True,
              help="How many images matching the filters to download.")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True,
              help="Skip the first K matching images.")
@click.option("--query", default=None,
              help='Search query in the ISIC DSL, passed through, e.g. \'diagnosis_3:"Melanoma Invasive"\'.')
@click.option("--benign-malignant", type=click.Choice(["benign", "malignant", "indeterminate"]),
              default=None, help="Filter on diagnosis_1 (Benign, Malignant or Indeterminate).")
@click.option("--collection", default=None, help="Comma-separated collection ids, e.g. 70,249 (any of them).")
@click.option("--thumbnails", is_flag=True, help="Fetch the 256-px thumbnails instead of the full images.")
@click.option("--api-url", default="https://api.isic-archive.com/api/v2/", show_default=True,
              help="Base URL of the ISIC Archive API v2.")
@click.option("--workers", type=click.IntRange(min=1), default=8, show_default=True,
              help="Concurrent downloads.")
@user_errors
def download(output_path: str, n: int, offset: int, query: str | None, benign_malignant: str | None,
             collection: str | None, thumbnails: bool, api_url: str, workers: int) -> None:
    """Download N images (and metadata.csv, attribution.txt, licenses/) into OUTPUT_PATH.

    An image that fails is named, the others are all written; the exit status is then 1.

    \b
    A re-run fetches nothing for the files that its ledger,
    OUTPUT_PATH/.download-state.json, records as complete (a file
    without a record is adopted once it decodes), and merges metadata.csv.

    \b
    Example:
      python isic_dataset.py download ./orig -n 1000 --benign-malignant malignant
    """
    from dcgan.data.isic import download_images

    summary = download_images(
        output_path, n=n, offset=offset, query=query, benign_malignant=benign_malignant,
        collections=comma_list(collection), thumbnails=thumbnails, api_url=api_url, workers=workers)
    click.echo(f"found {summary.found}, downloaded {summary.downloaded}, "
               f"skipped {summary.skipped}, failed {len(summary.failed)}")
    if summary.failed:
        click.echo("failed: " + " ".join(summary.failed), err=True)
        raise SystemExit(1)


@cli.command()
@click.argument("input_path", type=click.Path(exists=True, file_okay=False))
@click.argument("output_path", type=click.Path(file_okay=False))
@click.argument("x", type=click.IntRange(min=1))
@click.argument("y", type=click.IntRange(min=1))
@click.option("-r", "--recursive", is_flag=True, help="Mirror subfolders (e.g. benign/, malignant/).")
@click.option("--format", "fmt", type=click.Choice(["keep", "jpg", "png"]), default="keep", show_default=True,
              help="Output format.")
@click.option("--grayscale", is_flag=True, help="Keep one channel (e.g. MRI slices).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes to use [default: all cores].")
@user_errors
def transform(input_path: str, output_path: str, x: int, y: int, recursive: bool, fmt: str,
              grayscale: bool, workers: int | None) -> None:
    """Center-crop every image in INPUT_PATH to the largest X:Y box and resize it to X x Y.

    An unreadable file is named and skipped, the others are all written; the exit status is then 1.

    \b
    Example:
      python isic_dataset.py transform ./orig ./data 160 160
    """
    from dcgan.data.transform import transform_folder

    summary = transform_folder(input_path, output_path, x, y, recursive=recursive,
                               fmt=None if fmt == "keep" else fmt, grayscale=grayscale,
                               workers=workers)
    for message in summary.skipped:
        click.echo(f"skipped {message}", err=True)
    click.echo(f"transformed {summary.written}, skipped {len(summary.skipped)} -> {output_path}")
    if summary.skipped:  # as `download` with a failed image: the rest is written, the status says not all
        raise SystemExit(1)


@cli.command()
@click.argument("input_path", type=click.Path(exists=True, file_okay=False))
@click.argument("n", type=click.IntRange(min=1))
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Output folder [default: INPUT_PATH/output, as Augmentor does].")
@click.option("--seed", type=int, default=None, help="Random seed for a reproducible result.")
@click.option("--rotate", type=click.FloatRange(min=0, max=25), default=5.0, show_default=True,
              help="Maximum rotation in degrees, left or right (0 = off).")
@click.option("--rotate-prob", type=click.FloatRange(0, 1), default=1.0, show_default=True)
@click.option("--flip-lr", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Probability of a left-right flip (0 = off).")
@click.option("--flip-tb", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Probability of a top-bottom flip (0 = off).")
@click.option("--zoom-prob", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Probability of a random zoom (0 = off).")
@click.option("--zoom-area", type=click.FloatRange(0.1, 1), default=0.8, show_default=True,
              help="Fraction of the image area kept by a zoom.")
@user_errors
def augment(input_path: str, n: int, output: str | None, seed: int | None, rotate: float,
            rotate_prob: float, flip_lr: float, flip_tb: float, zoom_prob: float,
            zoom_area: float) -> None:
    """Write N randomly augmented images drawn from INPUT_PATH.

    \b
    Example:
      python isic_dataset.py augment ./data 10000 --seed 1
    """
    from dcgan.data.augment import AugmentOptions, augment_folder

    opts = AugmentOptions(rotate=rotate, rotate_prob=rotate_prob, flip_lr=flip_lr, flip_tb=flip_tb,
                          zoom_prob=zoom_prob, zoom_area=zoom_area)
    out = augment_folder(input_path, n, output=output, seed=seed, options=opts)
    click.echo(f"augmented {n} images -> {out}")


if __name__ == "__main__":
    cli()
