"""How much of the machine one computation takes: the cores this process may use, and the memory
of one block of a blocked pairwise computation (distances, embedding stress)."""

from __future__ import annotations

import os

# Working memory of one row block: the (rows x N) block of a pairwise computation is cut to this
# size, so 10,000 images need the result matrix plus one block, not a temporary of N x N x k.
BLOCK_BYTES = 64 * 2**20


def cpu_count() -> int:
    """Cores this process may use (respects taskset/cgroup affinity where the OS reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
