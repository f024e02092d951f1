"""The quick fault suite, run by pytest (and so in CI): see tests/faults/suite.py.

Private PostgreSQL and Redis, two daphne processes, a sending client population; one Redis
restart, one PostgreSQL outage and one SIGKILLed server. Deselect locally with
``-m "not faults"``; it never skips: a missing initdb or redis-server is a failure.
"""

from __future__ import annotations

import pytest

from tests.faults.infra import MissingTool, check_tools
from tests.faults.suite import QUICK, render, run_profile

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]


def test_faults_lose_nothing_duplicate_nothing_and_every_device_converges():
    """Through a Redis restart, a PostgreSQL outage and a SIGKILLed server: every acked message
    is stored exactly once, seqs have no gaps, every device ends with every message once and in
    order, outages answer service_unavailable, and live delivery resumes everywhere. Edits,
    deletes, reactions and pins made meanwhile: none lost or doubled, and every device ends with
    exactly the stored state of every message and each chat's version."""
    try:
        check_tools()
    except MissingTool as exc:
        pytest.fail(f"the fault suite needs its tools: {exc}")
    report = run_profile(QUICK)
    text = render(report)
    print(text)
    assert report["sent"] > 100, text
    assert report["acked"] == report["sent"], text
    assert report["lost"] == 0, text
    assert report["duplicated_rows"] == 0, text
    assert report["duplicated_live_deliveries"] == 0, text
    assert report["conflicting_deliveries"] == 0, text
    assert report["seq_gaps"] == 0, text
    assert report["devices_converged"] == report["devices"], text
    assert sum(report["changes_applied"].values()) > 50, text
    assert set(report["changes_applied"]) == {"edit", "delete", "react", "pin"}, text
    assert report["changes_lost"] == 0 and report["changes_doubled"] == 0, text
    assert report["reaction_counts_wrong"] == 0, text
    assert report["devices_state_converged"] == report["devices"], text
    assert report["pg_outage_rest_503"] and report["pg_outage_socket_error"], text
    assert report["redis_live_resumed"] and report["redis_outage_message_seen_by_all"], text
    assert report["ok"], text
