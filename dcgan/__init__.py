"""ISIC GAN toolkit: download, prepare, synthesize and compare dermoscopy images.

The three command-line tools (`isic_dataset.py`, `gancontrol.py`, `img2dist.py`) are thin wrappers
around this package, so everything they do is also usable from Python.
"""

__version__ = "0.1.0"
