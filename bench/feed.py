"""S11: the feed under load — feed reads, posts (fan-out through the outbox, RabbitMQ and
``run_worker``) and likes at steady open-loop rates, on the ``seed_data --feed`` data set.

    .venv/bin/python -m bench.feed                       # 1/10 of the issue's scale, 30 s
    .venv/bin/python -m bench.feed --feed-rate 300 --post-rate 20 --duration 20

Needs PostgreSQL, Redis and RabbitMQ on 127.0.0.1 (``--pg``, ``--redis``, ``--broker``). The
database (``--db``, default ``messenger_bench_feed``) is migrated and loaded once with
``manage.py seed_data --feed`` at the sizes given (1/10 of the issue's by default: 100 000 users,
1 000 channels, 500 000 posts, 2 000 000 subscriptions; ``--scale 1`` is the full set, ~12
minutes to load); later runs reuse it. Then ``--procs`` server processes (``python -m
runtime.serve``) and ``--workers`` ``run_worker`` processes start with ``BROKER_URL`` set (the
servers run no relay: the workers publish the outbox to RabbitMQ and consume it), and one
asyncio client drives, for ``--duration`` seconds, each on its own schedule (request *i* is due
at ``t0 + i/rate``; latency is measured from the due time, so a stall shows as latency):

* ``GET /api/feed`` (first pages) of ``--hot-users`` readers, each read once before (warm
  cache); the readers subscribe to the measured channel (below) and others;
* ``POST /api/chats/<channel>/messages`` by the channels' owners: ``--target-share`` of them to
  the channel whose subscriber count is closest to ``--target-subscribers`` (10 000; fanned out
  on write), the rest to 20 channels of 100-2 000 subscribers;
* ``POST /api/posts/<id>/like`` by the readers on the measured channel's newest posts.

Post-to-feed latency: from a post's 201 (its commit) until its ``user_feed`` row exists for one
subscriber of its channel (polled every 10 ms by SQL: what a feed read would see, its cached
first page being dropped by the same handler). Every second the outbox's rows and the RabbitMQ
queue's depth are sampled (the backlog over time). At the end, once the backlog is empty, every
post made during the run must have exactly one ``user_feed`` row per subscriber of its channel
(``lost``; duplicates cannot exist, the key is (user, post)). The cache's hits and misses come
from the servers' ``/metrics``, the handlers' times from the workers'.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from . import procs
from .hist import Histogram

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SECRET = "bench-only-secret-key-not-for-production-0123456789abcdef"
POLL_S = 0.01


# --- setup (in a subprocess with Django) ---------------------------------------------------------


def setup_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, required=True)
    parser.add_argument("--target-subscribers", type=int, required=True)
    parser.add_argument("--hot-users", type=int, required=True)
    args = parser.parse_args(argv)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.models import User

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM chats_chat WHERE kind = 'channel' AND handle LIKE 'feed\\_%%'")
        loaded = cursor.fetchone()[0]
    if not loaded:
        scale = args.scale
        call_command(
            "seed_data",
            feed=True,
            feed_users=int(1_000_000 * scale),
            feed_channels=int(10_000 * scale),
            feed_posts=int(5_000_000 * scale),
            feed_subscriptions=int(20_000_000 * scale),
            stdout=sys.stderr,
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, subscribers_count FROM chats_chat WHERE kind = 'channel' AND handle LIKE 'feed\\_%%'"
            " AND subscribers_count <= %s ORDER BY abs(subscribers_count - %s), id LIMIT 1",
            [settings.FEED_FANOUT_MAX, args.target_subscribers],
        )
        target, target_count = cursor.fetchone()
        cursor.execute(
            "SELECT id FROM chats_chat WHERE kind = 'channel' AND handle LIKE 'feed\\_%%'"
            " AND subscribers_count BETWEEN 100 AND 2000 ORDER BY id LIMIT 20"
        )
        small = [row[0] for row in cursor.fetchall()]
        channels = [target, *small]
        cursor.execute(
            "SELECT chat_id, user_id FROM chats_membership WHERE chat_id = ANY(%s) AND role = 'owner'", [channels]
        )
        owners = dict(cursor.fetchall())
        cursor.execute(
            "SELECT user_id FROM chats_subscription WHERE chat_id = %s ORDER BY user_id LIMIT %s",
            [target, args.hot_users],
        )
        readers = [row[0] for row in cursor.fetchall()]
        # One subscriber per channel whose feed row the latency probe waits for.
        cursor.execute(
            "SELECT DISTINCT ON (chat_id) chat_id, user_id FROM chats_subscription WHERE chat_id = ANY(%s)"
            " ORDER BY chat_id, user_id",
            [channels],
        )
        probes = dict(cursor.fetchall())
    users = {u.id: u for u in User.objects.filter(id__in=[*owners.values(), *readers])}
    token = {uid: str(AccessToken.for_user(users[uid])) for uid in users}
    print(
        json.dumps(
            {
                "target": target,
                "target_subscribers": target_count,
                "small": small,
                "owners": {str(c): token[u] for c, u in owners.items()},
                "readers": [token[u] for u in readers],
                "probes": {str(c): u for c, u in probes.items()},
            }
        )
    )


# --- a small keep-alive HTTP/1.1 client ---------------------------------------------------------


class Connection:
    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        try:
            self.writer.write(head.encode() + body)
            status_line = await self.reader.readline()
            status = int(status_line.split()[1])
            length, close = 0, False
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and "close" in value.lower():
                    close = True
            data = await self.reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
            self.close()
            return 0, b""
        if close:
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Pool:
    """Keep-alive connections spread over the server processes; a request waits for a free one."""

    def __init__(self, ports: list[int], size: int):
        self.free: asyncio.Queue[Connection] = asyncio.Queue()
        for n in range(size):
            self.free.put_nowait(Connection(ports[n % len(ports)]))

    async def request(self, *args, **kwargs) -> tuple[int, bytes]:
        connection = await self.free.get()
        try:
            return await connection.request(*args, **kwargs)
        finally:
            self.free.put_nowait(connection)


# --- the load -----------------------------------------------------------------------------------


class Stream:
    """One open-loop request stream: its latencies (from the due time), statuses, count."""

    def __init__(self, name: str):
        self.name = name
        self.hist = Histogram()
        self.errors: dict[str, int] = {}
        self.sent = 0

    def record(self, due: float, status: int, ok: tuple[int, ...]) -> None:
        self.hist.record_s(time.perf_counter() - due)
        if status not in ok:
            self.errors[str(status)] = self.errors.get(str(status), 0) + 1

    def summary(self, duration: float) -> dict:
        q = self.hist.percentile_ms
        count = self.hist.count
        return {
            "requests": count,
            "rps": round(count / duration, 1),
            "p50_ms": q(50),
            "p95_ms": q(95),
            "p99_ms": q(99),
            "max_ms": self.hist.max / 1000 if count else None,
            "errors": self.errors,
            "error_rate": round(sum(self.errors.values()) / count, 4) if count else None,
        }


async def open_loop(rate: float, duration: float, fire) -> None:
    """Call ``fire(due)`` (a coroutine, not awaited here) ``rate`` times a second."""
    if rate <= 0:
        return
    t0 = time.perf_counter()
    tasks = set()
    i = 0
    while True:
        due = t0 + i / rate
        if due - t0 >= duration:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(fire(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.gather(*tasks)


async def drive(args, data: dict, ports: list[int], pg: str, after_warmup) -> dict:
    import psycopg

    feed_pool = Pool(ports, args.connections)
    write_pool = Pool(ports, max(8, args.connections // 4))
    readers = data["readers"]
    target = data["target"]
    small = data["small"]
    owners = {int(k): v for k, v in data["owners"].items()}
    probes = {int(k): v for k, v in data["probes"].items()}
    rng = random.Random(11)
    run = uuid.uuid4().hex[:8]

    def auth(token: str, **extra) -> dict:
        return {"Authorization": f"Bearer {token}", **extra}

    # Warm the cache: every reader's first page once.
    sem = asyncio.Semaphore(args.connections)

    async def warm(token: str) -> None:
        async with sem:
            await feed_pool.request("GET", "/api/feed?limit=20", auth(token))

    await asyncio.gather(*(warm(t) for t in readers))
    after_warmup()

    feed, posts, likes = Stream("feed"), Stream("post"), Stream("like")
    created: list[tuple[int, int, float]] = []  # (post id, channel, time of its 201)
    recent_target: list[int] = []
    counter = iter(range(10**9))

    async def read_feed(due: float) -> None:
        status, _ = await feed_pool.request("GET", "/api/feed?limit=20", auth(rng.choice(readers)))
        feed.record(due, status, (200,))

    async def post(due: float) -> None:
        channel = target if rng.random() < args.target_share else rng.choice(small)
        body = json.dumps({"client_id": f"s11-{run}-{next(counter)}", "text": "bench post"}).encode()
        status, raw = await write_pool.request(
            "POST",
            f"/api/chats/{channel}/messages",
            auth(owners[channel], **{"Content-Type": "application/json"}),
            body,
        )
        posts.record(due, status, (201,))
        if status == 201:
            post_id = json.loads(raw)["id"]
            created.append((post_id, channel, time.perf_counter()))
            if channel == target:
                recent_target.append(post_id)

    async def like(due: float) -> None:
        if not recent_target:
            return
        post_id = rng.choice(recent_target[-20:])
        status, _ = await write_pool.request("POST", f"/api/posts/{post_id}/like", auth(rng.choice(readers)))
        likes.record(due, status, (200, 201))

    # Post-to-feed: poll the probe subscriber's user_feed for each new post.
    visible: dict[int, float] = {}
    stop = asyncio.Event()
    backlog: list[dict] = []

    async def probe() -> None:
        async with await psycopg.AsyncConnection.connect(pg, autocommit=True) as conn:
            while not stop.is_set() or len(visible) < len(created):
                pending = [(p, c) for p, c, _ in created if p not in visible]
                if pending:
                    cur = await conn.execute(
                        "SELECT f.post_id FROM user_feed f JOIN unnest(%s::bigint[], %s::bigint[]) AS w(p, u)"
                        " ON f.post_id = w.p AND f.user_id = w.u",
                        [[p for p, _ in pending], [probes[c] for _, c in pending]],
                    )
                    now = time.perf_counter()
                    for (post_id,) in await cur.fetchall():
                        visible[post_id] = now
                if stop.is_set() and time.perf_counter() > stop_deadline[0]:
                    break
                await asyncio.sleep(POLL_S)

    stop_deadline = [float("inf")]

    async def sample_backlog() -> None:
        async with await psycopg.AsyncConnection.connect(pg, autocommit=True) as conn:
            t0 = time.perf_counter()
            while not stop.is_set():
                cur = await conn.execute("SELECT count(*) FROM outbox_outboxevent WHERE dead_at IS NULL")
                rows = (await cur.fetchone())[0]
                backlog.append({"t": round(time.perf_counter() - t0, 1), "outbox": rows, "queue": queue_depth(args)})
                await asyncio.sleep(1.0)

    prober = asyncio.ensure_future(probe())
    sampler = asyncio.ensure_future(sample_backlog())
    started = time.perf_counter()
    await asyncio.gather(
        open_loop(args.feed_rate, args.duration, read_feed),
        open_loop(args.post_rate, args.duration, post),
        open_loop(args.like_rate, args.duration, like),
    )
    elapsed = time.perf_counter() - started
    stop_deadline[0] = time.perf_counter() + 60
    stop.set()
    await prober
    sampler.cancel()

    delays_target, delays_small = Histogram(), Histogram()
    for post_id, channel, at in created:
        if post_id in visible:
            (delays_target if channel == target else delays_small).record_s(visible[post_id] - at)

    def hist(h: Histogram) -> dict:
        if not h.count:
            return {"count": 0}
        return {"count": h.count, **{f"p{q}_ms": h.percentile_ms(q) for q in (50, 95, 99)}, "max_ms": h.max / 1000}

    return {
        "elapsed_s": round(elapsed, 1),
        "feed": feed.summary(elapsed),
        "post": posts.summary(elapsed),
        "like": likes.summary(elapsed),
        "post_to_feed_target": hist(delays_target),
        "post_to_feed_small": hist(delays_small),
        "never_visible": len(created) - len(visible),
        "posts": [(p, c) for p, c, _ in created],
        "backlog": backlog,
    }


def queue_depth(args) -> int | None:
    try:
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(args.broker))
        try:
            return conn.channel().queue_declare(queue=f"{args.queue_prefix}.outbox", passive=True).method.message_count
        finally:
            conn.close()
    except Exception:  # a sample is optional
        return None


def scrape(port: int) -> str:
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # a loopback http:// URL built here  # nosec B310
            return response.read().decode()
    except OSError:
        return ""


def metric_sum(texts: list[str], name: str, **labels: str) -> float:
    total = 0.0
    for text in texts:
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def check_entries(pg: str, posts: list[tuple[int, int]]) -> dict:
    """Every post of the run in exactly one user_feed row per subscriber of its channel."""
    import psycopg

    with psycopg.connect(pg, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT w.p, c.subscribers_count, (SELECT count(*) FROM user_feed f WHERE f.post_id = w.p)"
            " FROM unnest(%s::bigint[], %s::bigint[]) AS w(p, c) JOIN chats_chat c ON c.id = w.c",
            [[p for p, _ in posts], [c for _, c in posts]],
        ).fetchall()
    lost = sum(max(0, expected - have) for _, expected, have in rows)
    extra = sum(max(0, have - expected) for _, expected, have in rows)
    return {"posts_checked": len(rows), "entries_expected": sum(r[1] for r in rows), "lost": lost, "extra": extra}


def wait_drained(pg: str, since, posts: int, timeout_s: float = 600) -> float:
    """Seconds until every post of the run was fanned out (its ``feeds.fan_out`` mark committed)
    and the outbox is empty. RabbitMQ's ready count is no use here: the workers prefetch."""
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(pg, autocommit=True) as conn:
        while time.perf_counter() - started < timeout_s:
            done = conn.execute(
                "SELECT count(*) FROM outbox_processedevent WHERE handler = 'feeds.fan_out' AND processed_at >= %s",
                [since],
            ).fetchone()[0]
            rows = conn.execute("SELECT count(*) FROM outbox_outboxevent WHERE dead_at IS NULL").fetchone()[0]
            if done >= posts and rows == 0:
                return time.perf_counter() - started
            time.sleep(0.2)
    return float("nan")


def db_now(pg: str):
    import psycopg

    with psycopg.connect(pg, autocommit=True) as conn:
        return conn.execute("SELECT clock_timestamp()").fetchone()[0]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "setup":
        setup_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432"))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--broker", default=os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--db", default="messenger_bench_feed")
    parser.add_argument("--scale", type=float, default=0.1, help="of the issue's data set (1: 1 M users, 20 M subs)")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-threads", type=int, default=4)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--feed-rate", type=float, default=500)
    parser.add_argument("--post-rate", type=float, default=50)
    parser.add_argument("--like-rate", type=float, default=20)
    parser.add_argument("--target-subscribers", type=int, default=10_000)
    parser.add_argument("--target-share", type=float, default=0.1, help="share of the posts to the measured channel")
    parser.add_argument("--hot-users", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    for url in (args.pg, args.redis, args.broker):
        if not re.search(r"@?(127\.0\.0\.1|localhost)[:/]", url):
            raise SystemExit(f"refusing a non-local service: {url}")

    from . import db
    from .harness import ours_env

    run_id = time.strftime("f%y%m%d%H%M%S")
    args.queue_prefix = f"bench-{run_id}"
    db.ensure_database(args.pg, args.db)
    pg = f"{args.pg}/{args.db}"
    env = {
        **ours_env(argparse.Namespace(pg=args.pg, redis=args.redis), args.db, run_id),
        "BROKER_URL": args.broker,
        "BROKER_QUEUE_PREFIX": args.queue_prefix,
        "OUTBOX_SERVER_RELAY": "false",
        "IDEMPOTENCY_KEY_HOURS": "24",
    }
    t = time.perf_counter()
    setup = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.feed",
            "setup",
            "--scale",
            str(args.scale),
            "--target-subscribers",
            str(args.target_subscribers),
            "--hot-users",
            str(args.hot_users),
        ],
        cwd=ROOT,
        env={**os.environ, **env, "REDIS_URL": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    if setup.returncode:
        sys.stderr.write(setup.stderr[-4000:])
        raise SystemExit("setup failed")
    data = json.loads(setup.stdout)
    print(
        f"[s11] setup {time.perf_counter() - t:.0f} s; measured channel {data['target']} "
        f"({data['target_subscribers']} subscribers), {len(data['small'])} small channels, "
        f"{len(data['readers'])} readers",
        file=sys.stderr,
    )
    log_dir = RESULTS / "logs" / run_id
    servers = procs.start(
        name="ours",
        label="messenger",
        kind="ours",
        procs=args.procs,
        log_dir=log_dir,
        env=env,
        argv_for_port=procs.ours_argv("serve"),
    )
    worker_ports = [procs.free_port() for _ in range(args.workers)]
    workers = []
    for n, port in enumerate(worker_ports):
        with open(log_dir / f"worker-{n}.log", "wb") as handle:
            workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "manage.py",
                        "run_worker",
                        "--threads",
                        str(args.worker_threads),
                        "--metrics-port",
                        str(port),
                    ],
                    cwd=ROOT,
                    env={**os.environ, **env},
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    process_group=0,
                )
            )
    try:
        time.sleep(3)  # the workers declare their queues
        before: list[str] = []
        meters: list[procs.Meter] = []

        def after_warmup() -> None:  # the measured phase starts: counters and CPU from here
            before.extend(scrape(p) for p in servers.ports)
            meters.append(procs.Meter(servers.pids + [w.pid for w in workers]))

        since = db_now(pg)
        result = asyncio.run(drive(args, data, servers.ports, pg, after_warmup))
        meter = meters[0]
        usage = meter.stop()
        drain_s = wait_drained(pg, since, len(result["posts"]))
        after = [scrape(p) for p in servers.ports]
        worker_metrics = [scrape(p) for p in worker_ports]
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
        servers.stop()
    check = check_entries(pg, result.pop("posts"))

    def cache(result_name: str) -> float:
        return metric_sum(after, "messenger_feed_cache_total", cache="first_page", result=result_name) - metric_sum(
            before, "messenger_feed_cache_total", cache="first_page", result=result_name
        )

    hits, misses = cache("hit"), cache("miss")
    handler = {}
    for event_type in ("post.created", "post.liked"):
        count = metric_sum(worker_metrics, "messenger_worker_handler_seconds_count", type=event_type)
        total = metric_sum(worker_metrics, "messenger_worker_handler_seconds_sum", type=event_type)
        handler[event_type] = {"handled": int(count), "mean_ms": round(total / count * 1000, 1) if count else None}
    report = {
        "run": run_id,
        "args": {k: v for k, v in vars(args).items() if k not in ("pg", "redis", "broker")},
        **result,
        "drain_after_s": round(drain_s, 1),
        "check": check,
        "first_page_cache": {
            "hits": int(hits),
            "misses": int(misses),
            "hit_ratio": round(hits / (hits + misses), 3) if hits + misses else None,
        },
        "handlers": handler,
        "cpu": usage.as_dict(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{run_id}-s11.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
