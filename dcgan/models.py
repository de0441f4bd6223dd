"""DCGAN generator and discriminator for any square size base * 2**k (base 4 or 5).

That covers 32, 64, 128, 256, 512 (base 4) and 40, 80, 160, 320 (base 5; 160 px was the 2018
tool's size). The generator starts from a base x base map and doubles the size k times; the
discriminator mirrors it. Widths double towards the small maps, capped at 8x the base width, as in
the DCGAN paper's 64 px network (which this reproduces exactly at 64 px, 64 channels, with the
default `upsample="transpose"`; `"resize"` swaps its transposed convs for resize + 3x3 conv).

With `num_classes > 0` both become class-conditional: the generator's BatchNorms take a per-class
scale and shift (conditional BatchNorm), and the discriminator adds the inner product of a class
embedding with its last features (the projection discriminator of Miyato & Koyama 2018).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from .bands import fine
from .errors import UserError
from .names import RGB_LAYER_NAMES

MAX_WIDTH_FACTOR = 8


# The smallest image each architecture takes (default 16): the few-shot D rebuilds a quarter of its
# 4x-smaller map, which needs 3 doublings above the base map.
SMALLEST_SIZE = {"fastgan": 32}


def size_plan(resolution: int, what: str = "resolution", arch: str = "dcgan") -> tuple[int, int]:
    """Return (base, k) with base * 2**k == resolution, base in (4, 5), k >= 2 and the resolution at
    least `arch`'s smallest; else a `UserError` that begins with `what` (the option, or the folder
    whose images have that size)."""
    smallest = SMALLEST_SIZE.get(arch, 16)
    for base in (4, 5):
        k, size = 0, base
        while size < resolution:
            size, k = size * 2, k + 1
        if size == resolution and k >= 2 and resolution >= smallest:
            return base, k
    fix = "" if what.startswith("--") else "; use --resolution or isic_dataset.py transform"
    for_arch = f" for --arch {arch}" if smallest != 16 else ""
    raise UserError(f"{what} {resolution}: must be 4 or 5 times a power of two, at least {smallest}"
                    f"{for_arch} (e.g. 32, 64, 128, 160, 256, 512){fix}")


def _widths(resolution: int, width: int) -> list[int]:
    """Channel widths from the smallest feature map to the largest hidden one."""
    _, k = size_plan(resolution)
    return [width * min(2 ** i, MAX_WIDTH_FACTOR) for i in range(k - 1, -1, -1)]


def init_weights(module: nn.Module) -> None:
    """The DCGAN paper's initialisation: conv weights N(0, 0.02), BatchNorm gamma N(1, 0.02).

    Spectral-norm layers are left at PyTorch's default (Kaiming-uniform) init on purpose: under
    spectral norm a weight's scale no longer changes the output, only how far each Adam step turns
    it, and N(0, 0.02) made those steps much larger relative to the weight: a class-conditional SN
    discriminator so initialised lost its class separation (tests/test_small_data.py; figures in
    docs/quality.md), while SNGAN and BigGAN use Glorot or orthogonal inits, not N(0, 0.02).
    """
    if parametrize.is_parametrized(module, "weight"):
        return
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d) and module.affine:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, ConditionalBatchNorm2d):  # after its embeddings (apply visits children first)
        module.reset_parameters()


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose scale and shift are looked up per class (starting at 1 and 0)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gamma = nn.Embedding(num_classes, channels)
        self.beta = nn.Embedding(num_classes, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Per-class scales start near 1 and shifts at 0, so every class starts as plain BatchNorm."""
        nn.init.normal_(self.gamma.weight, 1.0, 0.02)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gamma(y)[:, :, None, None] + self.beta(y)[:, :, None, None]


def _transpose_up(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)]


class NearestUpConv2d(nn.Conv2d):
    """Nearest-neighbour x2 upsampling, then this 3x3 conv (padding 1), done as one transposed conv.

    After a nearest x2, each output pixel's 3x3 window covers only a 2x2 block of input pixels, so
    the pair is a 4x4 stride-2 transposed conv whose kernel sums rows and columns of the 3x3 one:
    the same function (up to float rounding) with 16 instead of 36 multiply-adds per input pixel
    and channel pair. The parameter stays the 3x3 kernel (same init, checkpoints, gradients).
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def fold(w: torch.Tensor, dim: int) -> torch.Tensor:  # taps seen by even, odd output pixels
            w0, w1, w2 = w.unbind(dim)
            return torch.stack([w2, w1 + w2, w0 + w1, w0], dim)

        kernel = fold(fold(self.weight, 2), 3).transpose(0, 1)  # (c_in, c_out, 4, 4)
        return nn.functional.conv_transpose2d(x, kernel, stride=2, padding=1)


def _resize_up(c_in: int, c_out: int) -> list[nn.Module]:
    # Identity holds the old Upsample's place, so the layer indices (checkpoint keys) are unchanged.
    return [nn.Identity(), NearestUpConv2d(c_in, c_out)]


def _blur_up(c_in: int, c_out: int) -> list[nn.Module]:
    # Bilinear x2 is zero insertion followed by the [1, 3, 3, 1] low-pass filter of StyleGAN2's
    # upfirdn2d (edges clamped instead of zero-padded): it removes the copies of the spectrum that
    # nearest-neighbour x2 leaves at the highest frequencies, a candidate source of periodic texture.
    return [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)]


# G's output layer: "up" = the last upsampling makes the RGB image (the DCGAN paper); "conv" = it
# keeps half the channels and a 3x3 conv at full size makes RGB. Names only (no functions), so the
# one list is the one `--help` shows.
RGB_LAYERS = RGB_LAYER_NAMES

# How the generator doubles its feature maps (name -> layers for c_in -> c_out channels).
UPSAMPLING = {"transpose": _transpose_up, "resize": _resize_up, "blur": _blur_up}


class LowPass(nn.Module):
    """The [1, 3, 3, 1] binomial low-pass of StyleGAN2's upfirdn2d, per channel, size kept.

    Before a stride-2 conv it removes what that conv would alias: a strided conv samples every other
    pixel, so a 2-pixel pattern in G's images reaches D unattenuated and D's gradient (a transposed
    conv, i.e. parity-dependent) paints the same pattern back into G (Zhang 2019, "Making
    convolutional networks shift-invariant again"). Edges are replicated, as bilinear resizing does.
    """

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        self.register_buffer("kernel", (taps[:, None] * taps[None, :] / 64)[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        x = nn.functional.pad(x, (2, 1, 2, 1), mode="replicate")
        return nn.functional.conv2d(x, self.kernel.to(x.dtype).expand(c, 1, 4, 4), groups=c)


def _stride_down(conv: nn.Module) -> list[nn.Module]:
    return [conv]


def _blur_down(conv: nn.Module) -> list[nn.Module]:
    return [LowPass(), conv]


# How the discriminator halves its feature maps (name -> layers around its 4x4 stride-2 conv).
DOWNSAMPLING = {"stride": _stride_down, "blur": _blur_down}


HAIRS_PER_IMAGE = 2.0  # strokes per image on average (a Poisson-like count: about 1 image in 7 has none)
MAX_HAIRS = 8


@torch.no_grad()
def hair_strokes(noise: torch.Tensor, size: int) -> torch.Tensor:
    """Thin straight strokes drawn from Gaussian noise maps: (N, size * size) -> (N, 1, size, size).

    A stroke is centred on each pixel whose noise exceeds the level that `HAIRS_PER_IMAGE` pixels of a
    map exceed on average (at most `MAX_HAIRS`); its angle and its length (10-60% of the side) come from
    the noise of the next pixel and of the pixel below, so the map is a function of the latent and a
    seed still fixes the image. Its profile is a Gaussian of 0.5 px at 64 px, in proportion to the size
    (the same hairs are wider in a larger copy of a photo). Hand-written: no library draws
    antialiased segments batched on tensors.
    """
    n = noise.float().reshape(noise.shape[0], size * size)
    level = statistics.NormalDist().inv_cdf(1 - HAIRS_PER_IMAGE / (size * size))
    top, idx = n.topk(min(MAX_HAIRS, size * size), dim=1)
    on = (top > level).float()

    def uniform(v: torch.Tensor) -> torch.Tensor:  # the normal CDF: N(0, 1) -> U(0, 1)
        return 0.5 * (1 + torch.erf(v / math.sqrt(2)))

    angle = math.pi * uniform(n.gather(1, (idx + 1) % (size * size)))
    half_length = size * (0.05 + 0.25 * uniform(n.gather(1, (idx + size) % (size * size))))
    coords = torch.arange(size, dtype=torch.float32, device=n.device)
    dy = coords.view(1, 1, size, 1) - (idx // size).float()[..., None, None]
    dx = coords.view(1, 1, 1, size) - (idx % size).float()[..., None, None]
    cos, sin = angle.cos()[..., None, None], angle.sin()[..., None, None]
    beyond = ((dx * cos + dy * sin).abs() - half_length[..., None, None]).clamp(min=0)
    distance2 = (dy * cos - dx * sin) ** 2 + beyond ** 2
    sigma = 0.5 * size / 64
    return (on[..., None, None] * torch.exp(-distance2 / (2 * sigma ** 2))).sum(1, keepdim=True).clamp(max=1)


class NoiseInput(nn.Module):
    """Adds a per-pixel noise map, scaled by a learned per-channel strength (StyleGAN's noise inputs).

    Random detail (skin texture, pigment network, hair) then has a random source, instead of G having
    to draw it deterministically from z through its upsampling convs, which paints it as a periodic
    pattern. The strength starts at 0, so at initialisation G is the network without noise. The map
    is part of G's latent (see `Generator.latent_dim`), so a seed still fixes the image.

    With `z_dim`, each image's strength is also scaled by exp(a linear map of its z), starting at 1:
    one strength for all images gives every fake the same amount of texture, while the reals range
    from smooth skin to dense network (StyleGAN modulates its layers per image for the same reason).

    With `sparse`, a second strength (also from 0) adds a sparse map: the same noise where it is beyond
    `SPARSE_THRESHOLD` standard deviations and 0 elsewhere, scaled to unit variance. Gaussian noise
    turns into an even grain, while the reals' fine detail is sparse (a few hairs, dots, globules on
    smooth skin: their residual's kurtosis is high, measured in docs/quality.md); G mixes both per channel.

    With `hairs`, a third strength (from 0) adds `hair_strokes` of the same noise: thin straight lines,
    the reals' most frequent fine structure (hairs, ruler marks) and one that G does not draw from
    pixel-wise noise within a CPU budget (measured in docs/quality.md).
    """

    SPARSE_THRESHOLD = 2.0  # keeps 4.6% of the pixels
    # the std of n * [|n| > t] for n ~ N(0, 1): sqrt(2 (t phi(t) + 1 - Phi(t)))
    SPARSE_STD = math.sqrt(2 * (SPARSE_THRESHOLD * math.exp(-SPARSE_THRESHOLD ** 2 / 2)
                                / math.sqrt(2 * math.pi)
                                + 0.5 * math.erfc(SPARSE_THRESHOLD / math.sqrt(2))))

    def __init__(self, channels: int, size: int, z_dim: int = 0, sparse: bool = False, hairs: bool = False):
        super().__init__()
        self.size = size
        self.strength = nn.Parameter(torch.zeros(channels))
        self.sparse_strength = nn.Parameter(torch.zeros(channels)) if sparse else None
        self.hair_strength = nn.Parameter(torch.zeros(channels)) if hairs else None
        self.per_image = nn.Linear(z_dim, channels) if z_dim else None
        self.reset_per_image()

    def reset_per_image(self) -> None:
        """Every image's factor 1 (after `init_weights`, which would draw the linear map's weights)."""
        if self.per_image is not None:
            nn.init.zeros_(self.per_image.weight)
            nn.init.zeros_(self.per_image.bias)

    def forward(self, x: torch.Tensor, noise: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        noise = noise.reshape(-1, 1, self.size, self.size).to(x.dtype)
        factor = None
        if self.per_image is not None:
            if z is None:
                raise ValueError("a per-image noise strength needs each image's z")
            factor = self.per_image(z.flatten(1).float()).exp()[:, :, None, None]
        maps = [(self.strength, noise)]
        if self.sparse_strength is not None:
            maps.append((self.sparse_strength,
                         torch.where(noise.abs() > self.SPARSE_THRESHOLD, noise / self.SPARSE_STD, 0.0)))
        if self.hair_strength is not None:
            maps.append((self.hair_strength, hair_strokes(noise, self.size).to(x.dtype)))
        for strength, m in maps:
            strength = strength.view(1, -1, 1, 1)
            if factor is not None:
                strength = strength * factor
            x = torch.addcmul(x, strength.to(x.dtype), m)
        return x


class LatentInput(nn.Module):
    """What every generator shares: a latent of z then the noise maps, flattened (`latent_dim`), and
    layers that may take the class (conditional BatchNorm) or a noise map (`run_layers`).

    Subclasses set `z_dim`, `num_classes` and `noise_sizes` (the side of each noise map, in order).
    """

    z_dim: int
    num_classes: int
    noise_sizes: list[int]

    @property
    def latent_dim(self) -> int:
        """Numbers per image in G's input: z, then (with noise inputs) every noise map, flattened."""
        return self.z_dim + sum(s * s for s in self.noise_sizes)

    def inputs(self, z: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, Iterator[torch.Tensor]]:
        """z as a (N, z_dim, 1, 1) map and an iterator over the noise maps; checks the latent and labels."""
        if z.shape[1] != self.latent_dim:
            raise ValueError(f"G takes latents of {self.latent_dim} numbers, got {z.shape[1]}")
        if self.num_classes and y is None:
            raise ValueError("a class-conditional generator needs class labels")
        maps = iter(z[:, self.z_dim:].split([s * s for s in self.noise_sizes], dim=1))
        return z[:, :self.z_dim].reshape(z.shape[0], self.z_dim, 1, 1), maps


def run_layers(layers: Iterable[nn.Module], x: torch.Tensor, y: torch.Tensor | None,
               maps: Iterator[torch.Tensor], z: torch.Tensor | None = None) -> torch.Tensor:
    """x through `layers`, handing conditional BatchNorms the classes and noise inputs their maps
    (and z, for a per-image noise strength)."""
    for layer in layers:
        if isinstance(layer, ConditionalBatchNorm2d):
            x = layer(x, y)
        elif isinstance(layer, NoiseInput):
            x = layer(x, next(maps), z)
        else:
            x = layer(x)
    return x


class Generator(LatentInput):
    """z (N, z_dim) [, class y (N,)] -> image (N, C, R, R) in [-1, 1].

    Upsampling blocks with BatchNorm + ReLU, tanh output (the DCGAN paper). `upsample="transpose"`
    doubles the size with 4x4 stride-2 transposed convs (the paper); `"resize"` with nearest-neighbour
    x2 and a 3x3 conv (Odena et al. 2016, "Deconvolution and checkerboard artifacts"): a stride-2
    transposed conv paints each output pixel from a different subset of its weights depending on the
    pixel's parity, which leaves a 2-pixel checkerboard in the images (measured in docs/quality.md),
    while resize + conv treats every pixel alike.

    `supersample` draws the RGB layer (and the conv-noise map) at twice the size and averages each
    2x2 block down, as the reals were downscaled from larger photos: a hair can be thinner than a
    pixel, and per-pixel noise reaches the image averaged, not as single-pixel specks.
    """

    def __init__(self, resolution: int = 64, z_dim: int = 100, width: int = 64, channels: int = 3,
                 num_classes: int = 0, upsample: str = "transpose", rgb_layer: str = "up",
                 noise: bool = False, fine_layers: int = 0, supersample: bool = False,
                 noise_per_image: bool = False, sparse_noise: bool = False, hair_noise: bool = False,
                 upsample_last: str = "same", upsample_last_count: int = 1):
        super().__init__()
        if rgb_layer not in RGB_LAYERS:
            raise ValueError(f"rgb_layer {rgb_layer!r}: choose from {', '.join(RGB_LAYERS)}")
        if upsample_last == "same":
            upsample_last = upsample
        for name in (upsample, upsample_last):
            if name not in UPSAMPLING:
                raise ValueError(f"upsample {name!r}: choose from {', '.join(UPSAMPLING)}")
        up = UPSAMPLING[upsample]
        # The doubling that makes the image may differ: a nearest doubling there copies each half-size
        # pixel to a 2x2 block, so any half-size texture reaches the image as a fixed 2-pixel lattice.
        last_up = UPSAMPLING[upsample_last]
        base, _ = size_plan(resolution)
        widths = _widths(resolution, width)
        self.z_dim, self.num_classes = z_dim, num_classes

        self.noise_sizes: list[int] = []  # the side of each NoiseInput's map, in layer order

        def norm(c: int, size: int, full_size_noise: bool = False) -> list[nn.Module]:
            """BatchNorm (+ noise on maps up to a quarter of the image's size with `noise`, or on this
            map with `full_size_noise`) + ReLU."""
            layers = [ConditionalBatchNorm2d(c, num_classes) if num_classes else nn.BatchNorm2d(c)]
            # Noise on the half-size map came out as hatching at 2,000 steps (docs/quality.md): the last
            # upsampling turned each noise pixel into a 2x2 block. Coarse maps only, or the full-size map
            # of the conv-noise RGB layer, where a noise pixel stays one pixel.
            if (noise and size <= resolution // 4) or full_size_noise:
                layers.append(NoiseInput(c, size, z_dim if noise_per_image else 0, sparse_noise,
                                         hair_noise and full_size_noise))
                self.noise_sizes.append(size)
            return [*layers, nn.ReLU(True)]

        size = base
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, widths[0], base, 1, 0, bias=False),
                                   *norm(widths[0], size)]
        doublings = list(itertools.pairwise(widths))  # the image's own doubling comes after these
        for i, (c_in, c_out) in enumerate(doublings):
            size *= 2
            late = len(doublings) - i < upsample_last_count  # among the last `upsample_last_count`
            layers += [*(last_up if late else up)(c_in, c_out), *norm(c_out, size)]
        if rgb_layer != "up":  # each output pixel then mixes both parities of the last upsampling
            half = max(1, widths[-1] // 2)
            full_noise = rgb_layer == "conv-noise"
            layers += [*(up if supersample else last_up)(widths[-1], half),
                       *norm(half, size * 2, full_noise and not supersample)]
            for _ in range(fine_layers):
                layers += [nn.Conv2d(half, half, 3, 1, 1, bias=False), *norm(half, size * 2)]
            if supersample:  # one more doubling, narrower, where the conv-noise map moves to
                quarter = max(1, half // 2)
                layers += [*last_up(half, quarter), *norm(quarter, size * 4, full_noise)]
                half = quarter
            layers.append(nn.Conv2d(half, channels, 3, 1, 1, bias=False))
        elif fine_layers or supersample:
            raise ValueError("fine_layers and supersample need an RGB layer at full size (rgb_layer conv or "
                             "conv-noise)")
        else:
            layers += [*last_up(widths[-1], channels)]
        layers.append(nn.Tanh())
        if supersample:
            layers.append(nn.AvgPool2d(2))
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)
        for m in self.modules():
            if isinstance(m, NoiseInput):
                m.reset_per_image()

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x, maps = self.inputs(z, y)
        if not self.num_classes and not self.noise_sizes:
            return self.main(x)
        return run_layers(self.main, x, y, maps, x)


class MinibatchStd(nn.Module):
    """Append one channel: the std of each feature across a group of images, averaged (Karras 2018).

    It lets D see how varied a batch is, so a generator that covers only some of the reals' looks
    (a partial mode collapse) is told apart from the reals. Groups of `group` images, or fewer
    when the batch does not divide (D sees separate real and fake batches of any size).
    """

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group, n) + 1) if n % d == 0)
        if g == 1:  # a batch of one (or of a prime size above the group) has no group: the channel is zero
            return torch.cat([x, x.new_zeros(n, 1, h, w)], dim=1)
        std = x.float().view(g, n // g, c, h, w).var(dim=0, unbiased=False).add(1e-8).sqrt()
        std = std.mean(dim=(1, 2, 3)).to(x.dtype)  # (n // g,)
        return torch.cat([x, std.repeat(g)[:, None, None, None].expand(n, 1, h, w)], dim=1)


class WithFineDetail(nn.Module):
    """Appends the image's fine detail (the image minus its Gaussian low-pass, `dcgan.bands`) as
    more channels: (N, C, H, W) -> (N, 2C, H, W).

    A linear view D's first conv could in principle learn, but at a short budget it does not: the
    fine texture was what gave fakes away to the C2ST (its fine view), and with the texture spelled
    out D pushes G to put it where the reals have it. Alone it fooled the C2ST more often but cost
    recall (a sharper D, fewer looks); `small-data` pairs it with `--mode-seeking`, which wins the
    recall back (docs/quality.md).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, fine(x)], dim=1)


class SpectrumHead(nn.Module):
    """A second, small judge inside D: each image's radial power spectrum (log power per colour
    channel in `bins` log-spaced rings of spatial frequency) through a two-layer MLP, one logit.

    D's convs see texture locally; how an image's energy spreads over scales is a global statistic
    they pick up slowly, and at 2,000 steps the fakes still carried excess power at periods of 4-12 px
    that a classifier on band powers found at once (docs/quality.md). With this logit added to D's,
    G is judged on its per-image spectra as well (Jung & Keuper 2021, "Spectral distribution aware
    image generation"). No normalisation layer: D sees reals and fakes in separate batches, and a
    batch statistic would cancel the very difference this head is for. Off in every preset: at 64 px
    G met the spectra with an even grain and fewer looks (docs/quality.md, sixth round).
    """

    def __init__(self, resolution: int, channels: int = 3, bins: int = 16, width: int = 64, sn: bool = False):
        super().__init__()
        fy = torch.fft.fftfreq(resolution)[:, None]
        fx = torch.fft.rfftfreq(resolution)[None, :]
        radius = torch.hypot(fy, fx).flatten()
        # Rings from the lowest frequency the image holds to the corner, log-spaced so that each
        # octave gets the same number; the DC term (the mean colour) is left to the convs.
        edges = torch.logspace(math.log10(1 / resolution), math.log10(math.sqrt(0.5)), bins + 1)
        edges[0] = 0.5 / resolution  # the first ring holds the lowest frequency
        rings = ((radius[:, None] > edges[None, :-1]) & (radius[:, None] <= edges[None, 1:])).float()
        rings = rings / rings.sum(0).clamp(min=1)  # mean over a ring (an empty ring stays 0)
        self.register_buffer("rings", rings, persistent=False)
        first, last = nn.Linear(channels * bins, width), nn.Linear(width, 1)
        if sn:
            first, last = spectral_norm(first), spectral_norm(last)
        self.mlp = nn.Sequential(first, nn.LeakyReLU(0.2, True), last)

    def spectra(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, R, R) -> (N, C * bins) log ring powers, in float32 (FFTs have no bf16 on CPU)."""
        with torch.autocast(x.device.type, enabled=False):
            power = torch.fft.rfft2(x.float(), norm="ortho").abs().square()
            return torch.log(power.flatten(2) @ self.rings + 1e-6).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.spectra(x)).flatten()


class CoarseHead(nn.Module):
    """A second, small judge inside D that sees only the image area-averaged to 1/`factor` of each
    side: colour, shape and layout, no texture (pix2pixHD's multi-scale discriminators, Wang et al.
    2018). Its logit is a second output column, so the loss trains it as a discriminator of its own.

    At 160 px D's strided convs reach the whole lesion only in their last layers, and after 4,000
    steps the fakes' texture passed the panel's CNN judges while a judge of their 1/4-size images
    still told them apart (palette, contours, layout; docs/quality.md). Here a net of its own reads
    that view from its first layer. Strided convs (BatchNorm after all but the first, as in D; spectral
    norm with sngan; widths capped as D's) down to 7 px or less, then one conv over what is left; no
    class projection: the class is D's main head's to judge.
    """

    def __init__(self, resolution: int, factor: int, width: int = 64, channels: int = 3, sn: bool = False):
        super().__init__()
        size = resolution // factor
        if factor < 2 or resolution % factor or size < 8:
            raise ValueError(f"coarse factor {factor}: must be 2 or more, divide {resolution} px and leave "
                             "at least 8 px")

        def conv(c_in: int, c_out: int, kernel: int, stride: int, pad: int) -> nn.Module:
            layer = nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=sn)
            return spectral_norm(layer) if sn else layer

        layers: list[nn.Module] = [nn.AvgPool2d(factor)]
        c_in, c_out, first = channels, width, True
        while size > 7 and size % 2 == 0:
            layers.append(conv(c_in, c_out, 4, 2, 1))
            if not first and not sn:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, True))
            c_in, c_out, size, first = c_out, min(2 * c_out, width * MAX_WIDTH_FACTOR), size // 2, False
        layers.append(conv(c_in, 1, size, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def _image_input(channels: int) -> tuple[list[nn.Module], int]:
    return [], channels


def _image_fine_input(channels: int) -> tuple[list[nn.Module], int]:
    return [WithFineDetail()], 2 * channels


# What D looks at (name -> layers before its first conv, and the channels they hand it).
D_INPUTS = {"image": _image_input, "image+fine": _image_fine_input}


class Discriminator(nn.Module):
    """image (N, C, R, R) [, class y (N,)] -> one logit per image, (N,); with `coarse` two, (N, 2).

    Strided convs with LeakyReLU 0.2. `arch="dcgan"` uses BatchNorm after every hidden conv but
    the first (the DCGAN paper); `arch="sngan"` puts spectral normalisation on every layer and no
    BatchNorm (Miyato et al. 2018), which keeps D smooth and pairs well with hinge loss. `d_input`
    (a `D_INPUTS` name) says what the first conv sees: the image, or the image and its fine detail.
    `fine_layers` 3x3 stride-1 convs (half the first width) come before the first strided one, as in
    the panel's full-res judge, which a stride-2 first layer cannot match at the pixel scale.
    With `spectrum` a `SpectrumHead`'s logit (the image's radial power spectrum) adds to D's own;
    with `coarse` (a factor, 0 = off) a `CoarseHead`'s logit on the 1/coarse-size image comes beside it.
    """

    def __init__(self, resolution: int = 64, width: int = 64, channels: int = 3, arch: str = "dcgan",
                 num_classes: int = 0, mbstd: int = 0, downsample: str = "stride", d_input: str = "image",
                 fine_layers: int = 0, spectrum: bool = False, coarse: int = 0):
        super().__init__()
        if downsample not in DOWNSAMPLING:
            raise ValueError(f"downsample {downsample!r}: choose from {', '.join(DOWNSAMPLING)}")
        if d_input not in D_INPUTS:
            raise ValueError(f"d_input {d_input!r}: choose from {', '.join(D_INPUTS)}")
        down = DOWNSAMPLING[downsample]
        base, _ = size_plan(resolution)
        widths = _widths(resolution, width)[::-1]
        sn = arch == "sngan"

        def conv(c_in: int, c_out: int, kernel: int, stride: int, pad: int) -> nn.Module:
            layer = nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=sn)
            return spectral_norm(layer) if sn else layer

        view, c = D_INPUTS[d_input](channels)
        layers: list[nn.Module] = [*view]
        fine_width = max(1, widths[0] // 2)
        for _ in range(fine_layers):  # stride 1 at full size: pixel-scale texture read before subsampling
            layers += [conv(c, fine_width, 3, 1, 1), nn.LeakyReLU(0.2, True)]
            c = fine_width
        layers += [*down(conv(c, widths[0], 4, 2, 1)), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in itertools.pairwise(widths):
            layers += down(conv(c_in, c_out, 4, 2, 1))
            if not sn:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, True))
        if mbstd:
            layers.append(MinibatchStd(mbstd))
        features = widths[-1] + (1 if mbstd else 0)  # what the last conv (and the projection) sees
        layers.append(conv(features, 1, base, 1, 0))
        self.main = nn.Sequential(*layers)
        self.embed: nn.Module | None = None
        if num_classes:
            embed = nn.Embedding(num_classes, features)
            self.embed = spectral_norm(embed) if sn else embed
        self.spectrum = SpectrumHead(resolution, channels, sn=sn) if spectrum else None
        self.coarse = CoarseHead(resolution, coarse, width, channels, sn) if coarse else None
        self.apply(init_weights)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is None:
            logits = self.main(x).flatten()
        elif y is None:
            raise ValueError("a class-conditional discriminator needs class labels")
        else:
            features = self.main[:-1](x)
            projection = (self.embed(y)[:, :, None, None] * features).sum(dim=(1, 2, 3))
            logits = self.main[-1](features).flatten() + projection
        if self.spectrum is not None:
            logits = logits + self.spectrum(x).to(logits.dtype)
        if self.coarse is None:
            return logits
        return torch.stack([logits, self.coarse(x).to(logits.dtype)], dim=1)


def latents_for_seeds(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """One N(0, 1) latent per seed, each from its own seeded generator: (len(seeds), z_dim).

    The generator's input, for everyone who samples it by seed (the sample grids, the evaluations,
    `generate`), so that the same seed gives the same image in each of them.
    """
    z = torch.empty(len(seeds), z_dim)
    gen = torch.Generator()
    for i, seed in enumerate(seeds):
        z[i] = torch.randn(z_dim, generator=gen.manual_seed(int(seed)))
    return z
