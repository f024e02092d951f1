"""Client CPU per round trip of the two libraries on the hot path (issue 15's levers).

    .venv/bin/python -m bench.roundtrips [--pg postgresql://postgres@127.0.0.1:5432/postgres]
                                         [--redis redis://127.0.0.1:6379/0] [-n 3000]

Prints, in microseconds of this process's CPU per operation (``time.process_time``):

* redis-py: one PUBLISH (the fan-out channel's cost per event), a pipelined lookup of two
  presence sets followed by a PUBLISH (routing with a lookup round trip), and the routing script
  of ``runtime.presence`` (lookup and PUBLISH in one round trip);
* psycopg: two prepared statements one after the other (a send's SEND + AFTER_SEND) against
  the same two in one pipeline with a Sync between them (what group commit's round trip saving
  would be on the server).

Keys are under a random prefix and removed afterwards. Each measurement runs twice.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time

import psycopg
import redis.asyncio as aioredis

from runtime.presence import _ROUTE


async def _cpu_us(n: int, op) -> float:
    started = time.process_time()
    for _ in range(n):
        await op()
    return 1e6 * (time.process_time() - started) / n


async def redis_costs(url: str, n: int) -> None:
    r = aioredis.Redis.from_url(url)
    p = f"bench-rt-{secrets.token_hex(4)}:"
    keys = [f"{p}presence:a", f"{p}presence:b"]
    await r.sadd(keys[0], "p1")
    await r.sadd(keys[1], "p2")
    await r.set(f"{p}proc:p1", 1)
    await r.set(f"{p}proc:p2", 1)
    script = r.register_script(_ROUTE)
    payload = b"x" * 300

    async def publish():
        await r.publish(f"{p}chan", payload)

    async def lookup_then_publish():
        pipe = r.pipeline(transaction=False)
        for key in keys:
            pipe.smembers(key)
        await pipe.execute()
        await r.publish(f"{p}chan", payload)

    async def route_script():
        await script(keys=keys, args=[f"{p}proc:", f"{p}__proc__", payload, "ga", "gb"])

    try:
        for name, op in (
            ("PUBLISH", publish),
            ("lookup pipeline + PUBLISH", lookup_then_publish),
            ("routing script", route_script),
        ) * 2:
            print(f"redis-py  {name:28s} {await _cpu_us(n, op):6.0f} us CPU")
    finally:
        await r.delete(*keys, f"{p}proc:p1", f"{p}proc:p2")
        await r.aclose()


async def pg_costs(url: str, n: int) -> None:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    q1, q2 = "SELECT %(a)s::int + 1", "SELECT %(b)s::int + 2"

    async def sequential():
        await (await conn.execute(q1, {"a": 1}, prepare=True)).fetchall()
        await (await conn.execute(q2, {"b": 2}, prepare=True)).fetchall()

    async def pipelined():
        async with conn.pipeline() as pipeline:
            first = await conn.execute(q1, {"a": 1}, prepare=True)
            pipeline._enqueue_sync()  # psycopg's private Sync: two transactions, one round trip
            second = await conn.execute(q2, {"b": 2}, prepare=True)
        await first.fetchall()
        await second.fetchall()

    try:
        for name, op in (("two statements, sequential", sequential), ("two statements, pipelined", pipelined)) * 2:
            print(f"psycopg   {name:28s} {await _cpu_us(n, op):6.0f} us CPU")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("-n", type=int, default=3000)
    args = parser.parse_args()
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run

    async def both():
        await redis_costs(args.redis, args.n)
        await pg_costs(args.pg, args.n)

    run(both())


if __name__ == "__main__":
    main()
