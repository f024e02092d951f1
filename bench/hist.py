"""A log-linear latency histogram (HDR-style, ~1.6 % relative precision).

Values are recorded in microseconds. Values below 128 µs get a bucket each; above
that, every power of two is split into 64 linear sub-buckets, so the reported
percentile is within 1/64 of the true value at any magnitude, with a few hundred
buckets for anything from 1 µs to an hour.
"""

from __future__ import annotations

SUB_BITS = 6
SUB = 1 << SUB_BITS  # 64 sub-buckets per power of two
LINEAR_LIMIT = SUB * 2  # below this, exact


def _index(value: int) -> int:
    if value < LINEAR_LIMIT:
        return value
    shift = value.bit_length() - (SUB_BITS + 1)
    return LINEAR_LIMIT + (shift - 1) * SUB + ((value >> shift) - SUB)


def _upper(index: int) -> int:
    """Highest value that lands in bucket ``index`` (percentiles report it: never flattering)."""
    if index < LINEAR_LIMIT:
        return index
    shift = (index - LINEAR_LIMIT) // SUB + 1
    sub = (index - LINEAR_LIMIT) % SUB + SUB
    return ((sub + 1) << shift) - 1


class Histogram:
    __slots__ = ("count", "counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.min: int | None = None
        self.max = 0

    def record_us(self, value_us: float) -> None:
        value = int(value_us) if value_us > 0 else 0
        idx = _index(value)
        self.counts[idx] = self.counts.get(idx, 0) + 1
        self.count += 1
        self.total += value
        if self.min is None or value < self.min:
            self.min = value
        self.max = max(self.max, value)

    def record_s(self, seconds: float) -> None:
        self.record_us(seconds * 1e6)

    def merge(self, other: Histogram) -> None:
        for idx, n in other.counts.items():
            self.counts[idx] = self.counts.get(idx, 0) + n
        self.count += other.count
        self.total += other.total
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min
        self.max = max(self.max, other.max)

    def percentile_us(self, pct: float) -> int | None:
        """The smallest recorded bucket's upper bound with at least ``pct`` % of values at or below it."""
        if not self.count:
            return None
        rank = max(1, -(-self.count * pct // 100))  # ceil, at least the first value
        seen = 0
        for idx in sorted(self.counts):
            seen += self.counts[idx]
            if seen >= rank:
                return min(_upper(idx), self.max)
        return self.max

    def percentile_ms(self, pct: float) -> float | None:
        value = self.percentile_us(pct)
        return None if value is None else value / 1000.0

    def summary(self) -> dict:
        """Milliseconds, for reports."""
        if not self.count:
            return {"count": 0}
        return {
            "count": self.count,
            "min_ms": self.min / 1000.0,
            "mean_ms": round(self.total / self.count / 1000.0, 3),
            "p50_ms": self.percentile_ms(50),
            "p90_ms": self.percentile_ms(90),
            "p99_ms": self.percentile_ms(99),
            "p999_ms": self.percentile_ms(99.9),
            "max_ms": self.max / 1000.0,
        }
