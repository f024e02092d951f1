"""Where loaded rows go -- ``COPY`` into PostgreSQL, the project's only database -- plus the progress bar.

:class:`PostgresSink` only moves rows; it knows nothing about chats. ``insert`` writes the
rows of one iterable into one table inside the caller's transaction and reports progress
through ``tick(count)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import IO

from django.db import connection

# All loaded timestamps are offsets in seconds from this instant.
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)

Tick = Callable[[int], None]


def no_tick(count: int) -> None:
    """Progress callback for rows the bar does not count."""


class PostgresSink:
    """COPY in, ids from the tables' own sequences, VACUUM ANALYZE at the end."""

    tick_every = 8192

    def allocate_ids(self, table: str, count: int) -> list[int]:
        """``count`` fresh primary keys for ``table``, ascending, never handed out again."""
        # nextval keeps the sequence ahead of every id we use, so no setval is needed later,
        # and it is safe even if the application inserts rows at the same time.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, count]
            )
            return sorted(row[0] for row in cursor.fetchall())

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[tuple], tick: Tick) -> int:
        """Write ``rows`` (values in ``columns`` order) and return how many there were."""
        written = 0
        with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for written, row in enumerate(rows, start=1):
                copy.write_row(row)
                if not written % self.tick_every:
                    tick(self.tick_every)
        tick(written % self.tick_every)
        return written

    def optimize(self, tables: Sequence[str]) -> str:
        """Refresh planner statistics and visibility information; returns what ran, for the report."""
        # VACUUM sets hint bits and the visibility map now rather than during a benchmark.
        # It cannot run inside a transaction (as in tests), where ANALYZE alone must do.
        verb = "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)"
        with connection.cursor() as cursor:
            cursor.execute(f"{verb} {', '.join(tables)}")
        return "vacuum + analyze" if verb.startswith("VACUUM") else "analyze"


class Clock:
    """Timestamps ``EPOCH + seconds`` as UTC text for COPY, cheap enough for 10 M rows."""

    def __init__(self) -> None:
        self._times = [f" {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00" for s in range(86_400)]
        self._days: list[str] = []

    def __call__(self, seconds: int) -> str:
        day, rest = divmod(seconds, 86_400)
        while len(self._days) <= day:
            self._days.append((EPOCH + timedelta(days=len(self._days))).strftime("%Y-%m-%d"))
        return self._days[day] + self._times[rest]


class Progress:
    """A one-line progress bar: redrawn in place on a terminal, else one line every 10 s."""

    def __init__(self, stream: IO[str], label: str, total: int, unit: str = "rows") -> None:
        self.stream, self.label, self.total, self.unit = stream, label, max(total, 0), unit
        self.done = 0
        self.started = self._drawn = time.monotonic()
        isatty = getattr(stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self._draw(final=False)

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._drawn >= (0.2 if self.tty else 10.0):
            self._drawn = now
            self._draw(final=False)

    def close(self) -> float:
        """Draw the final state on its own line and return the elapsed seconds."""
        self._draw(final=True)
        return time.monotonic() - self.started

    def _draw(self, *, final: bool) -> None:
        elapsed = time.monotonic() - self.started
        share = self.done / self.total if self.total else 1.0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        when = f"{elapsed:6.1f}s" if final or not rate else f"ETA {(self.total - self.done) / rate:5.0f}s"
        line = (
            f"{self.label:<9}|{'#' * int(share * 30):<30}| {self.done:>12,}/{self.total:,} {self.unit} "
            f"{share * 100:5.1f}%  {rate:>9,.0f}/s  {when}"
        )
        self.stream.write(("\r" + line + ("\n" if final else "")) if self.tty else line + "\n")
        self.stream.flush()
