"""A few-shot GAN for 128 px and up (32 px at least): FastGAN's ideas (Liu et al. 2021), our code.

FastGAN trains at 256-1024 px on 100-1,000 images in hours where a DCGAN blurs or collapses:
- G: one upsampling block per size (nearest x2 + 3x3 conv + BatchNorm + GLU), every other block
  (counted from the full size down) a second conv and per-pixel noise; **skip-layer excitation**:
  the 4x4 map's channels gate the 64x64 map's (and 8 -> 128, 16 -> 256), a cheap long-range path
  that carries the layout to the fine maps.
- D: a stride-1 first conv at full resolution (it sees the finest texture, as the strongest judges
  of `dcgan.analysis.judges` do), residual down blocks (4x4 stride-2 conv path + average-pool path),
  excitation 8x across sizes, patch logits from two views (the image and a half-size copy), and a
  **self-supervised reconstruction task**: on reals, small decoders rebuild the image from D's 8x8
  features, the half-size copy from that branch's features, and a random quarter of the image from a
  crop of the 16x16 map. D must keep a description of the whole image, so it cannot win by memorising
  a few details of a few hundred reals.

Ours differs where this toolkit needs it, each in a line where it is done: one image out of G (its
second, 128 px output fed D's small branch; here that branch sees the image downscaled, so
`generate`, EMA and the evaluations see one image); noise maps are part of the latent (a seed fixes
the image, as in `models.NoiseInput`); the reconstruction loss needs no downloaded weights (L1 on the
pixels and on their fine detail, instead of LPIPS's VGG); class conditioning by conditional BatchNorm
in G and a projection in D, as in `models`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .bands import fine
from .models import (
    D_INPUTS,
    ConditionalBatchNorm2d,
    LatentInput,
    NearestUpConv2d,
    NoiseInput,
    SpectrumHead,
    init_weights,
    run_layers,
    size_plan,
)

# Channels per map, as multiples of --g-channels / --d-channels, from the base (4 or 5 px) map up:
# FastGAN's table (4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5, ...), by position.
WIDTH_FACTORS = (16, 8, 4, 2, 2, 1, 0.5, 0.25, 0.125)
EXCITE_G = 4  # G's excitation spans 4 doublings (4 -> 64 px), D's 3 (FastGAN's 8x and 16x)
EXCITE_D = 3


def _widths(resolution: int, width: int) -> list[int]:
    """Channels of each map from the base size to the full size (k + 1 entries)."""
    _, k = size_plan(resolution)
    return [max(8, int(width * WIDTH_FACTORS[min(i, len(WIDTH_FACTORS) - 1)])) for i in range(k + 1)]


def small_size(resolution: int) -> int:
    """The side of D's second view and of the reconstructions: half the image, at most base * 32
    (128 or 160 px), FastGAN's 128 px for 256 px images."""
    base, k = size_plan(resolution)
    return base * 2 ** min(k - 1, 5)


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, pad: int = 0) -> nn.Module:
    return spectral_norm(nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=False))


class Excitation(nn.Module):
    """Skip-layer excitation: a small map's content gates a big map's channels (a sigmoid per channel).

    Pooled to 4x4 and reduced by a 4x4 conv, the small map cannot paint where things go, only which
    features the big map uses: a long path from layout to texture that costs almost nothing.
    """

    def __init__(self, c_small: int, c_big: int):
        super().__init__()
        self.main = nn.Sequential(nn.AdaptiveAvgPool2d(4), _conv(c_small, c_big, 4), nn.SiLU(),
                                  _conv(c_big, c_big, 1), nn.Sigmoid())

    def forward(self, small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
        return big * self.main(small).to(big.dtype)


class FewShotGenerator(LatentInput):
    """z (N, latent_dim) [, class y (N,)] -> image (N, C, R, R) in [-1, 1]; see the module docstring.

    Same interface as `models.Generator` (`z_dim`, `latent_dim`, `noise_sizes`, `num_classes`), so the
    trainer, EMA calibration, `generate` and the evaluations take either.
    """

    def __init__(self, resolution: int = 256, z_dim: int = 100, width: int = 32, channels: int = 3,
                 num_classes: int = 0, noise: bool = True):
        super().__init__()
        base, k = size_plan(resolution)
        widths = _widths(resolution, width)
        self.z_dim, self.num_classes = z_dim, num_classes
        self.noise_sizes: list[int] = []

        def norm_glu(c: int, size: int, with_noise: bool) -> list[nn.Module]:
            """[noise] + BatchNorm over 2c channels + GLU (half the channels gate the other half)."""
            layers: list[nn.Module] = []
            if with_noise:
                layers.append(NoiseInput(2 * c, size))
                self.noise_sizes.append(size)
            layers.append(ConditionalBatchNorm2d(2 * c, num_classes) if num_classes
                          else nn.BatchNorm2d(2 * c))
            return [*layers, nn.GLU(dim=1)]

        first = spectral_norm(nn.ConvTranspose2d(z_dim, 2 * widths[0], base, 1, 0, bias=False))
        blocks = [nn.ModuleList([first, *norm_glu(widths[0], base, False)])]
        size = base
        for i in range(1, k + 1):
            size *= 2
            # FastGAN's UpBlockComp (a second conv, and noise) on every other size, counted from the top
            # so that the full-size block is always the plain one: the costliest map gets the cheapest
            # block and per-pixel noise never lands at full size, where it read as speckle (docs/quality.md).
            # At 64 and 256 px that is FastGAN's own pattern (8, 32, 128 px).
            comp = (k - i) % 2 == 1
            layers = [spectral_norm(NearestUpConv2d(widths[i - 1], 2 * widths[i])),
                      *norm_glu(widths[i], size, noise and comp)]
            if comp:
                layers += [_conv(widths[i], 2 * widths[i], 3, 1, 1), *norm_glu(widths[i], size, noise)]
            blocks.append(nn.ModuleList(layers))
        self.blocks = nn.ModuleList(blocks)
        self.excite = nn.ModuleDict({str(i): Excitation(widths[i - EXCITE_G], widths[i])
                                     for i in range(EXCITE_G, k + 1)})
        self.to_rgb = _conv(widths[-1], channels, 3, 1, 1)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x, maps = self.inputs(z, y)
        feats: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            x = run_layers(block, x, y, maps)
            if str(i) in self.excite:
                x = self.excite[str(i)](feats[i - EXCITE_G], x)
            feats.append(x)
        return torch.tanh(self.to_rgb(x))


class DownBlock(nn.Module):
    """Halves the map: a 4x4 stride-2 conv path and, with `residual`, an average-pool + 1x1 conv path
    averaged with it (FastGAN's DownBlockComp: the pool path keeps what the strided conv aliases)."""

    def __init__(self, c_in: int, c_out: int, residual: bool = True):
        super().__init__()
        act = nn.LeakyReLU(0.2, True)
        main: list[nn.Module] = [_conv(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), act]
        if residual:
            main += [_conv(c_out, c_out, 3, 1, 1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
        self.main = nn.Sequential(*main)
        self.direct = (nn.Sequential(nn.AvgPool2d(2), _conv(c_in, c_out, 1), nn.BatchNorm2d(c_out),
                                     nn.LeakyReLU(0.2, True)) if residual else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) if self.direct is None else (self.main(x) + self.direct(x)) / 2


class Decoder(nn.Module):
    """D's reconstruction head: features (N, c, s, s) -> image (N, C, S, S) by `ups` nearest x2 + conv +
    BatchNorm + GLU blocks (FastGAN's SimpleDecoder, widths 4w, 2w, w, w/2)."""

    def __init__(self, c_in: int, channels: int, ups: int, width: int):
        super().__init__()
        layers: list[nn.Module] = []
        c = c_in
        for j in range(ups):
            c_out = max(8, 4 * width >> j)
            layers += [spectral_norm(NearestUpConv2d(c, 2 * c_out)), nn.BatchNorm2d(2 * c_out), nn.GLU(dim=1)]
            c = c_out
        layers += [_conv(c, channels, 3, 1, 1), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def reconstruction_loss(rebuilt: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 on the pixels plus L1 on their fine detail (image minus a Gaussian blur).

    FastGAN uses LPIPS, whose VGG weights would have to be downloaded. Pixel L1 alone is ruled by the
    low frequencies (colour, layout), so D could keep only those; the fine-detail term asks its
    features to keep the texture too, the part of the image the judges tell fakes by.
    """
    rebuilt, target = rebuilt.float(), target.float()
    return (rebuilt - target).abs().mean() + (fine(rebuilt) - fine(target)).abs().mean()


class FewShotDiscriminator(nn.Module):
    """image (N, C, R, R) [, class y] -> patch logits (N * P,); with `reconstruct=True` also the
    reconstruction loss on these images (call it on reals). See the module docstring."""

    reconstructs = True

    def __init__(self, resolution: int = 256, width: int = 32, channels: int = 3, num_classes: int = 0,
                 d_input: str = "image", spectrum: bool = False):
        super().__init__()
        _, k = size_plan(resolution)
        w = _widths(resolution, width)
        self.small = small_size(resolution)
        view, view_channels = D_INPUTS[d_input](channels)
        act = nn.LeakyReLU(0.2, True)
        # Full resolution, stride 1: the first layer sees every pixel (FastGAN's choice up to 512 px).
        self.stem = nn.Sequential(*view, _conv(view_channels, w[k], 3, 1, 1), act)
        self.down = nn.ModuleList([DownBlock(w[i], w[i - 1]) for i in range(k, 1, -1)])  # to base * 2
        # excitation: the map of size index i + 3 gates the map of index i (i counts from the base map)
        self.excite = nn.ModuleDict({str(i): Excitation(w[i + EXCITE_D], w[i])
                                     for i in range(1, k - EXCITE_D + 1)})
        self.logits = nn.Sequential(_conv(w[1], w[0], 1), nn.BatchNorm2d(w[0]), nn.LeakyReLU(0.2, True),
                                    _conv(w[0], 1, 4))
        ks = size_plan(self.small)[1]
        small: list[nn.Module] = [_conv(channels, w[ks - 1], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        small += [DownBlock(w[i], w[i - 1], residual=False) for i in range(ks - 1, 1, -1)]
        self.small_branch = nn.Sequential(*small)
        self.small_logits = _conv(w[1], 1, 4)
        ups = ks - 1  # from the base * 2 map to the small size
        self.decode_big = Decoder(w[1], channels, ups, width)
        self.decode_small = Decoder(w[1], channels, ups, width)
        self.decode_part = Decoder(w[2], channels, ups, width)
        self.embed: nn.Module | None = spectral_norm(nn.Embedding(num_classes, w[1])) if num_classes else None
        self.spectrum = SpectrumHead(resolution, channels, sn=True) if spectrum else None
        self.apply(init_weights)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None,
                reconstruct: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.embed is not None and y is None:
            raise ValueError("a class-conditional discriminator needs class labels")
        feats = [self.stem(x)]  # feats[j]: the map of size index k - j
        k = len(self.down) + 1
        for block in self.down:
            h = block(feats[-1])
            i = k - len(feats)  # the size index of h
            if str(i) in self.excite:
                h = self.excite[str(i)](feats[k - (i + EXCITE_D)], h)
            feats.append(h)
        last = feats[-1]  # base * 2
        # The half-size view: an area average, as G's own small output would be (one image out of G).
        small_image = nn.functional.interpolate(x, size=self.small, mode="area")
        small = self.small_branch(small_image)
        logits = torch.cat([self.logits(last).flatten(1), self.small_logits(small).flatten(1)], dim=1)
        if self.embed is not None:
            pooled = last.float().sum(dim=(2, 3))
            logits = logits + (self.embed(y) * pooled).sum(1, keepdim=True).to(logits.dtype)
        if self.spectrum is not None:  # one logit per image, added to each of its patches'
            logits = logits + self.spectrum(x)[:, None].to(logits.dtype)
        logits = logits.flatten()
        if not reconstruct:
            return logits
        quarter = int(torch.randint(4, (1,)))  # the quarter to rebuild; global RNG, so resume stays exact
        row, col = divmod(quarter, 2)
        part_map = feats[-2]  # base * 4
        half = part_map.shape[-1] // 2
        crop = part_map[:, :, row * half:(row + 1) * half, col * half:(col + 1) * half]
        side = x.shape[-1] // 2
        part = x[:, :, row * side:(row + 1) * side, col * side:(col + 1) * side]
        part = nn.functional.interpolate(part, size=self.small, mode="area")
        loss = (reconstruction_loss(self.decode_big(last), small_image)
                + reconstruction_loss(self.decode_small(small), small_image)
                + reconstruction_loss(self.decode_part(crop), part))
        return logits, loss
