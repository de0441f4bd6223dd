"""slurm/train.sbatch on a real SLURM (tests/slurm_cluster.py: munged, slurmctld and slurmd on this host).

Two tasks on the one host stand for two nodes: the script starts one torchrun per task (`--nnodes 2`,
one process each, gloo, c10d rendezvous on 127.0.0.1). Skipped, with the reason, where slurm-wlm and
munge are not installed or the cluster does not start (`.ci/run` installs them).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from dcgan.training.checkpoint import load_checkpoint
from tests.conftest import REPO, TRAINING_DATA, checkpoint_tensors
from tests.slurm_cluster import SlurmCluster, free_port
from tests.test_distributed import torchrun

STEPS, BATCH = 60, 8
# No DiffAugment or penalty noise: then DDP draws nothing per rank, and a resumed 2-process run is
# bit-identical to an uninterrupted one (docs/usage.md, "Several processes or machines").
TRAIN = ["--resolution", "32", "--z-dim", "16", "--g-channels", "8", "--d-channels", "8", "--preset", "none",
         "--precision", "fp32", "--log-every", "1"]
RUN_FILES = [".lock", "checkpoint.pt", "log.txt", "loss_curve.png", "options.json", "samples", "stats.jsonl"]
JOB_TIMEOUT = 240


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    if why := SlurmCluster.unavailable():
        pytest.skip(why)
    slurm = SlurmCluster()
    try:
        slurm.start()
    except RuntimeError as err:
        slurm.stop()
        pytest.skip(f"SLURM did not start here: {err}")
    yield slurm
    slurm.stop()


@dataclass
class Job:
    id: str
    run: Path
    out: Path

    def output(self) -> str:
        return self.out.read_text()

    def brief(self) -> str:
        """The job's log without the indented lines of tracebacks (torchrun's, as it passes a signal on)."""
        return "\n".join(x for x in self.output().splitlines() if not x.startswith(" ") or "Error" in x)


def submit(cluster: SlurmCluster, run: Path) -> Job:
    """sbatch the script as a user would, with the 2 "nodes" on 127.0.0.1 and no GPUs."""
    out = run.with_suffix(".out")
    venv = Path(sys.executable).parent  # on PATH, as in a shell with the environment activated
    env = {**cluster.env, "PATH": f"{venv}:{os.environ['PATH']}",
           "RDZV_HOST": "127.0.0.1", "RDZV_PORT": str(free_port()), "PET_LOCAL_ADDR": "127.0.0.1",
           "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = ["sbatch", "--parsable", "--nodes=1", "--ntasks=2", "--ntasks-per-node=2", "--cpus-per-task=1",
           "--gres=none", f"--output={out}", "slurm/train.sbatch", str(TRAINING_DATA), str(STEPS),
           str(BATCH), str(run), *TRAIN]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return Job(proc.stdout.strip().split(";")[0], run, out)


@pytest.fixture(scope="module")
def uninterrupted(cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> tuple[Job, Path]:
    """A 2-node job run to the end and, at the same time, the same run under plain torchrun."""
    tmp = tmp_path_factory.mktemp("slurm")
    job = submit(cluster, tmp / "job")
    with ThreadPoolExecutor(1) as pool:
        local = pool.submit(torchrun, "gancontrol.py", "training", str(TRAINING_DATA), str(STEPS), str(BATCH),
                            str(tmp / "local"), *TRAIN, "--quiet")
        fields = cluster.wait(job.id, JOB_TIMEOUT)
        local.result()
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), job.brief() + cluster.log_tail()
    return job, tmp / "local"


def test_slurm_two_node_job_trains_like_torchrun_and_one_rank_writes(uninterrupted: tuple[Job, Path]) -> None:
    job, local = uninterrupted
    output = job.output()
    assert "training " in output and "on 2 node(s) x 1 process(es), rendezvous 127.0.0.1:" in output
    assert output.count(f"Trained to step {STEPS}") == 1, output  # rank 0 reports; rank 1 is silent
    assert sorted(p.name for p in job.run.iterdir()) == RUN_FILES
    log = (job.run / "log.txt").read_text()
    assert log.count("training on") == 1 and f"{STEPS} steps of {BATCH} on cpu x2" in log
    steps = [json.loads(x)["step"] for x in (job.run / "stats.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))  # one line per step: written by one rank
    ckpt = load_checkpoint(job.run)
    assert (ckpt["step"], ckpt["world_size"]) == (STEPS, 2)
    # Two nodes through SLURM train exactly what two local processes do.
    a, b = checkpoint_tensors(ckpt), checkpoint_tensors(load_checkpoint(local))
    assert a.keys() == b.keys() and len(a) > 20
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_slurm_pre_limit_signal_requeues_and_resumes_bit_identically(
        cluster: SlurmCluster, uninterrupted: tuple[Job, Path], tmp_path: Path) -> None:
    job = submit(cluster, tmp_path / "run")
    stats = job.run / "stats.jsonl"
    deadline = time.monotonic() + JOB_TIMEOUT
    while not stats.is_file() or len(stats.read_text().splitlines()) < 2:  # both ranks are in the loop
        assert time.monotonic() < deadline and cluster.job(job.id)["JobState"] in ("PENDING", "RUNNING")
        time.sleep(0.1)
    # What `#SBATCH --signal=B:USR1@120` does 120 s before the time limit: USR1 to the batch shell.
    cluster.run("scancel", "--batch", "--signal=USR1", job.id)
    fields = cluster.wait(job.id, JOB_TIMEOUT)
    output = job.output()
    state = (fields["JobState"], fields["ExitCode"], fields["Restarts"])
    assert state == ("COMPLETED", "0:0", "1"), job.brief() + cluster.log_tail()
    assert "USR1 (the time limit is near)" in output and "requeueing job" in output
    assert "forcefully exiting" not in output  # torchrun let the workers finish the step and checkpoint
    assert f"job {job.id} (restart 1): resume {job.run}" in output
    assert output.count(f"Trained to step {STEPS}") == 1
    log = (job.run / "log.txt").read_text()
    stopped = re.search(r"stopped by signal 10 at step (\d+); checkpoint written", log)
    assert stopped, log
    at = int(stopped[1])
    assert 2 <= at < STEPS and f"resuming {job.run} at step {at} of {STEPS} on 2 process(es)" in log
    # The step the signal came in has no stats line (the loop stops before logging it); none repeats.
    steps = [json.loads(x)["step"] for x in stats.read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS and len(steps) >= STEPS - 1
    ckpt = load_checkpoint(job.run)
    assert (ckpt["step"], ckpt["world_size"]) == (STEPS, 2)
    a, b = checkpoint_tensors(ckpt), checkpoint_tensors(load_checkpoint(uninterrupted[0].run))
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
