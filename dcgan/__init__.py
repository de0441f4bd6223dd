"""ISIC GAN toolkit: download, prepare, synthesize and compare dermoscopy images.

The three command-line tools (`isic_dataset.py`, `gancontrol.py`, `img2dist.py`) are thin wrappers
around this package, so everything they do is also usable from Python. It keeps the name `dcgan`
(the design asks for it), though it also holds SNGAN, an HTTP client and a web page.

The map, lowest layer first; each entry says what lives there and (in brackets) what it may import
from this package. Imports point down only: nothing imports a module listed after it.

  errors.py     UserError, the one exception the CLIs print as one line  [nothing]
  names.py      registry names for `--help` without importing torch  [nothing]
  resources.py  the machine's usable cores and the memory block size, defined once  [nothing]
  files.py      atomic writes and copies, folder locks, disk-full messages  [errors]
  cli.py        plumbing shared by the three click CLIs: one-line errors  [errors, files]
  images.py     finding, decoding, converting and saving images; the one folder reader  [errors, files]
  compression.py  how image files are compressed (JPEG tables, colour subsampling), so that fakes
                are stored like the reals  [errors, images]
  losses.py     registries of GAN losses and gradient penalties  [nothing]
  diffaug.py    registry of DiffAugment policies  [errors]
  models.py     Generator / Discriminator for any base*2^k size, SN, conditional BN  [errors, names]
  fastgan.py    the few-shot G and D (FastGAN's ideas) for 128 px and up  [bands, models]
  options.py    TrainOptions (what the user asked): defaults, presets, YAML, validation
                [errors, files, losses, diffaug, models]
  spec.py       RunSpec: a run's settings, settled once the images are known
                [errors, files, compression, options]
  architectures.py  the --arch registry: name -> G and D builders  [fastgan, models, spec]
  data/         the ISIC Archive client, transform, augment  [errors, files, images]
  analysis/     distances, embeddings, plots and quality measures for img2dist
                [errors, files, images, compression]
  training/     dataset, trainer, loop, checkpoints, run log, DDP  [all of the above]
  generate.py   seeds -> latents -> images, grids, latent walks from a saved run  [all of the above]
  turing/       the "Real or Fake?" page and its scoring  [errors, files, images, cli]

analysis/ and turing/ import torch, matplotlib, scipy, scikit-learn and piqa only inside the
functions that use them, so `--help` and the img2dist commands start fast.
"""

__version__ = "0.1.0"
