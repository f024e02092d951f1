"""``python -m bench run --quick | --full``: one command for the whole benchmark.

Creates and fills the bench database, starts the three servers as subprocesses on
free 127.0.0.1 ports, runs the scenarios against each, stops the servers, prints a
markdown table and writes ``bench/results/<run>.json`` and ``.md`` (plus ``latest.*``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from . import report
from .harness import ALL_SCENARIOS, ALL_SERVERS, RESULTS, log, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the benchmark")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        dest="mode",
        action="store_const",
        const="quick",
        help="<= 2 minutes, smaller sizes (default)",
    )
    mode.add_argument(
        "--full",
        dest="mode",
        action="store_const",
        const="full",
        help="the README table: 10 000 sockets, 1 000-member groups",
    )
    p.set_defaults(mode="quick")
    p.add_argument(
        "--procs",
        type=int,
        default=1,
        help="server processes for ours and the Channels floor (they share Redis)",
    )
    p.add_argument("--servers", default=",".join(ALL_SERVERS), help="comma list of raw,floor,ours")
    p.add_argument("--scenarios", default=",".join(ALL_SCENARIOS), help="comma list of S1..S8, S10")
    p.add_argument(
        "--floor-layer",
        choices=["pubsub", "core"],
        default="pubsub",
        help="channels-redis layer of the floor (ours uses pubsub)",
    )
    p.add_argument(
        "--pg",
        default=os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server URL, no database",
    )
    p.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    p.add_argument(
        "--ours-server",
        choices=["serve", "uvserve", "daphne", "uvicorn", "granian"],
        default="uvserve",
        help="how ours is served: python -m runtime.uvserve (uvicorn, the production entry point) or runtime.serve (daphne), with their protections; or plain daphne, uvicorn or granian",
    )
    p.add_argument("--s1-rates", help="S1 steps (msgs/s, comma list) instead of the profile's")
    p.add_argument("--s1-step-s", type=float, help="seconds per S1 step instead of the profile's")
    p.add_argument("--bench-db", default="messenger_bench")
    p.add_argument(
        "--load-db",
        default="messenger_load",
        help="seeded database to use for S4 if it has a >= 1M-message chat ('' to skip)",
    )
    p.add_argument(
        "--no-uvloop",
        dest="loop",
        action="store_const",
        const="asyncio",
        default="uvloop",
    )
    args = parser.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.scenarios = [s.strip().upper() for s in args.scenarios.split(",") if s.strip()]
    for host in (args.pg, args.redis):
        if "127.0.0.1" not in host and "localhost" not in host:
            parser.error(f"{host}: the bench only talks to servers on 127.0.0.1")
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            args.loop = "asyncio"
    runner = uvloop.run if args.loop == "uvloop" else asyncio.run
    results = runner(run(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"{results['meta']['run_id']}-{results['meta']['profile']}"
    text = report.markdown(results)
    for path, content in (
        (RESULTS / f"{name}.json", json.dumps(results, indent=1, default=str)),
        (RESULTS / f"{name}.md", text),
    ):
        path.write_text(content)
    for suffix in ("json", "md"):
        latest = RESULTS / f"latest.{suffix}"
        latest.unlink(missing_ok=True)
        latest.symlink_to(f"{name}.{suffix}")
    print(text)
    log(f"results: {RESULTS / name}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
