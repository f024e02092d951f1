"""``python -m tests.faults [--quick | --full] [--keep] [--json PATH]``: run, print the report.

Exit status 0 when every guarantee held, 1 when one broke, 2 when a tool is missing.
"""

from __future__ import annotations

import argparse
import json
import sys

from .infra import MissingTool
from .suite import PROFILES, render, run_profile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", dest="profile", action="store_const", const="quick", help="~30 s: one fault of each kind"
    )
    mode.add_argument(
        "--full",
        dest="profile",
        action="store_const",
        const="full",
        help="~2.5 min: Redis x3, PostgreSQL x2, SIGKILL, 60 devices",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) even when the run passes")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.set_defaults(profile="quick")
    args = parser.parse_args(argv)
    try:
        report = run_profile(PROFILES[args.profile], keep=args.keep)
    except MissingTool as exc:
        print(f"fault suite cannot run: {exc}", file=sys.stderr)
        return 2
    print(render(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2, default=str)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
