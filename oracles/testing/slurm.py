"""A real, throw-away, single-node SLURM on localhost for the scheduler tests and benchmarks.

Why a real one: psij talks to SLURM through ``sbatch``/``squeue``/``scancel`` and parses
their output; a mock of those commands would only test our own guess of that output.
So `LocalSlurm` starts munged, slurmctld and slurmd (all as root, all in a temp dir,
on free ports, with their own socket, state and logs, so a system SLURM or munge is
never touched), points ``SLURM_CONF`` at its config for this process and its children,
and stops everything at the end of the session.

Counting at the scheduler: slurmctld's log has one ``_slurm_rpc_submit_batch_job:
JobId=N`` line per accepted ``sbatch``, and ``JobCompType=jobcomp/filetxt`` writes one
line per finished job with its final state (COMPLETED, TIMEOUT, ...).

Site limits: with ``accounting`` (the default when ``slurmdbd`` and MariaDB are installed)
the cluster also runs a throw-away MariaDB and slurmdbd and enforces associations, limits
and QOS, as a real site does; `LocalSlurm.limit_submissions` then sets the per-user submit
limit of the ``normal`` QOS, so ``sbatch`` really answers ``QOSMaxSubmitJobPerUserLimit``.

The binaries come from Debian's ``slurm-wlm``, ``slurmdbd``, ``mariadb-server`` and
``munge`` (``scripts/install_slurm.sh``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from oracles.testing.lab import free_ports

__all__ = ["LocalSlurm", "has_accounting", "missing_binaries", "start_local_slurm"]

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel")
ACCOUNTING = ("slurmdbd", "sacctmgr", "mariadbd", "mariadb-install-db")


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


class LocalSlurm:
    """Handles to a running local SLURM: its folder, config, daemons and scheduler records."""

    def __init__(self, root: Path, partition: str = "debug", accounting: bool = False) -> None:
        self.root = root
        self.partition = partition
        self.accounting = accounting
        self.ctld_port, self.slurmd_port, self.db_port, self.dbd_port = free_ports(4)
        self.node = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.munge_socket = root / "munge" / "munge.socket"
        self.ctld_log = root / "slurmctld.log"
        self.slurmd_log = root / "slurmd.log"
        self.jobcomp = root / "jobcomp.txt"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {"SLURM_CONF": str(self.conf)}

    # -- set-up ---------------------------------------------------------------------
    def write_config(self) -> None:
        """A minimal slurm.conf: no cgroups, short timers (MinJobAge 30 s so finished jobs
        stay visible to ``squeue`` for one or two psij polls); accounting through slurmdbd
        with its limits enforced, or none."""
        for sub in ("munge", "state", "spool"):
            (self.root / sub).mkdir(mode=0o700, exist_ok=True)
        r = self.root
        self.conf.write_text(
            f"""\
ClusterName=innloop-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r / "state"}
SlurmdSpoolDir={r / "spool"}
SlurmctldPidFile={r / "slurmctld.pid"}
SlurmdPidFile={r / "slurmd.pid"}
SlurmctldLogFile={self.ctld_log}
SlurmdLogFile={self.slurmd_log}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
{self._accounting_lines()}
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp}
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
MinJobAge=30
KillWait=2
OverTimeLimit=0
InactiveLimit=0
SlurmdTimeout=30
SlurmctldTimeout=30
MessageTimeout=10
NodeName={self.node} NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        )

    def _accounting_lines(self) -> str:
        if not self.accounting:
            return "AccountingStorageType=accounting_storage/none"
        r = self.root
        dbd = r / "slurmdbd.conf"  # beside slurm.conf: slurmdbd finds it through SLURM_CONF
        dbd.write_text(
            f"""\
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.dbd_port}
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.db_port}
StorageUser=root
StorageLoc=slurm_acct_db
PidFile={r / "slurmdbd.pid"}
LogFile={r / "slurmdbd.log"}
DebugLevel=info
"""
        )
        dbd.chmod(0o600)  # slurmdbd refuses a config others can read
        return (
            f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=127.0.0.1\n"
            f"AccountingStoragePort={self.dbd_port}\nAccountingStorageEnforce=associations,limits,qos\n"
            f"AccountingStoragePass={self.munge_socket}"  # the munge socket the accounting link uses
        )

    def start_accounting(self) -> None:
        """A throw-away MariaDB (no grant tables: loopback only, in this folder) and slurmdbd,
        with this cluster registered: slurmctld needs both before it starts."""
        db = self.root / "db"
        subprocess.run(
            [_which("mariadb-install-db") or "mariadb-install-db", "--no-defaults", f"--datadir={db}", "--user=root"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self._spawn(
            "mariadbd",
            [
                _which("mariadbd") or "mariadbd",
                "--no-defaults",
                f"--datadir={db}",
                f"--socket={self.root / 'mysql.sock'}",
                f"--port={self.db_port}",
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-grant-tables",
                f"--log-error={self.root / 'mariadb.log'}",
                f"--pid-file={self.root / 'mariadb.pid'}",
            ],
        )
        self._wait(lambda: _listening(self.db_port), 60, "MariaDB did not listen")
        self._spawn("slurmdbd", [_which("slurmdbd") or "slurmdbd", "-D"])
        self._wait(lambda: _listening(self.dbd_port), 60, "slurmdbd did not listen")
        self._wait(lambda: self._sacctmgr("add", "cluster", "innloop-test"), 60, "the cluster was not registered")

    def _sacctmgr(self, *args: str) -> bool:
        res = subprocess.run(
            [_which("sacctmgr") or "sacctmgr", "-i", *args],
            capture_output=True,
            text=True,
            env=os.environ | self.env,
            timeout=30,
        )
        return res.returncode == 0 or "already exists" in res.stdout + res.stderr

    def limit_submissions(self, per_user: int | None) -> None:
        """Set (``None``: lift) the per-user submit limit of the ``normal`` QOS; sbatch beyond it
        answers ``QOSMaxSubmitJobPerUserLimit``. Needs ``accounting``."""
        if not self.accounting:
            raise RuntimeError("submit limits need the cluster's accounting (slurmdbd)")
        value = "-1" if per_user is None else str(per_user)
        if not self._sacctmgr("modify", "qos", "normal", "set", f"MaxSubmitJobsPerUser={value}"):
            raise RuntimeError(f"sacctmgr could not set MaxSubmitJobsPerUser={value}; {self.logs()}")
        time.sleep(1.0)  # slurmdbd pushes the change to slurmctld

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / f"{name}.stdout", "ab")  # noqa: SIM115 -- kept open for the daemon
        self._procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=os.environ | self.env, start_new_session=True
        )

    def start_munge(self) -> None:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        m = self.root / "munge"
        self._spawn(
            "munged",
            [
                _which("munged") or "munged",
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--log-file={m / 'munged.log'}",
                f"--pid-file={m / 'munged.pid'}",
                f"--seed-file={m / 'munged.seed'}",
            ],
        )
        self._wait(lambda: self.munge_socket.exists(), 10, "munged did not create its socket")

    def start_slurmctld(self) -> None:
        self._spawn("slurmctld", [_which("slurmctld") or "slurmctld", "-D", "-i", "-f", str(self.conf)])

    def start_slurmd(self) -> None:
        self._spawn("slurmd", [_which("slurmd") or "slurmd", "-D", "-f", str(self.conf)])

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Block until ``sinfo`` reports the node idle (the daemons are talking)."""

        def idle() -> bool:
            out = self.run(["sinfo", "-h", "-N", "-o", "%T"], check=False)
            return out.strip().startswith("idle")

        self._wait(idle, timeout, "the local SLURM node never became idle")

    def _wait(self, ok: object, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for name, p in self._procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}; {self.logs()}")
            if callable(ok) and ok():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{what} within {timeout:g} s; {self.logs()}")

    # -- use ------------------------------------------------------------------------
    def run(self, argv: list[str], check: bool = True) -> str:
        """A SLURM client command against this cluster; returns its stdout."""
        res = subprocess.run(argv, capture_output=True, text=True, env=os.environ | self.env, timeout=30)
        if check and res.returncode != 0:
            raise RuntimeError(f"{argv} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def submitted_job_ids(self) -> list[str]:
        """Job ids slurmctld accepted from ``sbatch``, in order (from its log)."""
        text = self.ctld_log.read_text() if self.ctld_log.exists() else ""
        return re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", text)

    def finished_jobs(self) -> dict[str, str]:
        """Job id -> final state (COMPLETED, TIMEOUT, FAILED, CANCELLED...) from jobcomp."""
        text = self.jobcomp.read_text() if self.jobcomp.exists() else ""
        return {m[0]: m[1] for m in re.findall(r"JobId=(\d+) .*?JobState=(\S+)", text)}

    def stop_slurmctld(self) -> None:
        self._stop("slurmctld")

    def logs(self, tail: int = 15) -> str:
        parts = []
        for f in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.stdout")):
            lines = f.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"--- {f.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    # -- tear-down ------------------------------------------------------------------
    def _stop(self, name: str) -> None:
        p = self._procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)

    def stop(self) -> None:
        """Cancel what is left, then stop the daemons in reverse order."""
        if "slurmctld" in self._procs:
            with contextlib.suppress(Exception):
                self.run(["scancel", "--me"], check=False)
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
            self._stop(name)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if _which(b) is None]


def has_accounting() -> bool:
    """Whether slurmdbd and MariaDB are installed (``scripts/install_slurm.sh`` installs them)."""
    return all(_which(b) is not None for b in ACCOUNTING)


@contextlib.contextmanager
def start_local_slurm(root: Path, accounting: bool = False) -> Iterator[LocalSlurm]:
    """Start munged (+ MariaDB and slurmdbd with ``accounting``) + slurmctld + slurmd under
    ``root``; export ``SLURM_CONF`` while in use.

    Must run as root (the daemons and the jobs all run as root, no user set-up needed).
    """
    missing = missing_binaries()
    if missing:
        raise RuntimeError(
            f"SLURM/munge binaries not found: {missing}; install them with scripts/install_slurm.sh "
            "(Debian packages slurm-wlm and munge)"
        )
    if os.geteuid() != 0:
        raise RuntimeError("the local SLURM test cluster must be started as root (its daemons run as root)")
    if accounting and not has_accounting():
        raise RuntimeError(
            f"SLURM accounting binaries not found: {[b for b in ACCOUNTING if _which(b) is None]}; install them "
            "with scripts/install_slurm.sh (Debian packages slurmdbd and mariadb-server)"
        )
    cluster = LocalSlurm(root, accounting=accounting)
    old = os.environ.get("SLURM_CONF")
    try:
        cluster.write_config()
        cluster.start_munge()
        if accounting:
            cluster.start_accounting()
        cluster.start_slurmctld()
        cluster.start_slurmd()
        cluster.wait_idle()
        os.environ["SLURM_CONF"] = str(cluster.conf)
        yield cluster
    finally:
        cluster.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
