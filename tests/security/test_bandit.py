"""bandit finds no medium or high issue in the code (tests and the virtualenv excluded).

Configuration: ``[tool.bandit]`` in pyproject.toml. A ``# nosec B<id>`` is allowed only with a
reason on the same line, for a false positive (e.g. SQL built from constant fragments with every
value bound as a parameter, chats/sql.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bandit_reports_no_medium_or_high_issue():
    result = subprocess.run(
        [sys.executable, "-m", "bandit", "-c", "pyproject.toml", "-r", ".", "-f", "json", "-q"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(result.stdout)
    assert report["errors"] == [], report["errors"]
    assert report["metrics"]["_totals"]["loc"] > 1000, "bandit scanned (almost) nothing"
    serious = [
        f"{issue['filename']}:{issue['line_number']} {issue['test_id']} {issue['issue_severity']}: {issue['issue_text']}"
        for issue in report["results"]
        if issue["issue_severity"] in ("MEDIUM", "HIGH")
    ]
    assert serious == []


def test_every_nosec_states_its_reason():
    """A ``# nosec`` names the check it silences and says why, before the marker."""
    bare = []
    for path in ROOT.rglob("*.py"):
        if {".venv", "tests", "node_modules"} & set(path.relative_to(ROOT).parts):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if "# nosec" in line:
                comment = line.split("# nosec", 1)
                reason = comment[0].rsplit("#", 1)
                if not comment[1].strip().startswith("B") or len(reason) < 2 or not reason[1].strip():
                    bare.append(f"{path.relative_to(ROOT)}:{number}")
    assert bare == []
