"""One benchmark run: set up the data, start the servers, run the scenarios, check, stop.

The bench database is created and filled in a Django subprocess (``setup_django``)
while the three servers boot as subprocesses on free 127.0.0.1 ports; the scenarios
then run server by server, and the servers are stopped whatever happens.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import attachments, changes, db, history, procs, scenarios
from .profiles import PROFILES, S8_EDITS, S8_REACTIONS
from .scenarios import Context

ROOT = procs.ROOT
RESULTS = ROOT / "bench" / "results"
ALL_SERVERS = ("raw", "floor", "ours")
ALL_SCENARIOS = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10")
# Run order: S5 restarts ours and stops it at the end (row counters), S4 needs its own server.
RUN_ORDER = ("S1", "S2", "S3", "S6", "S7", "S8", "S9", "S10", "S5", "S4")
# Which scenarios mean something for which server: the references have no database.
APPLIES = {
    "S1": ALL_SERVERS,
    "S2": ALL_SERVERS,
    "S3": ALL_SERVERS,
    "S4": ("ours",),
    "S5": ("ours",),
    "S6": ("ours",),
    "S7": ("ours",),
    "S8": ("ours",),
    "S9": ("ours",),
    "S10": ("ours",),
}
LABELS = {"raw": "raw websockets relay", "floor": "Channels floor", "ours": "messenger"}
SCENARIOS = {
    "S1": scenarios.s1_direct,
    "S2": scenarios.s2_fanout,
    "S3": scenarios.s3_idle,
    "S6": scenarios.s6_dedup,
    "S7": scenarios.s7_reactions,
    "S9": scenarios.s9_scaleout,
}
SECRET = "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-not-for-production"
READ_GROUP_MESSAGES = 1000
HISTORY_MESSAGES = 1_000_000


def log(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def attachments_dir(run_id: str) -> Path:
    """Where ours stores S10's files (local storage): one directory per run, removed after it."""
    return RESULTS / "attachments" / run_id


def ours_env(args, database: str, run_id: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "messenger.settings",
        "DEBUG": "false",
        "SECRET_KEY": SECRET,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_HSTS_SECONDS": "0",
        "DATABASE_URL": f"{args.pg}/{database}",
        "REDIS_URL": args.redis,
        "CHANNEL_PREFIX": f"bench-{run_id}",
        "CACHE_PREFIX": f"bench-{run_id}",
        "SEND_RATE_LIMIT": "0",
        "CHAT_CHANGE_RATE_LIMIT": "0",
        "MESSAGE_CHANGE_RATE_LIMIT": "0",
        "GROUP_CREATE_DAILY_LIMIT": "0",
        "AUTH_THROTTLE_RATE": "",
        "SOCKET_CONNECTS_PER_USER": "0",
        "SOCKET_CONNECTS_PER_ADDRESS": "0",
        "ACCESS_TOKEN_MINUTES": "240",
        # S10: local storage in a per-run directory, no upload rate limit or quota.
        "ATTACHMENTS_STORAGE": "local",
        "ATTACHMENTS_DIR": str(attachments_dir(run_id)),
        "UPLOAD_RATE_LIMIT": "0",
        "UPLOAD_QUOTA_BYTES": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def django_setup(args, database: str, command: list[str], run_id: str) -> dict:
    env = {
        **os.environ,
        **ours_env(args, database, run_id),
        "REDIS_URL": "",
        "FAST_PASSWORD_HASHER": "true",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bench.setup_django", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    sys.stderr.write(
        proc.stderr[-4000:]
        if proc.returncode
        else "".join(line + "\n" for line in proc.stderr.splitlines() if line.startswith("[setup]"))
    )
    if proc.returncode:
        raise SystemExit(f"bench setup failed on {database} (exit {proc.returncode})")
    return json.loads(proc.stdout)


def start_servers(
    args,
    names: list[str],
    run_id: str,
    log_dir: Path,
    *,
    database: str | None = None,
    wait: bool = True,
) -> dict:
    servers = {}
    for name in names:
        if name == "raw":
            servers[name] = procs.start(
                name="raw",
                label=LABELS["raw"],
                kind="relay",
                procs=1,
                log_dir=log_dir,
                wait=False,
                env={},
                argv_for_port=lambda port: [
                    sys.executable,
                    "-m",
                    "bench.servers.raw_relay",
                    "--port",
                    str(port),
                ],
            )
        elif name == "floor":
            servers[name] = procs.start(
                name="floor",
                label=LABELS["floor"],
                kind="relay",
                procs=args.procs,
                log_dir=log_dir,
                wait=False,
                env={
                    "DJANGO_SETTINGS_MODULE": "bench.servers.floor_settings",
                    "REDIS_URL": args.redis,
                    "CHANNEL_PREFIX": f"bench-floor-{run_id}",
                    "FLOOR_LAYER": args.floor_layer,
                },
                argv_for_port=procs.daphne_argv("bench.servers.floor_asgi:application"),
            )
        elif name == "ours":
            servers[name] = procs.start(
                name=f"ours-{database or args.bench_db}",
                label=LABELS["ours"],
                kind="ours",
                procs=args.procs,
                log_dir=log_dir,
                wait=False,
                env=ours_env(args, database or args.bench_db, run_id),
                argv_for_port=procs.ours_argv(getattr(args, "ours_server", "serve")),
            )
    if wait:
        for server in servers.values():
            server.wait_ready()
    return servers


def source_digest() -> str:
    """A digest of the application's Python files: the working tree may differ from the commit."""
    digest = hashlib.sha1(usedforsecurity=False)
    for folder in ("messenger", "chats", "accounts", "attachments"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "chats", "accounts", "attachments", "messenger"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


async def run(args) -> dict:
    profile = PROFILES[args.mode]
    if getattr(args, "s1_rates", None):
        profile = dataclasses.replace(profile, s1_rates=tuple(int(r) for r in args.s1_rates.split(",")))
    if getattr(args, "s1_step_s", None):
        profile = dataclasses.replace(profile, s1_step_s=float(args.s1_step_s))
    run_id = "b" + time.strftime("%y%m%d%H%M%S") + secrets.token_hex(2)
    log_dir = RESULTS / "logs" / run_id
    started = time.time()
    wanted_servers = [s for s in ALL_SERVERS if s in args.servers]
    wanted = [s for s in RUN_ORDER if s in args.scenarios]
    notes: list[str] = []
    limit = procs.raise_nofile()
    if limit < profile.s3_sockets + 1000:
        notes.append(f"RLIMIT_NOFILE is {limit}: S3 may fail to open {profile.s3_sockets} sockets")
    meta = {
        "run_id": run_id,
        "profile": profile.name,
        "procs": args.procs,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": git_commit(),
        "source_digest": source_digest(),
        "cpus": os.cpu_count(),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "python": sys.version.split()[0],
        "event_loop": args.loop,
        "floor_layer": args.floor_layer,
        "notes": notes,
        "profile_params": profile.__dict__,
    }
    results: dict = {
        "meta": meta,
        "servers": {n: LABELS[n] for n in wanted_servers},
        "scenarios": {},
        "checks": {},
        "log_problems": {},
    }

    # --- setup: the bench database, its users and chats, tokens ---------------------------
    # The servers boot (imports, Django setup) while the data is prepared; none touches the
    # database before its first request.
    log(f"starting servers: {', '.join(wanted_servers)}")
    servers = start_servers(
        args,
        [n for n in wanted_servers if n != "ours" or set(wanted) - {"S4"}],
        run_id,
        log_dir,
        wait=False,
    )
    try:
        return await _run(
            args,
            profile,
            run_id,
            log_dir,
            started,
            wanted_servers,
            wanted,
            notes,
            meta,
            results,
            servers,
        )
    finally:
        for name, server in servers.items():
            server.stop()
            results["log_problems"][name] = results["log_problems"].get(name, []) + server.log_problems()
        shutil.rmtree(attachments_dir(run_id), ignore_errors=True)
        try:
            attachments_dir(run_id).parent.rmdir()  # only if no other run's files are there
        except OSError:
            pass


async def _run(
    args,
    profile,
    run_id,
    log_dir,
    started,
    wanted_servers,
    wanted,
    notes,
    meta,
    results,
    servers,
) -> dict:
    t_setup = time.perf_counter()
    if db.ensure_database(args.pg, args.bench_db):
        log(f"created database {args.bench_db}")
    history_fixture = None
    if "S4" in wanted and "ours" in wanted_servers and args.load_db and db.database_exists(args.pg, args.load_db):
        try:
            history_fixture = (
                django_setup(
                    args,
                    args.load_db,
                    ["history", "--min-messages", str(HISTORY_MESSAGES)],
                    run_id,
                )
                or None
            )
        except SystemExit as exc:
            notes.append(f"{args.load_db} not usable for S4 ({exc}); using the bench database's own history chat")
        if history_fixture is None:
            notes.append(f"{args.load_db} has no chat with >= {HISTORY_MESSAGES} messages yet; S4 uses {args.bench_db}")
    spec = {
        "users": profile.users,
        "pairs": max(profile.s1_pairs, profile.s6_users, profile.s9_pairs if "S9" in wanted else 0),
        "groups": {"fanout": profile.s2_group},
        "read_group": {"size": profile.s5_group, "messages": READ_GROUP_MESSAGES},
        # S8 always uses the bench database's own history chat (its changes are made there once).
        "history_messages": HISTORY_MESSAGES if (("S4" in wanted and history_fixture is None) or "S8" in wanted) else 0,
    }
    if "S7" in wanted:
        spec["reactions"] = {
            "chats": profile.s7_chats,
            "members": profile.s7_members,
            "messages": profile.s7_messages,
        }
    if "S8" in wanted:
        spec["changes"] = {"reactions": S8_REACTIONS, "edits": S8_EDITS}
    log(f"preparing {args.bench_db} ({profile.users} users)")
    fixture = django_setup(args, args.bench_db, ["prepare", "--spec", json.dumps(spec)], run_id)
    if history_fixture:
        fixture["history"] = history_fixture
    meta["setup_s"] = round(time.perf_counter() - t_setup, 1)
    ctx = Context(
        profile=profile,
        fixture=fixture,
        run_id=run_id,
        pg_base=args.pg,
        bench_db=args.bench_db,
        notes=notes,
    )

    # --- scenarios ----------------------------------------------------------------------------
    for server in servers.values():
        server.wait_ready()
    meta["ports"] = {n: s.ports for n, s in servers.items()}
    touched_chats: set[int] = set()
    for scenario in wanted:
        for name in wanted_servers:
            if name not in APPLIES[scenario]:
                continue
            server = servers.get(name)
            if scenario == "S4":
                continue  # below, on its own server (the history database may differ)
            if server is None or not server.alive():
                notes.append(f"{name} was not running before {scenario}; restarted")
                if server is not None:
                    server.stop()
                    results["log_problems"][name] = results["log_problems"].get(name, []) + server.log_problems()
                servers[name] = server = start_servers(args, [name], run_id, log_dir / f"{scenario}")[name]
            log(f"{scenario} on {LABELS[name]}")
            t0 = time.perf_counter()
            try:
                if scenario == "S5":
                    # Fresh processes, stopped afterwards: every backend's row counters get flushed.
                    server.stop()
                    results["log_problems"][name] = results["log_problems"].get(name, []) + server.log_problems()
                    servers[name] = server = start_servers(args, [name], run_id, log_dir / "S5")[name]
                    out = await scenarios.s5_reads(ctx, server, stop_server=server.stop)
                elif scenario == "S8":
                    out = await asyncio.to_thread(
                        changes.run,
                        server,
                        fixture=fixture.get("changes"),
                        profile=profile,
                        pg_base=args.pg,
                        bench_db=args.bench_db,
                    )
                elif scenario == "S10":
                    uploader = fixture["users"][0]
                    out = await asyncio.to_thread(
                        attachments.run,
                        server,
                        token=fixture["tokens"][str(uploader)],
                        profile=profile,
                        pg_base=args.pg,
                        bench_db=args.bench_db,
                    )
                else:
                    out = await SCENARIOS[scenario](ctx, server)
            except Exception as exc:
                log(f"{scenario} on {LABELS[name]} failed: {exc!r}")
                out = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            out["elapsed_s"] = round(time.perf_counter() - t0, 1)
            out.setdefault("alive_after", server.alive())
            touched_chats.update(out.pop("chat_ids", []))
            for check, verdict in out.pop("checks", {}).items():
                results["checks"][f"{scenario} {check}"] = verdict
            results["scenarios"].setdefault(scenario, {})[name] = out
    if "S4" in wanted and "ours" in wanted_servers:
        h = fixture.get("history")
        if not h:
            notes.append("S4 skipped: no history chat")
        else:
            log(f"S4 on {LABELS['ours']} ({h['database']}, chat {h['chat_id']}, {h['last_seq']} messages)")
            t0 = time.perf_counter()
            if "ours" in servers:
                servers["ours"].stop()  # two of ours at once would share the two cores
                results["log_problems"]["ours"] = (
                    results["log_problems"].get("ours", []) + servers.pop("ours").log_problems()
                )
            servers["ours-s4"] = s4_server = start_servers(
                args, ["ours"], run_id, log_dir / "S4", database=h["database"]
            )["ours"]
            try:
                out = await asyncio.to_thread(
                    history.run,
                    s4_server,
                    chat_id=h["chat_id"],
                    last_seq=h["last_seq"],
                    token=h["token"],
                    requests=profile.s4_requests,
                    max_s=profile.s4_max_s,
                )
            except Exception as exc:
                log(f"S4 failed: {exc!r}")
                out = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            out["database"] = h["database"]
            out["elapsed_s"] = round(time.perf_counter() - t0, 1)
            results["scenarios"]["S4"] = {"ours": out}

    # --- correctness of what ours stored -----------------------------------------------------------
    if "ours" in wanted_servers and touched_chats:
        gaps = db.seq_gaps(args.pg, args.bench_db, sorted(touched_chats))
        results["checks"]["seq 1..last_seq without gaps in every chat written"] = (
            "ok" if not gaps else f"VIOLATED in {len(gaps)} chats, e.g. {gaps[:3]} (chat, last_seq, messages)"
        )
    s6 = (results["scenarios"].get("S6") or {}).get("ours")
    if s6 and "unique" in s6:
        u, d = s6["unique"], s6["duplicate"]
        results["checks"]["S6 each client_id stored once"] = (
            "ok"
            if (
                u["stored"] == u["messages"]
                and d["stored"] == d["stored_distinct"] == d["messages"]
                and not s6["bad_pairs"]
            )
            else f"unique: {u['stored']} stored for {u['messages']} acked; duplicate: {d['stored']} stored "
            f"({d['stored_distinct']} distinct) for {d['messages']} messages; {s6['bad_pairs']} pairs without exactly one original"
        )
    meta["duration_s"] = round(time.time() - started, 1)
    return results
