"""Benchmark suite for the messenger: ``python -m bench run --quick`` (see bench/README.md).

Not a test suite: nothing here asserts on wall-clock numbers. It starts the servers
it measures as subprocesses on 127.0.0.1, drives them with one open-loop client and
writes a markdown table and a JSON file to ``bench/results/``.
"""
