"""The `turing` and `turing-score` click commands, added to the `img2dist.py` group.

Thin on purpose: options are parsed here, the work is done by `site.build_site` and
`score.score_answers`, imported inside the commands so that `img2dist.py --help` stays fast.
"""

from __future__ import annotations

import click

from ..cli import user_errors


@click.command("turing")
@click.argument("real_path", type=click.Path(exists=True))
@click.argument("fake_path", type=click.Path(exists=True))
@click.argument("output_dir", type=click.Path(file_okay=False))
@click.option("-n", "--num-images", "n", type=click.IntRange(min=1), default=40, show_default=True,
              help="How many images the rater sees, reals and fakes together.")
@click.option("--seed", type=int, default=None,
              help="Random seed: the same seed and folders give the same images, names and order "
                   "[default: random, written to key.json].")
@click.option("--fake-share", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Share of the images that are fakes.")
@click.option("--no-score-in-page", is_flag=True,
              help="Leave the answers out of the page entirely: raters see no score at the end.")
@click.option("--overwrite", is_flag=True,
              help="Replace a site (and its key) already in OUTPUT_DIR: answers given on it can then "
                   "no longer be scored.")
@user_errors
def turing(real_path: str, fake_path: str, output_dir: str, n: int, seed: int | None, fake_share: float,
           no_score_in_page: bool, overwrite: bool) -> None:
    """Build a "Real or Fake?" page: a visual Turing test of the images in FAKE_PATH for clinicians.

    Draws N images from REAL_PATH and FAKE_PATH, re-encodes them all as PNGs of one size (the
    fakes' size; an image that would need more than 2x upscaling to it is refused) under random
    names, padded to one file size, and writes to OUTPUT_DIR:

    \b
      site/                      the page (index.html, app.js, style.css, items.js, images/):
                                 send it to raters; it works from file://, no server, no network
      real-or-fake-<site id>.zip the same folder zipped
      key.json                   which image is which: KEEP IT, never send it
      README.txt                 these instructions

    Raters open index.html, give their name, answer every image (R / F or the arrow keys,
    confidence 1-5, Backspace to go back; a reload loses nothing) and download an answers file.
    The page shows them a score at the end from answers masked inside it (a rater reading the
    page source could find them); --no-score-in-page leaves them out. Score with turing-score.

    \b
    Example:
      python img2dist.py turing training_data generated/ study/ -n 40 --seed 1
    """
    from .site import SiteOptions, build_site

    summary = build_site(real_path, fake_path, output_dir, SiteOptions(
        n=n, seed=seed, fake_share=fake_share, score_in_page=not no_score_in_page, overwrite=overwrite))
    for message in summary.skipped:
        click.echo(f"skipped {message}", err=True)
    w, h = summary.size
    click.echo(f"site {summary.site_id}: {summary.n_real} real + {summary.n_fake} fake images at {w}x{h} "
               f"({summary.resized} resized), seed {summary.seed}")
    click.echo(f"send:  {summary.site_dir}/ or {summary.zip_path}")
    click.echo(f"keep:  {summary.key_path} (never send it)")
    click.echo(f"score: python img2dist.py turing-score {summary.output_dir} ANSWERS.json...")


@click.command("turing-score")
@click.argument("output_dir", type=click.Path(exists=True))
@click.argument("answers", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--report-dir", type=click.Path(file_okay=False), default=None,
              help="Where score.json and convincing_fakes.png go [default: OUTPUT_DIR].")
@click.option("--top", type=click.IntRange(min=1), default=16, show_default=True,
              help="How many of the most convincing fakes the grid shows.")
@user_errors
def turing_score(output_dir: str, answers: tuple[str, ...], report_dir: str | None, top: int) -> None:
    """Score the ANSWERS files of raters against OUTPUT_DIR/key.json (written by turing).

    Per rater: accuracy, sensitivity and specificity for detecting fakes, an exact two-sided
    binomial test against chance (0.5), mean confidence when right and when wrong. Across raters:
    pooled accuracy, Fleiss' kappa, and per image the fool rate (the share of raters it fooled).
    Writes score.json and convincing_fakes.png (the fakes most often called real; only those
    that fooled at least one rater, and no picture when none did). Answers from
    another site, or naming images the key does not know, are refused.

    \b
    Example:
      python img2dist.py turing-score study/ answers/*.json
    """
    from .score import format_report, score_answers

    result = score_answers(output_dir, answers, report_dir=report_dir, top=top)
    click.echo(format_report(result.report))
    for rater in result.report["raters"]:
        if rater["answered"] < rater["images"]:
            click.echo(f"note: {rater['rater']} answered {rater['answered']} of {rater['images']} images",
                       err=True)
    if result.grid_note:
        click.echo(f"note: {result.grid_note}", err=True)
    outputs = [str(result.json_path)] + ([str(result.grid_path)] if result.grid_path else [])
    click.echo("-> " + ", ".join(outputs))
