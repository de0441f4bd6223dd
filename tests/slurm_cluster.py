"""A real one-host SLURM cluster for tests: munged, slurmctld and slurmd of Debian's slurm-wlm.

`SlurmCluster` writes a munge key and a minimal slurm.conf (this host as the only node, on
127.0.0.1, daemons on free ports, all state in a temporary folder), starts the three daemons as
children of the test process and stops them again; nothing in /etc is used or changed.
`SlurmCluster.unavailable()` says why no cluster can be started here (then the tests skip).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel", "sinfo", "squeue")
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
            "DEADLINE", "PREEMPTED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """One node (this host, named as `hostname -s` says, reached at 127.0.0.1) with `cpus` CPUs."""

    def __init__(self, cpus: int = 4) -> None:
        # Not under pytest's tmp_path: munged insists that every folder above its socket be
        # searchable by all, and pytest's base folder is private (0700).
        self.root = Path(tempfile.mkdtemp(prefix="isic-slurm-"))
        self.root.chmod(0o755)
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.cpus = cpus

    @staticmethod
    def unavailable() -> str | None:
        """Why no cluster can start here, or None."""
        missing = [d for d in COMMANDS if shutil.which(d) is None]
        if missing:
            return (f"{', '.join(missing)} not found: apt-get install slurm-wlm munge "
                    "(.ci/run does)")
        if os.geteuid() != 0:
            return "slurmd must run as root to start jobs (CI runs as root)"
        return None

    def start(self, timeout: float = 60) -> None:
        munge = self.root / "munge"
        (munge / "key").mkdir(parents=True, mode=0o700)
        munge.chmod(0o755)
        key = munge / "key" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        socket_path = munge / "munge.socket"
        self._spawn(["munged", "--foreground", f"--socket={socket_path}", f"--key-file={key}",
                     f"--pid-file={munge / 'munged.pid'}", f"--seed-file={munge / 'munged.seed'}",
                     f"--log-file={munge / 'munged.log'}"], "munged")
        self._until(socket_path.exists, timeout, "munged did not create its socket")
        for d in ("state", "spool"):
            (self.root / d).mkdir(mode=0o755)
        self.conf.write_text(self._slurm_conf(socket_path))
        self._spawn(["slurmctld", "-D", "-i"], "slurmctld")
        self._spawn(["slurmd", "-D", "-N", self.node], "slurmd")
        self._until(lambda: self.node_state() == "idle", timeout,
                    "the node did not come up idle")

    def _slurm_conf(self, munge_socket: Path) -> str:
        r = self.root
        # cred_expire=10: a requeued job waits that long before it may start again (default 120 s);
        # sched_interval=2: and is then started within 2 s (the scheduler's default pass is every 60 s).
        return f"""\
ClusterName=isictest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket},cred_expire=10
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={r / 'slurmctld.log'}
SlurmdLogFile={r / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdParameters=config_overrides
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN
PartitionName=test Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""

    def _spawn(self, cmd: list[str], name: str) -> None:
        with open(self.root / f"{name}.out", "wb") as out:
            self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                               cwd=self.root))

    def _until(self, ready: Callable[[], object], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"{what} ({', '.join(dead) + ' exited; ' if dead else ''}"
                                   f"logs in {self.root}): {self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, lines: int = 5) -> str:
        tails = []
        for log in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*/*.log")):
            tails += [f"{log.name}: {x}" for x in log.read_text(errors="replace").splitlines()[-lines:]]
        return " | ".join(tails)

    def run(self, *cmd: str) -> str:
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
        return proc.stdout

    def node_state(self) -> str:
        try:
            return self.run("sinfo", "--noheader", "-n", self.node, "-o", "%T").strip()
        except RuntimeError:
            return ""  # slurmctld not answering yet

    def job(self, job_id: str) -> dict[str, str]:
        """The job's fields as `scontrol show job` lists them (JobState, Restarts, ExitCode, ...)."""
        tries = 5
        while True:
            try:
                fields = self.run("scontrol", "show", "job", "--oneliner", job_id).split()
                return dict(f.split("=", 1) for f in fields if "=" in f)
            except RuntimeError:  # slurmctld can time out on a busy machine: ask again
                tries -= 1
                if not tries:
                    raise
                time.sleep(2)

    def wait(self, job_id: str, timeout: float) -> dict[str, str]:
        """Poll until the job has finished (sbatch --wait polls far more slowly); its fields."""
        deadline = time.monotonic() + timeout
        while (job := self.job(job_id))["JobState"] not in FINISHED:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['JobState']} after {timeout} s")
            time.sleep(0.3)
        return job

    def stop(self) -> None:
        """Cancel what still runs, stop the daemons (children of this process) and delete the state."""
        try:
            self.run("scancel", "--full", "--partition", "test")
            self._until(lambda: not self.run("squeue", "--noheader", "-t", "running,completing"), 30,
                        "jobs still running")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass  # the daemons may not have started at all
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
