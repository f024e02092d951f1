"""The WebSocket scenarios S1, S2, S3, S5, S6, S7, S9; each takes a server and returns a result dict.

Every scenario opens its own sockets, runs bounded open- or closed-loop load, waits
for stragglers until the profile's deadline, closes its sockets and leaves the server
idle for the next one. CPU and RSS are the server processes' own, read from /proc.
S4 (HTTP history) is ``bench.history``, S8 (HTTP /changes catch-up) ``bench.changes``.
"""

from .common import Context
from .dedup import s6_dedup
from .idle import s3_idle
from .messaging import s1_direct, s2_fanout
from .reactions import s7_reactions
from .reads import s5_reads
from .scaleout import s9_scaleout

__all__ = ["Context", "s1_direct", "s2_fanout", "s3_idle", "s5_reads", "s6_dedup", "s7_reactions", "s9_scaleout"]
