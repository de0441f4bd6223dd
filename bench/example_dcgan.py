#!/usr/bin/env python3
"""The reference for bench/train_speed.py: pytorch/examples' dcgan/main.py, as it trains on a folder.

Rewritten here (not copied) from github.com/pytorch/examples dcgan/main.py (read at commit 77f55b9,
Aug 2025) so that the speed comparison times the example's real work and nothing of ours:
torchvision ImageFolder with Resize + CenterCrop + ToTensor + Normalize(0.5), a DataLoader
(shuffle, 2 workers) decoding the JPEGs every epoch; the same Sequential G and D (transposed convs +
BatchNorm + ReLU + Tanh; strided convs + BatchNorm + LeakyReLU + Sigmoid), N(0, 0.02) init, BCELoss,
Adam(lr 2e-4, betas (0.5, 0.999)) for both; per batch: D on the reals and backward, D on G(z).detach()
and backward, D step; then D on the same fakes for G's loss (with D's weight gradients computed, as
the example does), G step; five `.item()` host reads and one printed line per batch; real and fake
sample grids every 100 batches (the fakes of `fixed_noise`, G in train mode); G and D saved after
every epoch. fp32 on the CPU, as the example runs without an accelerator.

Usage (the folder needs one subfolder level, as ImageFolder wants):
    python bench/example_dcgan.py --dataroot FOLDER --niter 4 [--batchSize 64] [--outf OUT]
"""

from __future__ import annotations

import argparse
import os
import random

import torch
import torchvision.datasets as dset
import torchvision.transforms as transforms
import torchvision.utils as vutils
from torch import nn


def weights_init(m: nn.Module) -> None:
    name = m.__class__.__name__
    if "Conv" in name:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def generator(nz: int, ngf: int, nc: int) -> nn.Module:
    def up(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]

    return nn.Sequential(nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8),
                         nn.ReLU(True), *up(ngf * 8, ngf * 4), *up(ngf * 4, ngf * 2), *up(ngf * 2, ngf),
                         nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())


class Discriminator(nn.Module):
    def __init__(self, ndf: int, nc: int):
        super().__init__()

        def down(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out),
                    nn.LeakyReLU(0.2, inplace=True)]

        self.main = nn.Sequential(nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
                                  *down(ndf, ndf * 2), *down(ndf * 2, ndf * 4), *down(ndf * 4, ndf * 8),
                                  nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1, 1).squeeze(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataroot", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batchSize", type=int, default=64)
    ap.add_argument("--imageSize", type=int, default=64)
    ap.add_argument("--nz", type=int, default=100)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--ndf", type=int, default=64)
    ap.add_argument("--niter", type=int, default=25, help="epochs")
    ap.add_argument("--lr", type=float, default=0.0002)
    ap.add_argument("--beta1", type=float, default=0.5)
    ap.add_argument("--outf", default=".")
    ap.add_argument("--manualSeed", type=int, default=None)
    opt = ap.parse_args()
    print(opt)
    os.makedirs(opt.outf, exist_ok=True)
    if opt.manualSeed is None:
        opt.manualSeed = random.randint(1, 10000)
    random.seed(opt.manualSeed)
    torch.manual_seed(opt.manualSeed)
    device = torch.device("cpu")

    dataset = dset.ImageFolder(root=opt.dataroot, transform=transforms.Compose([
        transforms.Resize(opt.imageSize), transforms.CenterCrop(opt.imageSize), transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=opt.batchSize, shuffle=True,
                                         num_workers=opt.workers)
    nz = opt.nz
    netG = generator(nz, opt.ngf, 3).to(device)
    netG.apply(weights_init)
    netD = Discriminator(opt.ndf, 3).to(device)
    netD.apply(weights_init)
    criterion = nn.BCELoss()
    fixed_noise = torch.randn(opt.batchSize, nz, 1, 1, device=device)
    optD = torch.optim.Adam(netD.parameters(), lr=opt.lr, betas=(opt.beta1, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=opt.lr, betas=(opt.beta1, 0.999))

    for epoch in range(opt.niter):
        for i, data in enumerate(loader):
            netD.zero_grad()
            real = data[0].to(device)
            b = real.size(0)
            label = torch.full((b,), 1.0, dtype=real.dtype, device=device)
            output = netD(real)
            err_d_real = criterion(output, label)
            err_d_real.backward()
            d_x = output.mean().item()

            noise = torch.randn(b, nz, 1, 1, device=device)
            fake = netG(noise)
            label.fill_(0.0)
            output = netD(fake.detach())
            err_d_fake = criterion(output, label)
            err_d_fake.backward()
            d_g_z1 = output.mean().item()
            err_d = err_d_real + err_d_fake
            optD.step()

            netG.zero_grad()
            label.fill_(1.0)
            output = netD(fake)
            err_g = criterion(output, label)
            err_g.backward()
            d_g_z2 = output.mean().item()
            optG.step()

            print(f"[{epoch}/{opt.niter}][{i}/{len(loader)}] Loss_D: {err_d.item():.4f} "
                  f"Loss_G: {err_g.item():.4f} D(x): {d_x:.4f} D(G(z)): {d_g_z1:.4f} / {d_g_z2:.4f}")
            if i % 100 == 0:
                vutils.save_image(real, f"{opt.outf}/real_samples.png", normalize=True)
                fake = netG(fixed_noise)
                vutils.save_image(fake.detach(), f"{opt.outf}/fake_samples_epoch_{epoch:03d}.png",
                                  normalize=True)
        torch.save(netG.state_dict(), f"{opt.outf}/netG_epoch_{epoch}.pth")
        torch.save(netD.state_dict(), f"{opt.outf}/netD_epoch_{epoch}.pth")


if __name__ == "__main__":
    main()
