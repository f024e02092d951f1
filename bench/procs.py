"""Servers under test as subprocesses on 127.0.0.1, and their CPU and memory from /proc.

Each server is one or more processes (``--procs``) on free ports. The harness raises
its RLIMIT_NOFILE to the hard limit, which every child inherits (10 000 idle sockets
need it on both ends), and
reads utime+stime from ``/proc/<pid>/stat`` and VmRSS/VmHWM from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def raise_nofile() -> int:
    """Soft RLIMIT_NOFILE := hard; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime, stime are fields 14, 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:", "Threads:")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0])
    return out


def system_busy() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs from /proc/stat, for the machine's background load."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return total - idle, total


@dataclass
class Usage:
    """CPU and memory of a set of processes between two instants."""

    cpu_s: float
    wall_s: float
    rss_kib: int
    hwm_kib: int
    machine_busy_pct: float

    @property
    def cpu_pct(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "cpu_pct": round(self.cpu_pct, 1),
            "cpu_s": round(self.cpu_s, 3),
            "rss_mib": round(self.rss_kib / 1024, 1),
            "hwm_mib": round(self.hwm_kib / 1024, 1),
            "machine_busy_pct": round(self.machine_busy_pct, 1),
        }


class Meter:
    """Start it before a measured phase and ``stop()`` after: CPU% and RSS of ``pids``."""

    def __init__(self, pids: list[int]):
        self.pids = list(pids)
        self.t0 = time.perf_counter()
        self.cpu0 = sum(cpu_seconds(p) for p in self.pids)
        self.sys0 = system_busy()

    def stop(self) -> Usage:
        wall = time.perf_counter() - self.t0
        cpu = sum(cpu_seconds(p) for p in self.pids) - self.cpu0
        mem = [memory_kib(p) for p in self.pids]
        busy1, total1 = system_busy()
        dt = total1 - self.sys0[1]
        busy = 100.0 * (busy1 - self.sys0[0]) / dt if dt > 0 else 0.0
        return Usage(
            cpu_s=cpu,
            wall_s=wall,
            rss_kib=sum(m.get("VmRSS", 0) for m in mem),
            hwm_kib=sum(m.get("VmHWM", 0) for m in mem),
            machine_busy_pct=busy,
        )


@dataclass
class Server:
    """One server under test: ``name``, its processes and their ports."""

    name: str
    label: str
    procs: list[subprocess.Popen] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    # How the client reaches it: "ours" (JWT) or "relay" (token=u<id>&rooms=...).
    kind: str = "relay"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def port_for(self, index: int) -> int:
        return self.ports[index % len(self.ports)]

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def meter(self) -> Meter:
        return Meter(self.pids)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids)

    def rss_kib(self) -> int:
        return sum(memory_kib(p).get("VmRSS", 0) for p in self.pids)

    def wait_idle(self, *, below_pct: float = 5.0, window_s: float = 0.5, timeout_s: float = 30.0) -> float:
        """Block until the server's CPU over ``window_s`` is under ``below_pct``; returns seconds waited."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout_s:
            c0 = self.cpu_seconds()
            time.sleep(window_s)
            if 100.0 * (self.cpu_seconds() - c0) / window_s < below_pct:
                break
        return time.perf_counter() - start

    def log_problems(self) -> list[str]:
        """Lines of the servers' logs that look like errors (tracebacks, ERROR, WARNING)."""
        found = []
        for path in self.logs:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                if any(word in line for word in ("Traceback", "ERROR", "WARNING", "Error:", "CRITICAL")):
                    found.append(f"{path.name}: {line.strip()[:300]}")
        return found

    def wait_ready(self) -> None:
        try:
            for proc, port, log in zip(self.procs, self.ports, self.logs, strict=True):
                try:
                    wait_port(port, proc)
                except RuntimeError as exc:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{self.name}: {exc}; {log}:\n{tail}") from None
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.time() + 10
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


def wait_port(port: int, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not listen within {timeout_s} s")


def start(
    *,
    name: str,
    label: str,
    kind: str,
    argv_for_port,
    env: dict[str, str],
    procs: int,
    log_dir: Path,
    wait: bool = True,
) -> Server:
    """Start ``procs`` copies of ``argv_for_port(port)``; with ``wait``, until each listens."""
    raise_nofile()
    log_dir.mkdir(parents=True, exist_ok=True)
    server = Server(name=name, label=label, kind=kind)
    full_env = {**os.environ, **env}
    try:
        for i in range(procs):
            port = free_port()
            log = log_dir / f"{name}-{i}.log"
            # Own process group (stopping it never touches the harness); RLIMIT_NOFILE is
            # inherited from the harness, which raised its soft limit to the hard one.
            with open(log, "wb") as handle:
                proc = subprocess.Popen(
                    argv_for_port(port),
                    cwd=ROOT,
                    env=full_env,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    process_group=0,
                )
            server.procs.append(proc)
            server.ports.append(port)
            server.logs.append(log)
        if wait:
            server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def daphne_argv(app: str):
    def argv(port: int) -> list[str]:
        return [
            PYTHON,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "--websocket-max-message-size",
            "65536",
            app,
        ]

    return argv


def ours_argv(how: str):
    """Our server: ``uvserve`` (python -m runtime.uvserve, the production entry point), ``serve``
    (python -m runtime.serve, daphne with the same protections), or plain ``daphne``, ``uvicorn``
    or ``granian``."""
    if how == "daphne":
        return daphne_argv("messenger.asgi:application")

    def argv(port: int) -> list[str]:
        if how == "uvicorn":
            return [
                PYTHON,
                "-m",
                "uvicorn",
                "messenger.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--ws-max-size",
                "65536",
                "--no-access-log",
                "--lifespan",
                "off",
                "--ws-per-message-deflate",
                "false",
            ]
        if how == "granian":
            return [
                PYTHON,
                "-m",
                "granian",
                "--interface",
                "asgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--loop",
                "uvloop",
                "--no-access-log",
                "messenger.asgi:application",
            ]
        if how == "uvserve":
            return [PYTHON, "-m", "runtime.uvserve", "-b", "127.0.0.1", "-p", str(port), "-v", "0"]
        return [PYTHON, "-m", "runtime.serve", "-b", "127.0.0.1", "-p", str(port)]

    return argv
