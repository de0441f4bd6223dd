"""One training cycle: D update(s), then a G update, on this process's slice of the global batch.

Every source of randomness (weights, batch order, latents, augmentation and penalty noise) comes
from state that the checkpoint stores, and nothing else touches the RNGs, so N steps + resume to 2N
gives bit-identical weights to 2N steps in one go. Under torchrun, every rank draws the same global
batch indices and latents and takes its own slice (distributed.py).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import torch
from torch import nn

from ..architectures import build_models
from ..diffaug import ADA_INTERVAL, AdaptiveAugment, make_augment, parse_policy
from ..errors import UserError
from ..fastgan import FewShotDiscriminator, FewShotGenerator
from ..losses import GRADIENT_PENALTIES, LOSSES, mode_seeking
from ..models import Discriminator, Generator
from ..options import TrainOptions
from ..spec import RunSpec
from .checkpoint import rng_state, set_rng_state
from .dataset import BatchOrder, ImageSet
from .distributed import DistInfo, all_sum, device_for, resolve_device

# Latents whose batch statistics become the EMA generator's BatchNorm statistics (calibrate_ema):
# enough for stable per-channel statistics, cheap enough for every grid and checkpoint (docs/performance.md).
CALIBRATION_IMAGES = 512
CALIBRATION_BATCH = 64


V = TypeVar("V")


class StepStats(NamedTuple, Generic[V]):
    """What one training cycle reports. `Trainer.train_step` returns these stacked, in this order,
    as one float tensor, so that the loop sums them on the device without waiting for it;
    `StepStats(*values.tolist())` names them again. The losses come first (`LOSSES`)."""

    loss_d: V
    loss_g: V
    d_real: V  # D's mean output (logit) on the real batch
    d_fake: V  # ... and on the generated one

    LOSSES = slice(0, 2)  # loss_d and loss_g in the stacked tensor: the values that must stay finite


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 dot products (AVX512-BF16 or AMX), where autocast pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "fp32":
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return precision == "bf16" or cpu_supports_bf16()


@dataclass
class Trainer:
    """Models (raw, and as trained: DDP-wrapped and/or compiled), optimizers, data and latent streams."""

    spec: RunSpec
    data: ImageSet
    device: torch.device
    dist: DistInfo
    G: Generator | FewShotGenerator
    D: Discriminator | FewShotDiscriminator
    G_train: nn.Module  # G as called in training (DDP and/or torch.compile around G)
    D_train: nn.Module
    G_ema: Generator | FewShotGenerator | None
    opt_g: torch.optim.Adam
    opt_d: torch.optim.Adam
    order: BatchOrder
    latent_gen: torch.Generator
    bf16: bool
    augment: Callable[[torch.Tensor], torch.Tensor] | AdaptiveAugment | None
    step: int = 0
    stop_signal: int | None = None
    ema_calibrated_at: int = -1  # the step whose EMA weights G_ema's BatchNorm statistics belong to

    @property
    def options(self) -> TrainOptions:
        """The run's settled options (`spec.options`)."""
        return self.spec.options

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def describe_compute(self) -> str:
        """For log.txt: the precision and why, whether compiled, memory format, CPU threads."""
        if self.device.type == "cuda":
            why = f"--precision {self.options.precision}"
        elif self.options.precision == "auto":
            why = "auto: this CPU has " + ("native bf16" if cpu_supports_bf16() else "no native bf16")
        else:
            why = f"--precision {self.options.precision}" + (
                "; this CPU has native bf16" if cpu_supports_bf16() else "; this CPU has no native bf16")
        parts = [f"{'bf16 autocast' if self.bf16 else 'fp32'} ({why})",
                 "torch.compile" if self.options.compile else "not compiled",
                 "channels_last" if self.options.channels_last else "contiguous (NCHW)"]
        if self.device.type == "cpu":
            threads = torch.get_num_threads()
            parts.append(f"{threads} CPU thread{'s' if threads != 1 else ''}")
        return ", ".join(parts)

    # -- data ------------------------------------------------------------------------------
    def real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This rank's slice of the next global batch, as floats in [-1, 1], and its labels."""
        idx = self.order.next(self.options.batch_size)[self.dist.local_slice(self.options.batch_size)]
        x = self.data.batch(idx)
        y = self.data.labels[idx] if self.num_classes else None
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
            y = y.to(self.device) if y is not None else None
        x = x.float().div_(127.5).sub_(1.0)  # uint8 travels; normalised on the device
        return (x.contiguous(memory_format=torch.channels_last) if self.options.channels_last else x), y

    def latents(self) -> torch.Tensor:
        """This rank's slice of the global batch's latents (all ranks draw the same global ones)."""
        z = torch.randn(self.options.batch_size, self.G.latent_dim, generator=self.latent_gen)
        return z[self.dist.local_slice(self.options.batch_size)].to(self.device)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast for G and D; the losses and penalties are computed on `.float()` outputs.

        BatchNorm takes and returns bf16 under autocast, but PyTorch's kernels accumulate its batch
        mean and variance in fp32 and keep the running statistics and affine weights in fp32; an fp32
        output would be cast back to bf16 by the next convolution anyway, so forcing one would only
        add two casts per layer.
        """
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def augment_stats(self) -> dict[str, float]:
        """For stats.jsonl: the adaptive augmentation's probability (none without --ada-target)."""
        return {"augment_p": float(self.augment.p)} if isinstance(self.augment, AdaptiveAugment) else {}

    def aug(self, x: torch.Tensor) -> torch.Tensor:
        return self.augment(x) if self.augment is not None else x

    # -- one cycle -------------------------------------------------------------------------
    def d_update(self, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None,
                 d_index: int = 0) -> tuple[torch.Tensor, ...]:
        """One D step; `d_index` counts D updates since the start (it decides a lazy penalty)."""
        options, loss_fn = self.options, LOSSES[self.options.loss]
        real_in, fake_in = self.aug(real), self.aug(fake.detach())
        with self.autocast():
            rebuilt = None
            if getattr(self.D, "reconstructs", False):  # a few-shot D also rebuilds the reals (dcgan.fastgan)
                d_real, rebuilt = self.D_train(real_in, y, reconstruct=True)
            else:
                d_real = self.D_train(real_in, y)
            d_real, d_fake = d_real.float(), self.D_train(fake_in, y).float()
        loss_d = loss_fn.d(d_real, d_fake, options.label_smoothing)
        if isinstance(self.augment, AdaptiveAugment):
            self.augment.observe(loss_fn.realness(d_real, d_fake), real_in.shape[0])
        if rebuilt is not None:
            loss_d = loss_d + rebuilt.float()
        penalty = GRADIENT_PENALTIES[options.gp]
        if penalty is not None and d_index % options.gp_every == 0:
            # fp32, raw D: double backward through DDP/compile is not supported
            gp = penalty(lambda v: self.D(v, y), real_in.float(), fake_in.float())
            loss_d = loss_d + options.gp_weight * options.gp_every * gp
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        return loss_d.detach(), d_real.detach().mean(), d_fake.detach().mean()

    def g_update(self, real: torch.Tensor, fake: torch.Tensor, z: torch.Tensor,
                 y: torch.Tensor | None) -> torch.Tensor:
        loss_fn = LOSSES[self.options.loss]
        # G's step needs no gradients for D's weights (a third less work), and calls the raw D:
        # D's DDP wrapper would wait for gradients that never come.
        self.D.requires_grad_(False)
        try:
            with self.autocast():
                d_fake = self.D(self.aug(fake), y).float()
                d_real = None
                if loss_fn.g_needs_real:
                    with torch.no_grad():
                        d_real = self.D(self.aug(real), y).float()
            loss_g = loss_fn.g(d_real, d_fake)
            if self.options.mode_seeking > 0:
                loss_g = loss_g + self.options.mode_seeking * mode_seeking(fake, z)
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()
        finally:
            self.D.requires_grad_(True)
        return loss_g.detach()

    def train_step(self) -> torch.Tensor:
        """One cycle; returns this rank's `StepStats`, stacked (no host sync)."""
        first = self.step * self.options.d_steps  # D updates before this cycle: a lazy penalty's clock
        for i in range(self.options.d_steps - 1):
            real, y = self.real_batch()
            with torch.no_grad(), self.autocast():
                fake = self.G_train(self.latents(), y)
            self.d_update(real, fake, y, first + i)
        real, y = self.real_batch()
        z = self.latents()
        with self.autocast():
            fake = self.G_train(z, y)  # fake labels = the real batch's labels
        loss_d, d_real, d_fake = self.d_update(real, fake, y, first + self.options.d_steps - 1)
        loss_g = self.g_update(real, fake, z, y)  # reuses this fake, as the DCGAN reference does
        self.update_ema()
        self.step += 1
        if isinstance(self.augment, AdaptiveAugment) and self.step % ADA_INTERVAL == 0:
            self.augment.adjust(functools.partial(all_sum, info=self.dist))
        return torch.stack(StepStats(loss_d, loss_g, d_real, d_fake)).float()

    @torch.no_grad()
    def update_ema(self) -> None:
        """EMA of G's weights; the decay warms up as (1+t)/(10+t) so early samples are not the init."""
        if self.G_ema is None:
            return
        decay = min(self.options.ema, (1 + self.step) / (10 + self.step))
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - decay)
        ema_power, power = self._power_vectors
        if power:
            torch._foreach_copy_(ema_power, power)

    @functools.cached_property
    def _power_vectors(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """G_ema's and G's spectral-norm power-iteration vectors (a G with spectral norm: --arch fastgan),
        found once: loading a checkpoint copies into these same tensors.

        They follow G's at every EMA update, as StyleGAN copies its buffers: the EMA weights are close to
        G's, and the EMA copy never runs a training forward of its own that would iterate them.
        """
        assert self.G_ema is not None
        pairs = [(mine, theirs) for (name, mine), theirs in zip(self.G_ema.named_buffers(), self.G.buffers(),
                                                                strict=True) if ".parametrizations." in name]
        return [a for a, _ in pairs], [b for _, b in pairs]

    @torch.no_grad()
    def calibrate_ema(self) -> None:
        """Recompute the EMA generator's BatchNorm statistics for its own (averaged) weights.

        Copying G's running statistics would pair them with weights they were not measured on, which
        made the EMA samples worse than the raw G's; calibrated, the EMA G beats its raw G
        (docs/quality.md). So, as BigGAN's "standing statistics" do, run CALIBRATION_IMAGES latents
        from a fixed stream through the EMA generator in train mode and keep the cumulative mean and
        variance. The result depends only on the weights, so resumed runs stay exact, and no training
        RNG is consumed.
        """
        if self.G_ema is None or self.ema_calibrated_at == self.step:
            return
        norms = [m for m in self.G_ema.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        gen = torch.Generator().manual_seed(self.options.seed + 2)
        for m in norms:  # only the BatchNorms: a spectral norm in train mode would iterate its vectors
            m.train()
        try:
            for _ in range(CALIBRATION_IMAGES // CALIBRATION_BATCH):
                z = torch.randn(CALIBRATION_BATCH, self.G.latent_dim, generator=gen).to(self.device)
                y = (torch.randint(0, self.num_classes, (CALIBRATION_BATCH,), generator=gen).to(self.device)
                     if self.num_classes else None)
                self.G_ema(z, y)
        finally:
            for m, momentum in zip(norms, momenta, strict=True):
                m.eval()
                m.momentum = momentum
        self.ema_calibrated_at = self.step

    # -- samples and checkpoints -----------------------------------------------------------
    @torch.no_grad()
    def sample(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images of the EMA generator (or G) in eval mode for latents z: float in [-1, 1] on CPU."""
        self.calibrate_ema()
        G = self.G_ema if self.G_ema is not None else self.G
        was_training = G.training
        G.eval()
        try:
            ys = y.split(64) if y is not None else [None] * len(z.split(64))
            return torch.cat([G(zc.to(self.device), None if yc is None else yc.to(self.device)).float().cpu()
                              for zc, yc in zip(z.split(64), ys, strict=True)])
        finally:
            G.train(was_training)

    def state_dict(self) -> dict[str, Any]:
        self.calibrate_ema()
        return {
            "step": self.step,
            **self.spec.checkpoint_fields(),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": rng_state(),
            "latent_rng": self.latent_gen.get_state(),
            "batch_order": self.order.state_dict(),
            "world_size": self.dist.world,
            "augment": self.augment.state_dict() if isinstance(self.augment, AdaptiveAugment) else None,
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.G.load_state_dict(ckpt["G"])
        self.D.load_state_dict(ckpt["D"])
        if self.G_ema is not None and ckpt.get("G_ema") is not None:
            self.G_ema.load_state_dict(ckpt["G_ema"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        set_rng_state(ckpt["rng"])
        self.latent_gen.set_state(ckpt["latent_rng"])
        self.order.load_state_dict(ckpt["batch_order"])
        self.step = int(ckpt["step"])
        if isinstance(self.augment, AdaptiveAugment) and ckpt.get("augment") is not None:
            self.augment.load_state_dict(ckpt["augment"])
        self.ema_calibrated_at = -1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_trainer(spec: RunSpec, data: ImageSet, dist: DistInfo | None = None) -> Trainer:
    """Models, optimizers and streams for `spec`, freshly initialised from its seed."""
    dist = dist or DistInfo()
    options = spec.options
    device = device_for(dist, resolve_device(options.device))
    seed_everything(options.seed)
    G, D = build_models(spec)
    # The EMA copy keeps plain BatchNorm even under --sync-bn: it only runs on rank 0 (samples,
    # checkpoints), where a SyncBatchNorm would wait for the other ranks.
    G_ema = copy.deepcopy(G).requires_grad_(False) if options.ema > 0 else None
    if dist.enabled and options.sync_bn:
        if device.type != "cuda":
            raise UserError("--sync-bn needs CUDA devices (SyncBatchNorm has no CPU kernel); on CPU each "
                            "process normalises with the statistics of its own part of the batch")
        G = nn.SyncBatchNorm.convert_sync_batchnorm(G)
        D = nn.SyncBatchNorm.convert_sync_batchnorm(D)
    memory_format = torch.channels_last if options.channels_last else torch.contiguous_format
    G, D = G.to(device, memory_format=memory_format), D.to(device, memory_format=memory_format)
    if G_ema is not None:
        G_ema = G_ema.to(device, memory_format=memory_format).eval()
    G_train, D_train = _wrap(G, dist, device, options.compile), _wrap(D, dist, device, options.compile)
    betas = (options.beta1, options.beta2)
    return Trainer(
        spec=spec, data=data, device=device, dist=dist, G=G, D=D, G_train=G_train, D_train=D_train,
        G_ema=G_ema,
        opt_g=torch.optim.Adam(G.parameters(), lr=options.lr_g, betas=betas),
        opt_d=torch.optim.Adam(D.parameters(), lr=options.lr_d, betas=betas),
        order=BatchOrder(len(data), options.seed),
        latent_gen=torch.Generator().manual_seed(options.seed + 1),
        bf16=use_bf16(options.precision, device),
        augment=(AdaptiveAugment(parse_policy(options.diffaug), options.ada_target, options.ada_kimg, device)
                 if options.ada_target else make_augment(options.diffaug)))


def _wrap(module: nn.Module, dist: DistInfo, device: torch.device, compile_: bool) -> nn.Module:
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # Buffers (BatchNorm statistics, spectral-norm vectors) follow rank 0's at each forward.
        module = DDP(module, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(module) if compile_ else module
