#!/usr/bin/env python3
"""A one-node SLURM cluster on this machine: to try `snakemake --profile workflow/profiles/slurm` without a
cluster, and for the tests (tests/test_slurm.py).

    sudo python scripts/local_slurm.py start [--dir /tmp/featdefense-slurm] [--partition featdefense]
    sinfo; squeue
    sudo python scripts/local_slurm.py stop [--dir ...]

Needs root and Debian's `slurm-wlm` and `munge` (22.05): `apt-get install slurm-wlm munge`. Everything
lives in --dir (its own munge key and socket, state, logs and the daemons' process ids) except the
configuration, written where every SLURM command looks for it, /etc/slurm/slurm.conf: a job's `srun`
(Snakemake's jobstep plugin) does not see $SLURM_CONF, which it drops with the job's other SLURM_*
variables. A slurm.conf there that this script did not write is never overwritten (start refuses), and
stop removes the one it wrote. Free ports are picked; /etc/munge is not touched. The node is this
machine (`hostname -s`), with its cores and 90% of its memory; no accounting (no slurmdbd): job states
come from `squeue`, which keeps finished jobs for MinJobAge (an hour here). stop sends SIGTERM to the
daemons it started, by their process ids.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_DIR = Path("/tmp/featdefense-slurm")
CONF = Path("/etc/slurm/slurm.conf")  # where SLURM's commands look for it when $SLURM_CONF is not set
MARK = "# A one-node cluster written by scripts/local_slurm.py"
PARTITION = "featdefense"
PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "scancel")
MIN_JOB_AGE = 3600  # seconds squeue keeps a finished job: the plugin reads its state there


class Unavailable(RuntimeError):
    """SLURM cannot start on this machine (the reason is the message)."""


def unavailable() -> str | None:
    """Why a local SLURM cannot start here, or None."""
    if os.geteuid() != 0:
        return "the local SLURM needs root (its daemons run as root here)"
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (apt-get install slurm-wlm munge)"
    if CONF.is_file() and not CONF.read_text().startswith(MARK):
        return f"{CONF} exists (a SLURM configured here): not overwriting it"
    return None


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise Unavailable("cannot read MemTotal from /proc/meminfo")


def slurm_conf(root: Path, partition: str, node: str) -> str:
    ctld_port, d_port = _free_ports(2)
    return "\n".join([
        f"{MARK}: this machine, no accounting; its files are in {root}.",
        "ClusterName=featdefense",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={d_port}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root}/run/munge.socket",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/slurmctld.log",
        f"SlurmdLogFile={root}/slurmd.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "SchedulerType=sched/backfill",
        "MpiDefault=none",
        "ReturnToService=2",
        "AccountingStorageType=accounting_storage/none",
        "MailProg=/bin/true",
        "JobCompType=jobcomp/none",
        f"MinJobAge={MIN_JOB_AGE}",
        "KillWait=5",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={int(_memory_mb() * 0.9)} "
        "State=UNKNOWN",
        f"PartitionName={partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def environment(root: Path) -> dict[str, str]:
    """The variables SLURM's clients (sbatch, squeue, ...) need to talk to this cluster."""
    return {"SLURM_CONF": str(CONF)}


def _wait(what: str, ready, seconds: float, logs: list[Path]) -> None:
    """Until ready() says so; else Unavailable (a timeout, or what ready() raised) with the logs' tails."""
    deadline = time.time() + seconds
    try:
        while time.time() < deadline:
            if ready():
                return
            time.sleep(0.3)
        reason = f"{what} did not come up within {seconds:.0f} s"
    except Unavailable as e:
        reason = str(e)
    tails = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in logs if p.is_file())
    raise Unavailable(f"{reason}\n{tails}")


def start(root: Path = DEFAULT_DIR, partition: str = PARTITION) -> dict[str, str]:
    """Start munged, slurmctld and slurmd (in the foreground of their own sessions, so the ids recorded are
    the daemons'), wait until the node is idle, and return the clients' environment."""
    reason = unavailable()
    if reason:
        raise Unavailable(reason)
    if (root / "pids.json").is_file():
        stop(root)
    shutil.rmtree(root, ignore_errors=True)
    for sub, mode in (("", 0o755), ("run", 0o755), ("munge", 0o700), ("state", 0o700), ("spool", 0o755)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(root / sub, mode)  # munged wants its socket's folders open to all, its key's closed
    node = socket.gethostname().split(".")[0]
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(slurm_conf(root, partition, node))
    env = {**os.environ, **environment(root)}
    subprocess.run(["mungekey", "--create", "--keyfile", str(root / "munge/munge.key")], check=True)
    pids: dict[str, int] = {}

    def daemon(name: str, *cmd: str) -> None:
        out = open(root / f"{name}.out", "w")
        pids[name] = subprocess.Popen(list(cmd), env=env, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True).pid
        (root / "pids.json").write_text(json.dumps(pids))

    daemon("munged", "munged", "--foreground", f"--socket={root}/run/munge.socket",
           f"--key-file={root}/munge/munge.key", f"--log-file={root}/munge/munged.log",
           f"--pid-file={root}/munge/munged.pid", f"--seed-file={root}/munge/munge.seed")
    _wait("munged", lambda: (root / "run/munge.socket").exists(), 10, [root / "munged.out"])
    daemon("slurmctld", "slurmctld", "-D", "-c", "-f", str(CONF))
    daemon("slurmd", "slurmd", "-D", "-f", str(CONF))

    def idle() -> bool:
        dead = [name for name, pid in pids.items() if not _alive(pid)]
        if dead:
            raise Unavailable(f"{', '.join(dead)} exited at start-up")
        out = subprocess.run(["sinfo", "--noheader", "--format=%T"], env=env, capture_output=True, text=True)
        return out.returncode == 0 and out.stdout.strip() == "idle"

    logs = [root / f for f in ("slurmctld.out", "slurmd.out", "slurmctld.log", "slurmd.log")]
    try:
        _wait("the SLURM node", idle, 60, logs)
    except Unavailable:
        stop(root)
        raise
    return environment(root)


def stop(root: Path = DEFAULT_DIR) -> None:
    """SIGTERM to each daemon start() recorded (slurmd, slurmctld, munged), then SIGKILL to any left."""
    record = root / "pids.json"
    if not record.is_file():
        return
    pids = json.loads(record.read_text())
    for name in ("slurmd", "slurmctld", "munged"):
        if name in pids:
            _signal(pids[name], signal.SIGTERM)
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(p) for p in pids.values()):
        time.sleep(0.2)
    for pid in pids.values():
        _signal(pid, signal.SIGKILL)
    record.unlink()
    if CONF.is_file() and CONF.read_text().startswith(MARK):
        CONF.unlink()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # our child when started by this process: reap it
        if waited:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").is_file() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"where it all lives ({DEFAULT_DIR})")
    parser.add_argument("--partition", default=PARTITION, help=f"the partition's name ({PARTITION})")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            env = start(args.dir.resolve(), args.partition)
            print(f"SLURM is up: one node ({socket.gethostname().split('.')[0]}), partition {args.partition}.")
            print(f"Its configuration: {env['SLURM_CONF']}; its files and logs: {args.dir.resolve()}")
        else:
            stop(args.dir.resolve())
            print("SLURM stopped.")
    except Unavailable as e:
        print(f"local SLURM: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
