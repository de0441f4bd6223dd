"""FID and KID from a local Inception-v3 state_dict, never downloaded at run time.

Neither torch-fidelity nor torchmetrics is a dependency, so the network is torchvision's
`inception_v3` architecture, loaded with `torch.load(weights_only=True)` from a file the user names:

* The standard FID weights (`pt_inception-2015-12-05-6726825d.pth`, as used by pytorch-fid; 1008
  classes) select the FID protocol: inputs scaled to [-1, 1], and the pooling of the TensorFlow
  graph (average pooling that ignores padding, max pooling in the last block). Only with these
  weights are the numbers comparable to published FIDs (up to image resizing details).
* Any other Inception-v3 state_dict (e.g. torchvision's ImageNet weights, 1000 classes) runs with
  ImageNet normalization; its FID ranks models consistently but is not comparable to papers.

Features are the 2048-d pool3 activations of images resized from their own size straight to
299x299 (bilinear), as pytorch-fid does; never first to the other set's size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UserError

if TYPE_CHECKING:
    import torch

FID_CLASSES = 1008  # the TensorFlow Inception graph behind pt_inception has 1008 outputs
# The weights a user downloads once (pytorch-fid's release asset) and names by option or by this
# environment variable; the toolkit never downloads at run time.
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
WEIGHTS_ENV = "ISIC_GAN_INCEPTION_WEIGHTS"


def _fid_blocks() -> dict[str, type]:
    """torchvision Inception blocks with the pooling of the TensorFlow FID graph."""
    import torch
    import torch.nn.functional as F
    from torchvision.models.inception import InceptionA, InceptionC, InceptionE

    def avg(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    class FIDInceptionA(InceptionA):
        def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return [self.branch1x1(x), b5, b3, self.branch_pool(avg(x))]

    class FIDInceptionC(InceptionC):
        def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            bd = x
            for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                          self.branch7x7dbl_4, self.branch7x7dbl_5):
                bd = layer(bd)
            return [self.branch1x1(x), b7, bd, self.branch_pool(avg(x))]

    class FIDInceptionE(InceptionE):
        pool = staticmethod(avg)

        def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
            return [self.branch1x1(x), b3, bd, self.branch_pool(self.pool(x))]

    class FIDInceptionEMax(FIDInceptionE):
        pool = staticmethod(lambda x: F.max_pool2d(x, kernel_size=3, stride=1, padding=1))

    return {"A": FIDInceptionA, "C": FIDInceptionC, "E": FIDInceptionE, "E_max": FIDInceptionEMax}


def load_inception(weights: str | Path) -> tuple[torch.nn.Module, bool]:
    """The network from a local state_dict file; returns (model, uses the FID protocol)."""
    import torch
    from torchvision.models import inception_v3

    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{weights}: no such file") from None
    except Exception as err:  # torch raises many types for a file that is not a state_dict
        first_line = (str(err).strip().splitlines() or [""])[0][:200]
        kind = type(err).__name__
        raise UserError(f"{weights}: not a loadable state_dict ({kind}: {first_line})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "fc.weight" not in state:
        raise UserError(f"{weights}: not an Inception-v3 state_dict (no fc.weight)")
    classes = int(state["fc.weight"].shape[0])
    aux = any(k.startswith("AuxLogits.") for k in state)
    fid_protocol = classes == FID_CLASSES
    model = inception_v3(weights=None, aux_logits=aux, init_weights=False, num_classes=classes)
    if fid_protocol:
        blocks = _fid_blocks()
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
            old = getattr(model, name)
            in_channels, pool_features = old.branch1x1.conv.in_channels, old.branch_pool.conv.out_channels
            setattr(model, name, blocks["A"](in_channels, pool_features))
        for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            old = getattr(model, name)
            setattr(model, name, blocks["C"](768, old.branch7x7_1.conv.out_channels))
        model.Mixed_7b = blocks["E"](1280)
        model.Mixed_7c = blocks["E_max"](2048)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise UserError(f"{weights}: does not fit torchvision's inception_v3 "
                        f"({str(err).splitlines()[0]})") from None
    model.fc = torch.nn.Identity()
    return model.eval(), fid_protocol


def inception_features(images: np.ndarray | Sequence[np.ndarray], model: torch.nn.Module,
                       fid_protocol: bool, batch_size: int = 32) -> np.ndarray:
    """2048-d pool3 features of uint8 images (N, H, W, C), or a list of (H, W, C) of any sizes; float64.

    Every image goes from its own size straight to 299x299 (bilinear, no antialiasing), then to
    [-1, 1]: what pytorch-fid does (ToTensor, `F.interpolate(..., (299, 299), mode="bilinear",
    align_corners=False)`, 2x - 1). A batch holds consecutive images of one size.
    """
    import torch
    import torch.nn.functional as F

    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for batch in _same_size_batches(images, batch_size):
            x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)
            x = x.float().div(255).expand(-1, 3, -1, -1)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            x = x * 2 - 1 if fid_protocol else (x - mean) / std
            out.append(model(x).double().numpy())
    return np.concatenate(out)


def _same_size_batches(images: np.ndarray | Sequence[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Stacks of at most `batch_size` consecutive images that share one size."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        for s in range(0, len(images), batch_size):
            yield images[s: s + batch_size]
        return
    batch: list[np.ndarray] = []
    for img in images:
        img = img[..., None] if img.ndim == 2 else img
        if batch and (img.shape != batch[0].shape or len(batch) == batch_size):
            yield np.stack(batch)
            batch = []
        batch.append(img)
    if batch:
        yield np.stack(batch)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID: |mu_a - mu_b|^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^(1/2)) of two feature sets (rows).

    With centred, scaled features A and B (S_a = A^T A, S_b = B^T B), the non-zero eigenvalues of
    S_a S_b are the squared singular values of A B^T, so Tr((S_a S_b)^(1/2)) is the nuclear norm of
    A B^T: an SVD of an (n_a, n_b) matrix instead of scipy's `sqrtm` of a 2048 x 2048 product (which
    is slow, see docs/performance.md, and needs regularizing when there are fewer images than
    dimensions). With more images than dimensions, the same trace comes from two symmetric
    eigendecompositions.
    """
    mu_a, mu_b = a.mean(0), b.mean(0)
    fa = (a - mu_a) / np.sqrt(max(len(a) - 1, 1))
    fb = (b - mu_b) / np.sqrt(max(len(b) - 1, 1))
    if min(len(a), len(b)) <= a.shape[1]:
        tr_sqrt = float(np.linalg.svd(fa @ fb.T, compute_uv=False).sum())
    else:
        values, vectors = np.linalg.eigh(fa.T @ fa)
        root_a = (vectors * np.sqrt(np.maximum(values, 0))) @ vectors.T
        middle = root_a @ (fb.T @ fb) @ root_a
        tr_sqrt = float(np.sqrt(np.maximum(np.linalg.eigvalsh(middle), 0)).sum())
    return float(((mu_a - mu_b) ** 2).sum() + (fa**2).sum() + (fb**2).sum() - 2 * tr_sqrt)


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with kernel (x.y / d + 1)^3 over random subsets."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(a), len(b))
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(off - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def fid_kid(real: np.ndarray | Sequence[np.ndarray], fake: np.ndarray | Sequence[np.ndarray],
            weights: str | Path, batch_size: int = 32, seed: int = 0) -> dict[str, Any]:
    """FID and KID of uint8 image sets (arrays, or lists of images of any sizes) with `weights`."""
    model, fid_protocol = load_inception(weights)
    fr = inception_features(real, model, fid_protocol, batch_size)
    ff = inception_features(fake, model, fid_protocol, batch_size)
    kid_mean, kid_std = kernel_inception_distance(fr, ff, seed=seed)
    protocol = ("FID protocol (1008-class pt_inception layout): comparable to published FIDs only with "
                "the standard pt_inception weights" if fid_protocol else
                "torchvision Inception-v3 layout: NOT comparable to published FIDs")
    return {"fid": frechet_distance(fr, ff), "kid_mean": kid_mean, "kid_std": kid_std,
            "weights": str(weights), "protocol": protocol, "real_images": len(real), "fake_images": len(fake)}
