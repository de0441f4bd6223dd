"""Run by tests/test_distributed.py under torchrun: train, then save this rank's weights.

Usage: torchrun --standalone --nproc_per_node=2 tests/ddp_worker.py DATA OUT DUMP_DIR [flags...]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dcgan.options import TrainOptions, merge_options
from dcgan.training import loop


def main() -> None:
    data, out, dump = sys.argv[1:4]
    flags = dict(zip(sys.argv[4::2], sys.argv[5::2], strict=True))
    values = {k.lstrip("-").replace("-", "_"): (int(v) if v.isdigit() else v) for k, v in flags.items()}
    opts = merge_options(TrainOptions(), {}, {"training_images": data, "output_dir": out, **values})
    # Keep this rank's trainer as the loop builds it, to read its weights once training is over.
    built, build = [], loop.build_trainer
    loop.build_trainer = lambda *args, **kwargs: built.append(build(*args, **kwargs)) or built[-1]
    loop.train(opts, progress=False)
    (trainer,) = built
    state = {f"{name}.{k}": v for name, m in (("G", trainer.G), ("D", trainer.D), ("G_ema", trainer.G_ema))
             if m is not None for k, v in m.state_dict().items()}
    if hasattr(trainer.augment, "p"):  # adaptive augmentation: p must move alike on every rank
        state["augment.p"] = trainer.augment.p
    torch.save(state, Path(dump) / f"rank{os.environ['RANK']}.pt")


if __name__ == "__main__":
    main()
