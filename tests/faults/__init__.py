"""Fault suite: two daphne processes on a private PostgreSQL and Redis, a sending client
population, and Redis restarts, PostgreSQL restarts and a SIGKILLed server in between.

Run it with ``.venv/bin/python -m tests.faults --quick`` (CI runs the same through
``tests/faults/test_faults.py``) or ``--full`` (the long run behind docs/RELIABILITY.md).
"""
