#!/usr/bin/env python3
"""img2dist.py: how similar are these images, and do the fakes look like the reals?

\b
  distance   the 2018 color-palette distance between two images
  embedding  a 2-D map of folders of images (MDS, t-SNE, PCA) with group statistics
  quality    paired measures (PSNR, SSIM, ...), SWD, precision/recall, FID/KID of fakes vs reals
  turing     a "Real or Fake?" page (a visual Turing test) to send to clinicians
  turing-score  score the raters' answers: accuracy, binomial test, Fleiss' kappa, fool rates
  utility    do the fakes help a classifier? train on real, real + fake, fake only; test on reals
"""

from __future__ import annotations

from pathlib import Path

try:
    import click

    from dcgan.analysis.embed import EMBEDDINGS
    from dcgan.analysis.features import FEATURES
    from dcgan.analysis.inception import WEIGHTS_ENV, WEIGHTS_FILE
    from dcgan.analysis.judges import DEFAULT_JUDGES, JUDGES, check_judges
    from dcgan.analysis.quality import DISTRIBUTION_METRICS, PAIRED_METRICS, PR_FEATURES
    from dcgan.analysis.utility import CLASSIFIERS
    from dcgan.cli import comma_list, user_errors
    from dcgan.turing.cli import turing, turing_score
except ModuleNotFoundError as err:  # started by a Python without the set-up: one line, not a traceback
    from dcgan.errors import exit_on_missing_dependency

    exit_on_missing_dependency(err)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# Options shared by the commands that compute color palettes.
centroids_option = click.option("--centroids", type=click.IntRange(min=1), default=5, show_default=True,
                                 help="Colors per image (k of the k-means color quantization).")
sample_option = click.option("--sample-points", type=click.FloatRange(0, 1, min_open=True), default=0.3,
                             show_default=True, help="Fraction of each image's pixels k-means is fitted on.")
seed_option = click.option("--seed", type=int, default=0, show_default=True,
                           help="Random seed (pixel samples, k-means seeding, pairings, projections).")
cache_option = click.option("--cache", "cache", type=click.Path(file_okay=False), default=None,
                            help="Feature cache folder [default: $XDG_CACHE_HOME/isic-gan or "
                                 "~/.cache/isic-gan].")
no_cache_option = click.option("--no-cache", is_flag=True, help="Neither read nor write the feature cache.")


def _cache_dir(cache: str | None, no_cache: bool) -> Path | None:
    from dcgan.analysis.cache import default_cache_dir

    if no_cache:
        return None
    return Path(cache) if cache else default_cache_dir()


@click.group(help=__doc__, context_settings=CONTEXT)
def cli() -> None:
    pass


@cli.command()
@click.argument("src_img", type=click.Path(exists=True, dir_okay=False))
@click.argument("dest_img", type=click.Path(exists=True, dir_okay=False))
@centroids_option
@sample_option
@seed_option
@click.option("--symmetric", is_flag=True, help="Average the distances in both directions.")
@click.option("--method", type=click.Choice(["fast", "2018"]), default="fast", show_default=True,
              help="fast: batched k-means (this tool's); 2018: scikit-learn's KMeans exactly as the 2018 "
                   "tool ran it (reproduces its numbers on the same scikit-learn version).")
@cache_option
@no_cache_option
@user_errors
def distance(src_img: str, dest_img: str, centroids: int, sample_points: float, seed: int, symmetric: bool,
             method: str, cache: str | None, no_cache: bool) -> None:
    """Print the distance from SRC_IMG to DEST_IMG.

    Each image is quantized to --centroids colors (k-means on RGB in [0, 1], fitted on a random
    --sample-points fraction of its pixels); the distance is the sum, over the centroids of SRC_IMG,
    of the Euclidean distance to the nearest centroid of DEST_IMG. 0 for identical images.
    --method 2018 computes it exactly as the 2018 tool did (scikit-learn; slower).

    \b
    Examples:
      python img2dist.py distance a.jpg b.jpg --centroids 5 --symmetric
      python img2dist.py distance a.jpg b.jpg --method 2018
    """
    from dcgan.analysis.cache import FeatureCache
    from dcgan.analysis.color import cache_namespace, image_distance

    folder = _cache_dir(cache, no_cache)
    store = FeatureCache(folder, cache_namespace(centroids, sample_points, seed, method))
    d = image_distance(Path(src_img), Path(dest_img), centroids, sample_points, seed, symmetric, store,
                       method)
    click.echo(f"{d:.6f}")


@cli.command()
@click.argument("output_image", type=click.Path(dir_okay=False))
@click.argument("image_path", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--method", type=click.Choice(list(EMBEDDINGS)), default="mds", show_default=True,
              help="mds and tsne embed the distances; pca the feature vectors.")
@click.option("--features", type=click.Choice(list(FEATURES)), default="color", show_default=True,
              help="color: k-means palettes and the 2018 distance; color-2018: the same computed exactly as "
                   "the 2018 tool did (scikit-learn, slow); pixels: downscaled images.")
@centroids_option
@sample_option
@click.option("--pixel-size", type=click.IntRange(min=2), default=32, show_default=True,
              help="Side of the downscaled images for --features pixels.")
@click.option("--limits", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Symmetric axis limits: both axes span [-L, L].")
@click.option("--group/--no-group", default=None,
              help="Each IMAGE_PATH is a group with its own color and statistics [default: --group when "
                   "several are given]; --no-group pools them into one.")
@click.option("--group-labels", is_flag=True,
              help="Name each group at its center (marked +) instead of labelling points; show a legend.")
@click.option("--skip-labels", is_flag=True, help="No point labels.")
@click.option("--legend", is_flag=True, help="Show a legend of the groups.")
@click.option("--real", type=click.Path(exists=True), default=None,
              help="The IMAGE_PATH holding real images: adds fakes-vs-reals statistics (implies --group).")
@click.option("--mds-iterations", type=click.IntRange(min=0), default=None,
              help="SMACOF iterations refining classical MDS; stops early once converged; 0 = classical "
                   "MDS only [default: 100, fewer above ~4,500 images: O(n^2) each].")
@seed_option
@cache_option
@no_cache_option
@click.option("--quiet", "-q", is_flag=True, help="Print no statistics table.")
@user_errors
def embedding(output_image: str, image_path: tuple[str, ...], method: str, features: str, centroids: int,
              sample_points: float, pixel_size: int, limits: float | None, group: bool | None,
              group_labels: bool, skip_labels: bool, legend: bool, real: str | None,
              mds_iterations: int | None, seed: int, cache: str | None, no_cache: bool, quiet: bool) -> None:
    """Embed the images of IMAGE_PATH... in 2-D and plot them to OUTPUT_IMAGE (png, jpg, pdf, svg).

    IMAGE_PATH items are image files or folders (searched recursively). Beside the plot go
    OUTPUT.csv (path, group, x, y), OUTPUT.npy (the distance matrix) and OUTPUT.json (group
    statistics: spreads, mean distances between groups, silhouette; with --real, nearest-real
    distances, likely copies and a 1-NN two-sample test). The statistics are also printed.

    \b
    Examples:
      python img2dist.py embedding map.png training_data
      python img2dist.py embedding map.png reals/ fakes-a/ fakes-b/ --group-labels --real reals/
      python img2dist.py embedding map.pdf reals/ fakes/ --group --legend --method tsne --features pixels
    """
    from dcgan.analysis.embed import EmbedOptions
    from dcgan.analysis.features import FeatureOptions
    from dcgan.analysis.report import EmbeddingOptions, embed_images

    opts = EmbeddingOptions(
        features=features, method=method,
        feature=FeatureOptions(centroids=centroids, sample_points=sample_points, seed=seed,
                               pixel_size=pixel_size, cache_dir=_cache_dir(cache, no_cache)),
        embed=EmbedOptions(seed=seed, mds_iterations=mds_iterations),
        group=group, group_labels=group_labels, skip_labels=skip_labels, legend=legend, limits=limits,
        real=real)
    result = embed_images(output_image, image_path, opts)
    for message in result.skipped:
        click.echo(f"skipped {message}", err=True)
    if not quiet:
        click.echo(result.table)
    click.echo(f"{len(result.features.paths)} images -> {result.outputs['plot']} "
               f"(+ {result.outputs['csv'].name}, {result.outputs['distances'].name}, "
               f"{result.outputs['json'].name})")


@cli.command()
@click.argument("real_path", type=click.Path(exists=True))
@click.argument("fake_path", type=click.Path(exists=True))
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Also write the report as JSON to this file.")
@click.option("--metrics", default="",
              help=f"Comma-separated subset of: {', '.join([*PAIRED_METRICS, *DISTRIBUTION_METRICS])} "
                   "[default: all].")
@click.option("--pr-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="k of the k-NN precision/recall.")
@click.option("--pr-feature", type=click.Choice(list(PR_FEATURES)), default="pixels",
              show_default=True, help="Feature for precision/recall (no download needed).")
@click.option("--inception-weights", type=click.Path(exists=True, dir_okay=False), default=None,
              envvar=WEIGHTS_ENV, show_envvar=True,
              help=f"Inception-v3 weights for FID/KID: pytorch-fid's {WEIGHTS_FILE} (from its GitHub "
                   "release; docs/usage.md says where) for FIDs comparable to papers. Without, FID/KID "
                   "are skipped.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--c2st", is_flag=True,
              help="Also run the classifier two-sample test: a panel of small classifiers (judges), each "
                   "trained from scratch to tell fakes from reals (k-fold held-out accuracy; 0.5 = "
                   "indistinguishable), each also on two halves of the reals; the strongest judge is the "
                   "verdict. 398 vs 398 at 64x64 on a shared 2-core CPU: about 7 min for the panel "
                   "(full-res and residual about 3 min each with their baselines, the others under 1 "
                   "min; docs/performance.md).")
@click.option("--c2st-judges", default=",".join(DEFAULT_JUDGES), show_default=True,
              help=f"Comma-separated judges of the panel, from: {', '.join(JUDGES)} (docs/quality.md says "
                   "what each is there to catch).")
@click.option("--c2st-folds", type=click.IntRange(min=2), default=5, show_default=True,
              help="Cross-validation folds of the two-sample test.")
@click.option("--c2st-epochs", type=click.IntRange(min=1), default=12, show_default=True,
              help="Training epochs of each fold's classifier.")
@click.option("--c2st-bands", is_flag=True,
              help="With --c2st, run the test twice more on a coarse view (Gaussian low-pass: shape and "
                   "colour) and a fine view (the rest: texture) of both sets: which scale gives the "
                   "fakes away.")
@click.option("--figures", type=click.Path(file_okay=False), default=None,
              help="Folder for spectrum.png (power spectra) and, with --c2st, c2st_surest_fakes.png.")
@seed_option
@click.option("--cache", "cache", type=click.Path(file_okay=False), default=None,
              help="Cache folder: with --c2st, each judge's reals-vs-reals baseline is kept there and "
                   "reused by the next report on the same reals and settings (a third of the panel's "
                   "time) [default: $XDG_CACHE_HOME/isic-gan or ~/.cache/isic-gan].")
@no_cache_option
@user_errors
def quality(real_path: str, fake_path: str, json_out: str | None, metrics: str, pr_k: int, pr_feature: str,
            inception_weights: str | None, batch_size: int, c2st: bool, c2st_judges: str, c2st_folds: int,
            c2st_epochs: int, c2st_bands: bool, figures: str | None, seed: int, cache: str | None,
            no_cache: bool) -> None:
    """Measure how much the images in FAKE_PATH look like those in REAL_PATH.

    Paired measures (piqa: PSNR, SSIM, MS-GMSD, MDSI, HaarPSI) of every fake against a random real;
    the sliced Wasserstein distance of Laplacian-pyramid patches; k-NN precision and recall; the
    top-band ratio of the power spectra (up-sampling artifacts); FID and KID when --inception-weights
    (or $ISIC_GAN_INCEPTION_WEIGHTS) names a local file (nothing is downloaded); with --c2st, a
    classifier two-sample test. FID/KID
    take every image from its own size straight to 299x299, as pytorch-fid does; the pixel measures
    need one size, so both folders go down to the smaller of their sizes (never up), and the report
    says which.

    \b
    Example:
      python img2dist.py quality training_data generated/ --json quality.json
      python img2dist.py quality reals/ fakes/ --c2st --figures quality-figures/
      python img2dist.py quality reals/ fakes/ --c2st --c2st-bands
    """
    from dcgan.analysis.c2st import C2STOptions
    from dcgan.analysis.quality import QualityOptions, format_quality, quality_report
    from dcgan.errors import UserError

    if c2st_bands and not c2st:
        raise UserError("--c2st-bands splits the classifier two-sample test: add --c2st")
    judges = check_judges(tuple(comma_list(c2st_judges)))
    from dcgan.files import write_json

    report = quality_report(real_path, fake_path, QualityOptions(
        metrics=comma_list(metrics), seed=seed, pr_k=pr_k, pr_feature=pr_feature,
        inception_weights=inception_weights, batch_size=batch_size, figures=figures,
        c2st=(C2STOptions(folds=c2st_folds, epochs=c2st_epochs, seed=seed, bands=c2st_bands, judges=judges,
                          cache_dir=None if (folder := _cache_dir(cache, no_cache)) is None else str(folder))
              if c2st else None)))
    for side in ("real", "fake"):
        for message in report[side]["skipped"]:
            click.echo(f"skipped {message}", err=True)
    click.echo(format_quality(report))
    if json_out:
        write_json(json_out, report)
        click.echo(f"-> {json_out}")


@cli.command()
@click.argument("train_real", type=click.Path(exists=True, file_okay=False))
@click.argument("synthetic", type=click.Path(exists=True, file_okay=False))
@click.argument("test_real", type=click.Path(exists=True, file_okay=False))
@click.option("--ood", type=click.Path(exists=True, file_okay=False), default=None,
              help="A second test folder, out of distribution (e.g. another collection), reported apart.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default="utility.json",
              show_default=True, help="The report.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="The intervals as a picture [default: the JSON's name with .png].")
@click.option("--classifier", type=click.Choice(list(CLASSIFIERS)), default="cnn", show_default=True,
              help="cnn: the two-sample test's small CNN (3 convs, one logit per class); resnet18: "
                   "torchvision's (slower). Random init.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A local state_dict to fine-tune from instead (layers whose names and shapes match).")
@click.option("--shares", default="0.25,0.5,1", show_default=True,
              help="Fakes added to the reals, as a fraction of each class's reals (comma-separated).")
@click.option("--no-balance", is_flag=True,
              help="Leave out the regime that adds fakes of the rarer classes up to the largest's count.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs per regime (init, batch order, flips, which fakes); their mean is the score.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True,
              help="Epochs of the largest training set; every regime trains for that many steps.")
@click.option("--batch-size", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--positive", default=None,
              help="Two classes: the class scored (AUC, sensitivity) [default: the rarer in TRAIN_REAL].")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Sensitivity and specificity call an image positive at this probability or above.")
@click.option("--bootstrap", type=click.IntRange(min=100), default=1000, show_default=True,
              help="Bootstrap replicates (test images and seeds resampled) of the 95% intervals.")
@click.option("--size", type=click.IntRange(min=8), default=None,
              help="Side the images are cropped and resized to [default: that of TRAIN_REAL's first image].")
@seed_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@user_errors
def utility(train_real: str, synthetic: str, test_real: str, ood: str | None, json_out: str,
            plot: str | None, classifier: str, weights: str | None, shares: str, no_balance: bool, seeds: int,
            epochs: int, batch_size: int, positive: str | None, threshold: float, bootstrap: int,
            size: int | None, seed: int, quiet: bool) -> None:
    """Do the fakes help a classifier? Trained on TRAIN_REAL, on TRAIN_REAL + SYNTHETIC, on SYNTHETIC.

    Each folder holds one subfolder per class (benign/, malignant/, as `transform --recursive` and
    `generate --class` write them). The same classifier, trained from scratch with random flips for
    the same number of steps, runs under each regime: real only; real + fakes at each of --shares;
    real + fakes of the rarer classes only, up to the largest's count; fakes only (all of
    SYNTHETIC). Each is scored on TEST_REAL (and --ood): ROC AUC with sensitivity and specificity at
    --threshold for two classes, balanced accuracy for more; the mean over --seeds, with a bootstrap
    interval and the difference to real only (paired on the same test images) with its interval.
    Refused: a class missing from a folder, fewer than 5 images of a class, a test image that is
    also in TRAIN_REAL or SYNTHETIC (same pixels).

    Time: 65 s of CPU for 400 + 400 images of 64 px, all regimes, 3 seeds (one thread of a
    2-core AMD EPYC, fp32; docs/performance.md). On a busy machine run it with OMP_NUM_THREADS=1.

    \b
    Examples:
      python img2dist.py utility data/train fakes/ data/test
      python img2dist.py utility data/train fakes/ data/test --ood other/ --shares 0.5,1,2 --seeds 5
      python img2dist.py utility data/train fakes/ data/test --classifier resnet18 --json r18.json
    """
    from dcgan.analysis.plot import save_figure
    from dcgan.analysis.utility import UtilityOptions, format_utility, utility_plot, utility_report
    from dcgan.errors import UserError
    from dcgan.files import write_json

    try:
        share_values = tuple(float(v) for v in comma_list(shares))
    except ValueError:
        raise UserError(f"--shares {shares}: expected numbers separated by commas, e.g. 0.25,0.5,1") from None
    if any(v <= 0 for v in share_values):
        raise UserError(f"--shares {shares}: each share must be above 0")
    report = utility_report(train_real, synthetic, test_real, ood, UtilityOptions(
        classifier=classifier, weights=weights, epochs=epochs, batch_size=batch_size, seeds=seeds, seed=seed,
        shares=share_values, balance=not no_balance, positive=positive, threshold=threshold,
        bootstrap=bootstrap, size=size, progress=not quiet))
    for folder in report["folders"].values():
        for message in folder["skipped"]:
            click.echo(f"skipped {message}", err=True)
    plot_path = Path(plot) if plot else Path(json_out).with_suffix(".png")
    save_figure(utility_plot(report), plot_path)
    report["plot"] = str(plot_path)
    write_json(json_out, report)
    click.echo(format_utility(report))
    click.echo(f"-> {json_out}, {plot_path} ({report['seconds']:.0f} s)")


cli.add_command(turing)
cli.add_command(turing_score)

if __name__ == "__main__":
    cli()
