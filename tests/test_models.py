"""Generator/Discriminator shapes for every supported size and arch; the DCGAN reference size."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch import nn

from dcgan.errors import UserError
from dcgan.models import (
    CoarseHead,
    Discriminator,
    Generator,
    MinibatchStd,
    NearestUpConv2d,
    NoiseInput,
    SpectrumHead,
    WithFineDetail,
    hair_strokes,
    size_plan,
)


@pytest.mark.parametrize("resolution", [32, 40, 64, 128, 160, 256, 512])
@pytest.mark.parametrize(("arch", "upsample"), [("dcgan", "transpose"), ("sngan", "resize")])
def test_shapes(resolution: int, arch: str, upsample: str) -> None:
    width = 4 if resolution >= 256 else 8
    G = Generator(resolution, z_dim=16, width=width, channels=3, upsample=upsample)
    D = Discriminator(resolution, width=width, channels=3, arch=arch)
    x = G(torch.randn(2, 16))
    assert x.shape == (2, 3, resolution, resolution)
    assert float(x.detach().abs().max()) <= 1.0  # tanh output
    assert D(x).shape == (2,)


def test_grayscale_shapes() -> None:
    G, D = Generator(32, 8, 8, channels=1), Discriminator(32, 8, channels=1)
    assert G(torch.randn(3, 8)).shape == (3, 1, 32, 32)
    assert D(torch.randn(3, 1, 32, 32)).shape == (3,)


def test_reference_dcgan_parameter_counts() -> None:
    # pytorch/examples dcgan at 64 px, ngf = ndf = 64, nz = 100: same layers, same sizes.
    assert sum(p.numel() for p in Generator(64).parameters()) == 3_576_704
    assert sum(p.numel() for p in Discriminator(64).parameters()) == 2_765_568


def test_resize_generator_parameter_count() -> None:
    # 4x4 transposed stem 100->512, then 3x3 convs 512->256->128->64->3, BatchNorm scale + shift.
    convs = 100 * 512 * 16 + 9 * (512 * 256 + 256 * 128 + 128 * 64 + 64 * 3)
    batchnorm = 2 * (512 + 256 + 128 + 64)
    assert sum(p.numel() for p in Generator(64, upsample="resize").parameters()) == convs + batchnorm


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resize_upsampling_has_no_checkerboard_at_init(seed: int) -> None:
    # The pattern Odena et al. (2016) describe: a stride-2 transposed conv gives even and odd pixels
    # different weights, so even an untrained G answers the 2x2 (-1)^(i+j) filter strongly
    # (measured 0.34-0.46 of the image std over seeds 0-2); nearest x2 + 3x3 conv gives 0.07-0.09.
    kernel = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).view(1, 1, 2, 2).repeat(3, 1, 1, 1) / 4

    def checkerboard(upsample: str) -> float:
        torch.manual_seed(seed)
        with torch.no_grad():
            x = Generator(32, 16, 8, 3, upsample=upsample)(torch.randn(64, 16))
        return float(torch.nn.functional.conv2d(x, kernel, stride=2, groups=3).abs().mean() / x.std())

    assert checkerboard("transpose") > 0.25
    assert checkerboard("resize") < 0.15


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_resize_conv_is_nearest_upsample_then_3x3_conv(channels_last: bool) -> None:
    """The one transposed conv computes what Upsample(x2, nearest) + Conv2d(3, 1, 1) does, and gives
    the same gradients for the input and the 3x3 weight (up to float rounding)."""
    torch.manual_seed(0)
    fused = NearestUpConv2d(6, 5)
    plain = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2, mode="nearest"),
                                torch.nn.Conv2d(6, 5, 3, 1, 1, bias=False))
    plain[1].weight.data.copy_(fused.weight.data)
    x = torch.randn(3, 6, 7, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        cl = torch.channels_last
        fused, plain = fused.to(memory_format=cl), plain.to(memory_format=cl)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = fused(xa), plain(xb)
    assert ya.shape == (3, 5, 14, 14)
    torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(ya)
    ya.backward(grad)
    yb.backward(grad)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused.weight.grad, plain[1].weight.grad, rtol=1e-5, atol=1e-4)


def test_resize_generator_keeps_its_checkpoint_keys() -> None:
    """Runs saved with the two-module resize (Upsample, Conv2d) load into the fused one."""
    keys = {k: tuple(v.shape) for k, v in Generator(32, 16, 8, upsample="resize").state_dict().items()}
    assert keys["main.4.weight"] == (16, 32, 3, 3) and keys["main.12.weight"] == (3, 8, 3, 3)
    assert "main.3.weight" not in keys  # index 3 is the parameter-free placeholder of the Upsample


def test_unknown_upsampling_is_refused() -> None:
    with pytest.raises(ValueError, match="upsample 'bilinear'"):
        Generator(32, upsample="bilinear")


def test_sngan_has_spectral_norm_on_every_conv_and_no_batchnorm() -> None:
    D = Discriminator(64, 8, arch="sngan")
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())


def test_init_is_dcgan_normal() -> None:
    G = Generator(64)
    w = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)])
    assert abs(float(w.mean())) < 1e-3 and abs(float(w.std()) - 0.02) < 1e-3


@pytest.mark.parametrize("bad", [48, 100, 8, 0, 96 * 3])
def test_unsupported_resolution_is_a_clear_error(bad: int) -> None:
    with pytest.raises(UserError, match="4 or 5 times a power of two"):
        size_plan(bad)


def test_spectral_norm_layers_keep_the_default_init_and_others_get_n002() -> None:
    # Deliberate (see init_weights): SN layers keep PyTorch's Kaiming-uniform init, std
    # 1/sqrt(3 fan_in), while the plain layers, the class embedding of a non-SN projection D
    # included, get N(0, 0.02) (a N(0, 1) embedding would swamp the conv features 50x at start).
    torch.manual_seed(0)
    d = Discriminator(64, 64, 3, arch="sngan")
    for m in (m for m in d.modules() if isinstance(m, torch.nn.Conv2d)):
        w = m.parametrizations.weight.original
        fan_in = w.shape[1] * w.shape[2] * w.shape[3]
        assert float(w.std()) == pytest.approx((3 * fan_in) ** -0.5, rel=0.2)
    plain = Discriminator(64, 64, 3, num_classes=2)
    assert float(plain.embed.weight.std()) == pytest.approx(0.02, rel=0.3)
    for m in (m for m in plain.modules() if isinstance(m, torch.nn.Conv2d)):
        assert float(m.weight.std()) == pytest.approx(0.02, rel=0.2)


def test_conditional_shapes_and_batchnorm_starts_as_identity_scale() -> None:
    torch.manual_seed(0)
    g = Generator(32, 16, 8, 3, num_classes=3)
    d = Discriminator(32, 8, 3, num_classes=3)
    y = torch.tensor([0, 1, 2, 1])
    images = g(torch.randn(4, 16), y)
    assert images.shape == (4, 3, 32, 32)
    assert d(images, y).shape == (4,)
    cbn = [m for m in g.modules() if type(m).__name__ == "ConditionalBatchNorm2d"]
    assert cbn
    for m in cbn:
        assert float(m.gamma.weight.mean()) == pytest.approx(1.0, abs=0.01)
        assert float(m.beta.weight.abs().max()) == 0.0
    assert float(d.embed.weight.std()) == pytest.approx(0.02, rel=0.3)  # plain (non-SN) D


def test_minibatch_std_channel_is_the_group_spread() -> None:
    layer = MinibatchStd(group=4)
    x = torch.randn(8, 5, 3, 3)
    out = layer(x)
    assert out.shape == (8, 6, 3, 3)
    assert torch.equal(out[:, :5], x)
    # Samples i, i+2, i+4, i+6 form group i (of 2 groups): the channel is their mean per-feature std.
    for i in range(2):
        expected = x[i::2].std(dim=0, unbiased=False).mean()
        assert torch.allclose(out[i::2, 5], expected.expand(4, 3, 3), atol=1e-5)
    # A collapsed batch (every image the same) has no spread; a varied one has.
    same = layer(x[:1].expand(8, -1, -1, -1).contiguous())[:, 5]
    assert float(same.max()) < 1e-3 < float(out[:, 5].min())


@pytest.mark.parametrize("batch", [1, 3, 5, 6, 32])
def test_minibatch_std_takes_any_batch_size(batch: int) -> None:
    D = Discriminator(32, width=8, mbstd=4)
    assert D(torch.randn(batch, 3, 32, 32)).shape == (batch,)
    assert sum(p.numel() for p in D.parameters()) == (
        sum(p.numel() for p in Discriminator(32, width=8).parameters()) + 4 * 4)  # one more input map


def test_blur_upsampling_is_zero_insertion_and_the_stylegan2_low_pass() -> None:
    # `--upsample blur`'s bilinear x2 equals StyleGAN2's upfirdn2d with the [1, 3, 3, 1] filter
    # (zero insertion, separable filter, gain 4) away from the borders, which bilinear clamps.
    up = Generator(32, 16, 8, 3, upsample="blur").main[3]
    x = torch.randn(2, 3, 8, 8)
    zeros = torch.zeros(2, 3, 16, 16)
    zeros[..., ::2, ::2] = x
    k = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 4
    kernel = (k[:, None] * k[None, :]).expand(3, 1, 4, 4)
    upfirdn = torch.nn.functional.conv2d(torch.nn.functional.pad(zeros, (2, 1, 2, 1)), kernel, groups=3)
    assert torch.allclose(up(x)[..., 2:-2, 2:-2], upfirdn[..., 2:-2, 2:-2], atol=1e-6)
    G = Generator(64, 16, 8, 3, upsample="blur")
    assert G(torch.randn(2, 16)).shape == (2, 3, 64, 64)
    assert sum(p.numel() for p in G.parameters()) == sum(
        p.numel() for p in Generator(64, 16, 8, 3, upsample="resize").parameters())


@pytest.mark.parametrize("rgb_layer", ["up", "conv-noise"])
def test_upsample_last_changes_only_the_doubling_that_makes_the_image(rgb_layer: str) -> None:
    # `--upsample-last blur` with `--upsample resize`: nearest inside G, bilinear for the last doubling.
    # Same parameters under the same keys, so a G trained with nearest everywhere loads into it.
    G = Generator(32, 16, 8, 3, upsample="resize", rgb_layer=rgb_layer, upsample_last="blur")
    plain = Generator(32, 16, 8, 3, upsample="resize", rgb_layer=rgb_layer)
    ups = [m for m in G.main if isinstance(m, (nn.Upsample, NearestUpConv2d))]
    assert [type(m).__name__ for m in ups] == ["NearestUpConv2d"] * 2 + ["Upsample"]
    assert ups[-1].mode == "bilinear"
    assert G.state_dict().keys() == plain.state_dict().keys()
    G.load_state_dict(plain.state_dict())
    z = torch.randn(G.latent_dim, generator=torch.Generator().manual_seed(0)).expand(2, -1)
    G.eval(), plain.eval()
    with torch.no_grad():
        a, b = G(z), plain(z)
    assert a.shape == b.shape == (2, 3, 32, 32)
    assert not torch.allclose(a, b)
    # what the swap takes away: the finest detail (the image minus its own 3x3 box blur) is weaker
    def fine(x: torch.Tensor) -> float:
        return float((x - nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)).std())
    assert fine(a) < 0.75 * fine(b)  # measured 0.43-0.60 of it over init seeds 0-7
    assert Generator(32, 16, 8, 3, upsample_last="blur")(torch.randn(2, 16)).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="upsample 'nearest'"):
        Generator(32, upsample_last="nearest")


@pytest.mark.parametrize("rgb_layer", ["up", "conv-noise"])
def test_upsample_last_count_reaches_back_from_the_image(rgb_layer: str) -> None:
    # `--upsample-last-count 2`: the doubling before the image's is bilinear too (at 160 px 40 -> 80),
    # counted from the image whichever layer makes it; more than G has makes them all; same keys.
    def kinds(count: int) -> list[str]:
        G = Generator(32, 16, 8, 3, upsample="resize", rgb_layer=rgb_layer, upsample_last="blur",
                      upsample_last_count=count)
        assert G(torch.randn(2, G.latent_dim)).shape == (2, 3, 32, 32)  # conv-noise: z holds the noise map
        assert G.state_dict().keys() == Generator(32, 16, 8, 3, upsample="resize",
                                                  rgb_layer=rgb_layer).state_dict().keys()
        return ["blur" if isinstance(m, nn.Upsample) else "nearest" for m in G.main
                if isinstance(m, (nn.Upsample, NearestUpConv2d))]

    assert kinds(1) == ["nearest", "nearest", "blur"]
    assert kinds(2) == ["nearest", "blur", "blur"]
    assert kinds(3) == kinds(8) == ["blur"] * 3


def test_blur_downsampling_low_passes_before_each_strided_conv() -> None:
    # `--downsample blur`: a 2-pixel checkerboard, which a stride-2 conv aliases onto a flat map,
    # is removed by the [1,3,3,1] low-pass (its response at Nyquist is 0) while a flat image passes.
    from dcgan.models import LowPass

    board = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 2.0 - 1.0
    out = LowPass()(board.expand(1, 3, 16, 16))
    assert out.shape == (1, 3, 16, 16)
    assert out[..., 2:-2, 2:-2].abs().max() < 1e-6
    assert torch.allclose(LowPass()(torch.full((1, 2, 8, 8), 0.7)), torch.full((1, 2, 8, 8), 0.7))
    D = Discriminator(32, width=8, downsample="blur")
    assert sum(isinstance(m, LowPass) for m in D.main) == 3  # before each of the three stride-2 convs
    assert D(torch.randn(4, 3, 32, 32)).shape == (4,)
    plain = Discriminator(32, width=8)
    assert plain.state_dict().keys() != D.state_dict().keys()  # indices shift; parameters are the same
    assert [p.shape for p in plain.parameters()] == [p.shape for p in D.parameters()]
    with pytest.raises(ValueError, match="downsample 'max'"):
        Discriminator(32, downsample="max")


def test_rgb_conv_output_layer_mixes_both_parities_at_full_size() -> None:
    # `--rgb-layer conv`: the last upsampling keeps half its channels and a 3x3 conv at full size
    # makes RGB; `up` (the default) is the DCGAN paper's layout, whose checkpoints stay as they were.
    G = Generator(32, 16, 8, 3, upsample="resize", rgb_layer="conv")
    assert G(torch.randn(2, 16)).shape == (2, 3, 32, 32)
    last = [m for m in G.main if isinstance(m, nn.Conv2d)][-1]
    assert (last.in_channels, last.out_channels, last.kernel_size, last.stride) == (4, 3, (3, 3), (1, 1))
    up = Generator(32, 16, 8, 3, upsample="resize", rgb_layer="up")
    assert Generator(32, 16, 8, 3, upsample="resize").state_dict().keys() == up.state_dict().keys()
    with pytest.raises(ValueError, match="rgb_layer 'tanh'"):
        Generator(32, rgb_layer="tanh")


def test_conv_noise_rgb_layer_adds_full_size_noise_before_the_rgb_conv() -> None:
    # `--rgb-layer conv-noise`: the conv layer's full-size features get a noise map of their own (a
    # noise pixel stays one pixel there), after the coarse maps' when --noise is on too.
    G = Generator(32, 16, 8, 3, upsample="resize", rgb_layer="conv-noise", noise=True)
    assert G.noise_sizes == [4, 8, 32] and G.latent_dim == 16 + 16 + 64 + 1024
    alone = Generator(32, 16, 8, 3, upsample="resize", rgb_layer="conv-noise")
    assert alone.noise_sizes == [32] and alone.latent_dim == 16 + 1024
    layers = list(alone.main)
    i = next(i for i, m in enumerate(layers) if isinstance(m, NoiseInput))
    assert isinstance(layers[i - 1], nn.BatchNorm2d) and layers[i - 1].num_features == 4
    assert isinstance(layers[i + 2], nn.Conv2d) and layers[i + 2].out_channels == 3  # ReLU, then RGB
    conv = Generator(32, 16, 8, 3, upsample="resize", rgb_layer="conv")
    count = [sum(p.numel() for p in g.parameters()) for g in (alone, conv)]
    assert count[0] - count[1] == 4 and f"main.{i}.strength" in alone.state_dict()  # one strength per channel
    alone.eval()
    with torch.no_grad():
        layers[i].strength.fill_(0.5)
    z = torch.randn(2, alone.latent_dim)
    changed = torch.cat([z[:, :16], torch.randn(2, 1024)], dim=1)
    diff = (alone(z) - alone(changed)).abs()
    assert diff.mean() > 0 and torch.equal(alone(z), alone(z.clone()))


def test_fine_layers_add_full_size_convs_before_the_rgb_conv() -> None:
    # `--g-fine-layers N`: N more 3x3 conv + BatchNorm + ReLU at full size, between the conv-noise
    # layer's noise and the RGB conv; 0 leaves G (and its checkpoints' keys) as they were.
    base = Generator(32, 16, 8, 3, upsample="resize", rgb_layer="conv-noise")
    G = Generator(32, 16, 8, 3, upsample="resize", rgb_layer="conv-noise", fine_layers=2)
    assert G(torch.randn(2, G.latent_dim)).shape == (2, 3, 32, 32) and G.noise_sizes == [32]
    assert base.state_dict().keys() == Generator(32, 16, 8, 3, upsample="resize", rgb_layer="conv-noise",
                                                 fine_layers=0).state_dict().keys()
    convs = [m for m in G.main if isinstance(m, nn.Conv2d)]
    assert len(convs) == len([m for m in base.main if isinstance(m, nn.Conv2d)]) + 2
    assert [(c.in_channels, c.out_channels) for c in convs[-3:]] == [(4, 4), (4, 4), (4, 3)]
    extra = sum(p.numel() for p in G.parameters()) - sum(p.numel() for p in base.parameters())
    assert extra == 2 * (4 * 4 * 9 + 2 * 4)  # two convs and their BatchNorms' scale and shift
    layers = list(G.main)
    i = next(i for i, m in enumerate(layers) if isinstance(m, NoiseInput))
    assert [type(m).__name__ for m in layers[i + 1:]] == ["ReLU", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d",
                                                          "BatchNorm2d", "ReLU", "Conv2d", "Tanh"]
    with pytest.raises(ValueError, match="fine_layers and supersample need"):
        Generator(32, 16, 8, 3, rgb_layer="up", fine_layers=1)


def test_noise_per_image_scales_each_images_noise_by_a_factor_of_its_z() -> None:
    # `--noise-per-image`: strength x exp(linear(z)); the factor starts at 1 for every image.
    layer = NoiseInput(2, 4, z_dim=3)
    with torch.no_grad():
        layer.strength.fill_(1.0)
    x, noise = torch.zeros(3, 2, 4, 4), torch.randn(3, 16)
    z = torch.tensor([[1.0, 5.0, -2.0], [-1.0, 0.0, 3.0], [0.0, 1.0, 1.0]])
    expected = noise.reshape(3, 1, 4, 4).expand(3, 2, 4, 4)
    assert torch.equal(layer(x, noise, z), expected)
    with torch.no_grad():
        layer.per_image.weight[:, 0] = math.log(2.0)  # the factor follows z's first number
    factors = torch.tensor([2.0, 0.5, 1.0])[:, None, None, None]
    torch.testing.assert_close(layer(x, noise, z), expected * factors)
    with pytest.raises(ValueError, match="needs each image's z"):
        layer(x, noise)
    # In G: the latent keeps its size, the factors start at 1 (init_weights does not draw them), and
    # G's images then match the same G without them.
    plain = Generator(32, 16, 8, 3, upsample="resize", rgb_layer="conv-noise", noise=True)
    G = Generator(32, 16, 8, 3, upsample="resize", rgb_layer="conv-noise", noise=True, noise_per_image=True)
    assert G.latent_dim == plain.latent_dim
    G.load_state_dict(plain.state_dict(), strict=False)
    for m in (*G.modules(), *plain.modules()):
        if isinstance(m, NoiseInput):
            m.strength.data.fill_(0.5)
    G.eval(), plain.eval()
    z = torch.randn(2, G.latent_dim)
    torch.testing.assert_close(G(z), plain(z))
    assert all(m.per_image.weight.abs().sum() == 0 for m in G.modules() if isinstance(m, NoiseInput))


def test_sparse_noise_adds_the_noise_beyond_two_sigmas_at_unit_variance() -> None:
    # `--sparse-noise`: a second strength (from 0) adds the noise where |n| > 2, 0 elsewhere, scaled so
    # that its variance is 1 (a strength then means the same for both maps).
    layer = NoiseInput(2, 64, sparse=True)
    assert torch.equal(layer.sparse_strength, torch.zeros(2))
    x, noise = torch.zeros(4, 2, 64, 64), torch.randn(4, 64 * 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(layer(x, noise), x)  # both strengths start at 0
    with torch.no_grad():
        layer.sparse_strength.copy_(torch.tensor([1.0, -3.0]))
    out = layer(x, noise)
    kept = noise.reshape(4, 64, 64).abs() > 2
    assert 0.035 < kept.float().mean() < 0.058  # 4.6% of a Gaussian lies beyond 2 sigmas
    assert torch.equal(out[:, 0] == 0, ~kept) and torch.equal(out[:, 1], -3 * out[:, 0])
    assert abs(out[:, 0].std().item() - 1) < 0.06
    assert out[:, 0].pow(4).mean() / out[:, 0].pow(2).mean() ** 2 > 8  # heavy-tailed (Gaussian: 3)
    with torch.no_grad():
        layer.strength.fill_(0.5)
    torch.testing.assert_close(layer(x, noise) - out, 0.5 * noise.reshape(4, 1, 64, 64).expand(4, 2, 64, 64))
    # In G: every noise input gets one, the latent keeps its size, and G starts as the same G without it.
    plain = Generator(32, 16, 8, 3, upsample="resize", rgb_layer="conv-noise", noise=True)
    G = Generator(32, 16, 8, 3, upsample="resize", rgb_layer="conv-noise", noise=True, sparse_noise=True)
    inputs = [m for m in G.modules() if isinstance(m, NoiseInput)]
    assert len(inputs) == len(plain.noise_sizes) > 1 and all(m.sparse_strength is not None for m in inputs)
    assert G.latent_dim == plain.latent_dim
    assert G.load_state_dict(plain.state_dict(), strict=False).missing_keys == [
        n for n, _ in G.named_parameters() if n.endswith("sparse_strength")]
    G.eval(), plain.eval()
    z = torch.randn(2, G.latent_dim)
    torch.testing.assert_close(G(z), plain(z))


def test_hair_strokes_are_thin_lines_about_two_per_image_fixed_by_the_noise() -> None:
    # `--hair-noise`: strokes centred on the pixels of extreme noise, about 2 per image at every size.
    noise = torch.randn(200, 64 * 64, generator=torch.Generator().manual_seed(0))
    strokes = hair_strokes(noise, 64)
    assert strokes.shape == (200, 1, 64, 64) and strokes.min() >= 0 and strokes.max() <= 1
    assert torch.equal(hair_strokes(noise, 64), strokes)  # a function of the latent
    centres = noise.reshape(200, 64, 64) > statistics.NormalDist().inv_cdf(1 - 2 / 64 ** 2)
    assert 1.6 < centres.sum((1, 2)).float().mean() < 2.4
    assert torch.all(strokes[:, 0][centres] > 0.99)  # each centre lies on its stroke
    # At 160 px: the same count per image (the level follows the size), each centre on its stroke.
    big = torch.randn(100, 160 * 160, generator=torch.Generator().manual_seed(1))
    big_centres = big.reshape(100, 160, 160) > statistics.NormalDist().inv_cdf(1 - 2 / 160 ** 2)
    assert 1.6 < big_centres.sum((1, 2)).float().mean() < 2.4
    assert torch.all(hair_strokes(big, 160)[:, 0][big_centres] > 0.99)
    empty = centres.sum((1, 2)) == 0
    assert 0.05 < empty.float().mean() < 0.25 and strokes[empty].max() == 0  # some images have none
    # One planted stroke: its angle and length follow the next pixel and the pixel below (0 and 0: a
    # vertical line, 64 * (0.05 + 0.25 / 2) = 11.2 px each way), about 1 px wide.
    one = noise[:1].clamp(-3, 3)
    one[0, 30 * 64 + 20], one[0, 30 * 64 + 21], one[0, 31 * 64 + 20] = 5.0, 0.0, 0.0
    ys, xs = torch.nonzero(hair_strokes(one, 64)[0, 0] > 0.5, as_tuple=True)
    assert (ys.min().item(), ys.max().item()) == (30 - 11, 30 + 11) and set(xs.tolist()) == {20}
    # In G: only the full-size noise input gets strokes; G starts as the same G without them.
    plain = Generator(32, 16, 8, 3, upsample="resize", rgb_layer="conv-noise", noise=True)
    G = Generator(32, 16, 8, 3, upsample="resize", rgb_layer="conv-noise", noise=True, hair_noise=True)
    inputs = [m for m in G.modules() if isinstance(m, NoiseInput)]
    assert [m.hair_strength is not None for m in inputs] == [s == 32 for s in G.noise_sizes]
    G.load_state_dict(plain.state_dict(), strict=False)
    G.eval(), plain.eval()
    z = torch.randn(2, G.latent_dim)
    torch.testing.assert_close(G(z), plain(z))
    inputs[-1].hair_strength.data.fill_(1.0)
    assert not torch.allclose(G(z), plain(z))


def test_supersample_draws_the_rgb_layer_at_twice_the_size_and_averages_it_down() -> None:
    # `--g-supersample`: one more doubling (a quarter of G's last width) where the conv-noise map
    # moves to, the RGB conv there, and a 2x2 average after the tanh.
    G = Generator(32, 16, 8, 3, upsample="resize", rgb_layer="conv-noise", fine_layers=1, supersample=True)
    base = Generator(32, 16, 8, 3, upsample="resize", rgb_layer="conv-noise", fine_layers=1)
    assert G.noise_sizes == [64] and base.noise_sizes == [32]
    assert G.latent_dim == 16 + 64 * 64
    z = torch.randn(3, G.latent_dim)
    G.eval()
    x = G(z)
    assert x.shape == (3, 3, 32, 32) and x.abs().max() <= 1
    layers = list(G.main)
    assert isinstance(layers[-1], nn.AvgPool2d) and isinstance(layers[-2], nn.Tanh)
    convs = [m for m in G.main if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs[-3:]] == [(4, 4), (4, 2), (2, 3)]
    # The 2x map's noise reaches the output averaged: changing one pixel of it moves the images,
    # and only the output pixels within the 3x3 RGB conv's reach of it (2x map rows and columns 19-21).
    with torch.no_grad():
        G.main[[i for i, m in enumerate(layers) if isinstance(m, NoiseInput)][-1]].strength.fill_(1.0)
    poked = z.clone()
    poked[:, 16 + 20 * 64 + 20] += 5.0
    diff = (G(poked) - G(z)).abs().amax(dim=(0, 1))
    assert diff[10, 10] > 0 and diff.nonzero().min() >= 9 and diff.nonzero().max() <= 10
    with pytest.raises(ValueError, match="supersample need"):
        Generator(32, 16, 8, 3, rgb_layer="up", supersample=True)


def test_d_fine_layers_read_the_full_size_image_before_the_first_stride() -> None:
    # `--d-fine-layers N`: N 3x3 stride-1 convs of half D's first width at full size, after the input
    # view (image+fine: 6 channels) and before the first stride-2 conv; 0 leaves D's keys as they were.
    base = Discriminator(32, 8, 3, d_input="image+fine")
    assert base.state_dict().keys() == Discriminator(32, 8, 3, d_input="image+fine",
                                                     fine_layers=0).state_dict().keys()
    for arch in ("dcgan", "sngan"):
        D = Discriminator(32, 8, 3, arch=arch, d_input="image+fine", fine_layers=2)
        assert D(torch.randn(3, 3, 32, 32)).shape == (3,)
        convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
        assert [(c.in_channels, c.out_channels, c.stride) for c in convs[:3]] == [
            (6, 4, (1, 1)), (4, 4, (1, 1)), (4, 8, (2, 2))]


def test_noise_inputs_start_silent_and_reach_every_normalised_map() -> None:
    # One noise map per BatchNorm on maps up to a quarter of the image (4 and 8 px at 32 px, not the
    # 16 px map before the last upsampling, nor the full-size one of the RGB conv), carried in the
    # latent after z; the per-channel strengths start at 0, so at init the maps change nothing.
    G = Generator(64, 16, 8, 3, upsample="resize", noise=True)
    assert G.noise_sizes == [4, 8, 16] and G.latent_dim == 16 + 16 + 64 + 256
    assert Generator(32, 16, 8, 3, rgb_layer="conv", noise=True).noise_sizes == [4, 8]
    assert Generator(160, 16, 8, 3, noise=True).noise_sizes == [5, 10, 20, 40]
    G.eval()
    z = torch.randn(2, G.latent_dim)
    other = torch.cat([z[:, :16], torch.randn(2, G.latent_dim - 16)], dim=1)
    assert torch.equal(G(z), G(other))
    strengths = [m.strength for m in G.modules() if isinstance(m, NoiseInput)]
    assert len(strengths) == 3 and all(torch.equal(s, torch.zeros_like(s)) for s in strengths)
    G(z).sum().backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in strengths)
    with torch.no_grad():
        strengths[-1].fill_(1.0)
    assert not torch.equal(G(z), G(other))
    with pytest.raises(ValueError, match="latents of 352 numbers, got 16"):
        G(torch.randn(2, 16))
    conditional = Generator(32, 16, 8, 3, num_classes=2, noise=True).eval()
    assert conditional(torch.randn(2, conditional.latent_dim), torch.tensor([0, 1])).shape == (2, 3, 32, 32)


def test_d_input_image_fine_shows_d_the_fine_detail_as_more_channels() -> None:
    # `--d-input image+fine`: D's first conv sees the image and its fine detail (the image minus the
    # Gaussian low-pass of dcgan.bands, the C2ST's fine view): twice the channels, no other weights.
    from dcgan.bands import coarse

    x = torch.rand(2, 3, 16, 16) * 2 - 1
    out = WithFineDetail()(x)
    assert out.shape == (2, 6, 16, 16) and torch.equal(out[:, :3], x)
    assert torch.allclose(out[:, 3:] + coarse(x), x, atol=1e-6)
    assert WithFineDetail()(torch.full((1, 3, 16, 16), 0.3))[:, 3:].abs().max() < 1e-6  # flat: no detail
    plain, both = Discriminator(32, 8, 3), Discriminator(32, 8, 3, d_input="image+fine")
    count = [sum(p.numel() for p in d.parameters()) for d in (plain, both)]
    assert count[1] - count[0] == 3 * 8 * 4 * 4  # the first conv's three extra input channels
    assert both.main[1].in_channels == 6 and plain.main[0].in_channels == 3
    image = torch.randn(2, 3, 32, 32, requires_grad=True)
    both(image).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="d_input 'edges'"):
        Discriminator(32, d_input="edges")


def test_spectrum_head_reads_each_images_power_by_scale() -> None:
    # `--d-spectrum`: log power per colour channel in 16 rings of spatial frequency; a stripe of a
    # 4 px period (frequency 0.25) raises the ring that holds 0.25 and leaves the others as they were;
    # a flat image has no power in any ring (the mean colour is left to the convs).
    head = SpectrumHead(32, 3)
    torch.manual_seed(0)
    noise = torch.randn(2, 3, 32, 32) * 0.1
    stripes = noise + 0.5 * torch.cos(torch.arange(32) * torch.pi / 2)[None, None, :, None]
    plain, striped = head.spectra(noise).view(2, 3, 16), head.spectra(stripes).view(2, 3, 16)
    rises = (striped - plain).mean((0, 1))
    ring = int(rises.argmax())
    assert rises[ring] > 3 and float(rises.abs().sort().values[-2]) < 0.5
    radius = 0.25
    edges = torch.logspace(math.log10(1 / 32), math.log10(math.sqrt(0.5)), 17)
    assert edges[ring] < radius <= edges[ring + 1]
    assert head.spectra(torch.full((1, 3, 32, 32), 0.4)).max() < math.log(1e-5)


def test_d_spectrum_adds_the_heads_logit_and_tells_excess_mid_scale_power() -> None:
    # D's logit with the head is D's own plus the head's; G gets a gradient through the FFT (also
    # under bf16 autocast); without the flag D's weights (and older checkpoints) are unchanged.
    torch.manual_seed(0)
    for arch in ("dcgan", "sngan"):
        plain, both = Discriminator(32, 8, 3, arch=arch), Discriminator(32, 8, 3, arch=arch, spectrum=True)
        extra = set(both.state_dict()) - set(plain.state_dict())
        assert extra and all(k.startswith("spectrum.") for k in extra)
        assert set(plain.state_dict()) <= set(both.state_dict())
        both.load_state_dict(plain.state_dict(), strict=False)
        plain.eval(), both.eval()
        x = torch.randn(4, 3, 32, 32, requires_grad=True)
        assert torch.allclose(both(x), plain(x) + both.spectrum(x), atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = both(x)
        out.float().sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
    # The head alone learns, in 150 Adam steps, to tell noise with extra power at 4-12 px periods
    # from plain noise of the same pixel spread: what the fakes carried at 2,000 steps.
    from dcgan.bands import coarse

    def images(extra_mid: float) -> torch.Tensor:
        white = torch.randn(64, 3, 32, 32)
        mid = coarse(torch.randn(64, 3, 32, 32), 1.5)  # white noise low-passed: periods of 4 px and up
        x = white + extra_mid * mid / mid.std()
        return x / x.std((1, 2, 3), keepdim=True)

    head = SpectrumHead(32, 3)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    for _ in range(150):
        logits = head(torch.cat([images(0.0), images(0.5)]))
        target = torch.cat([torch.ones(64), torch.zeros(64)])
        loss = nn.functional.binary_cross_entropy_with_logits(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = ((head(images(0.0)) > 0).float().mean() + (head(images(0.5)) <= 0).float().mean()) / 2
    assert accuracy > 0.9


@pytest.mark.parametrize("arch", ["dcgan", "sngan"])
def test_d_coarse_adds_a_second_logit_that_sees_only_the_downscaled_image(arch: str) -> None:
    # Column 0 is D's own logit (the same weights give the same value with and without the head);
    # column 1 the coarse head's, blind to texture that averages out over each 4x4 block and not to
    # a change of colour. Off, D's weights are unchanged (older checkpoints load).
    torch.manual_seed(0)
    plain = Discriminator(32, 8, 3, arch=arch, d_input="image+fine" if arch == "dcgan" else "image")
    both = Discriminator(32, 8, 3, arch=arch, d_input="image+fine" if arch == "dcgan" else "image", coarse=4)
    extra = set(both.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("coarse.") for k in extra)
    assert set(plain.state_dict()) <= set(both.state_dict())
    both.load_state_dict(plain.state_dict(), strict=False)
    plain.eval(), both.eval()
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    out = both(x)
    assert out.shape == (4, 2)
    assert torch.allclose(out[:, 0], plain(x), atol=1e-5)
    checker = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(16, 16) * 0.3  # mean 0 over each 4x4 block
    textured = both(x + checker)
    assert torch.allclose(textured[:, 1], out[:, 1], atol=1e-4)
    assert (textured[:, 0] - out[:, 0]).abs().max() > 1e-3
    tinted = x.clone()
    tinted[:, 1] += 0.3
    assert (both(tinted)[:, 1] - out[:, 1]).abs().max() > 1e-3
    x.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = both(x)
    logits[:, 1].float().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    conditional = Discriminator(32, 8, 3, arch=arch, num_classes=3, coarse=4)
    assert conditional(x.detach(), torch.tensor([0, 1, 2, 0])).shape == (4, 2)


@pytest.mark.parametrize(("resolution", "factor", "convs", "last_kernel"),
                         [(64, 4, 3, 4), (160, 4, 4, 5), (160, 8, 3, 5), (256, 4, 5, 4), (32, 2, 3, 4)])
def test_coarse_head_halves_down_to_7_px_or_less_then_reads_the_rest_at_once(
        resolution: int, factor: int, convs: int, last_kernel: int) -> None:
    head = CoarseHead(resolution, factor, 8)
    layers = [m for m in head.net if isinstance(m, nn.Conv2d)]
    assert len(layers) == convs and layers[-1].kernel_size == (last_kernel, last_kernel)
    assert head(torch.randn(2, 3, resolution, resolution)).shape == (2,)
    with pytest.raises(ValueError, match="coarse factor 3"):
        CoarseHead(64, 3, 8)
    # Widths double per halving, capped as D's own (8x the first): at 256 / 2 a 128 px view.
    widths = [m.out_channels for m in CoarseHead(256, 2, 8).net if isinstance(m, nn.Conv2d)]
    assert widths == [8, 16, 32, 64, 64, 1]
