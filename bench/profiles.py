"""Quick and full run sizes, and the targets from the performance issue."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    # S1: 1:1 chats, rising open-loop rate steps (msgs/s), each step_s long.
    s1_pairs: int
    s1_rates: tuple[int, ...]
    s1_step_s: float
    # Re-runs of a step that failed on latency alone (no loss, no errors, no abort).
    s1_retries: int
    # S2: one sender in a group of s2_group sockets; 1 msg/s for s2_slow_s, then delivery-rate steps.
    s2_group: int
    s2_slow_s: float
    s2_deliveries: tuple[int, ...]
    s2_step_s: float
    # S3: idle authenticated sockets.
    s3_sockets: int
    # S4: sequential requests per history query, and a time bound per query.
    s4_requests: int
    s4_max_s: float
    # S5: read acks per second in a group of s5_group members, for s5_s.
    s5_group: int
    s5_rate: int
    s5_s: float
    # S6: users with two sockets each, closed loop, s6_s per phase.
    s6_users: int
    s6_s: float
    # S7: reaction.add/remove at s7_rate for s7_s, over s7_chats groups of s7_members members
    # (one socket each), toggling S7_EMOJI on s7_messages messages per chat.
    s7_chats: int
    s7_members: int
    s7_messages: int
    s7_rate: int
    s7_s: float
    # S8: /changes catch-up over the history chat's S8_REACTIONS + S8_EDITS changes, s8_passes times.
    s8_passes: int
    # S9: s9_pairs 1:1 pairs over all server processes, each rate of s9_rates for s9_step_s.
    s9_pairs: int
    s9_rates: tuple[int, ...]
    s9_step_s: float
    # S10: s10_clients threads each uploading s10_uploads ~1 MiB JPEGs; s10_big_uploads 50 MiB
    # files; s10_downloads whole downloads and s10_ranges 64 KiB ranges of one; s10_small GETs of
    # a 1 KiB file by signed URL and as many with the token.
    s10_clients: int
    s10_uploads: int
    s10_big_uploads: int
    s10_downloads: int
    s10_ranges: int
    s10_small: int
    # How long after the last scheduled send a message may still arrive before it is lost.
    deadline_s: float
    # Stop a step's sends once the oldest undelivered message is this old (it has failed anyway).
    abort_backlog_s: float

    @property
    def users(self) -> int:
        return max(
            self.s3_sockets,
            self.s2_group,
            self.s5_group,
            2 * self.s1_pairs,
            2 * self.s6_users,
            self.s7_chats * self.s7_members,
            2 * self.s9_pairs,
        )


QUICK = Profile(
    name="quick",
    s1_pairs=50,
    s1_rates=(100, 250, 500, 750, 1000, 1250, 1500, 2000, 3000),
    s1_step_s=2.0,
    s1_retries=0,
    s2_group=200,
    s2_slow_s=3.0,
    s2_deliveries=(2000, 5000, 10000),
    s2_step_s=1.5,
    s3_sockets=1000,
    s4_requests=50,
    s4_max_s=3.0,
    s5_group=200,
    s5_rate=200,
    s5_s=3.0,
    s6_users=8,
    s6_s=3.0,
    s7_chats=100,
    s7_members=3,
    s7_messages=10,
    s7_rate=300,
    s7_s=3.0,
    s8_passes=3,
    s9_pairs=500,
    s9_rates=(100, 200),
    s9_step_s=5.0,
    s10_clients=2,
    s10_uploads=10,
    s10_big_uploads=1,
    s10_downloads=3,
    s10_ranges=500,
    s10_small=200,
    deadline_s=2.0,
    abort_backlog_s=1.0,
)

FULL = Profile(
    name="full",
    s1_pairs=200,
    s1_rates=(100, 250, 500, 750, 1000, 1500, 2000, 3000, 4000, 6000, 8000),
    s1_step_s=10.0,
    s1_retries=1,
    s2_group=1000,
    s2_slow_s=30.0,
    s2_deliveries=(2000, 5000, 10000, 20000),
    s2_step_s=5.0,
    s3_sockets=10000,
    s4_requests=200,
    s4_max_s=30.0,
    s5_group=1000,
    s5_rate=1000,
    s5_s=10.0,
    s6_users=16,
    s6_s=10.0,
    s7_chats=100,
    s7_members=3,
    s7_messages=10,
    s7_rate=1000,
    s7_s=10.0,
    s8_passes=10,
    s9_pairs=2000,
    s9_rates=(200, 400),
    s9_step_s=10.0,
    s10_clients=2,
    s10_uploads=50,
    s10_big_uploads=3,
    s10_downloads=10,
    s10_ranges=2000,
    s10_small=1000,
    deadline_s=5.0,
    abort_backlog_s=2.0,
)

PROFILES = {"quick": QUICK, "full": FULL}

# Targets for our server (issue 3); the references are shown against the same numbers.
S1_P99_MS = 25.0
S1_TARGET_RATE = 2000  # issue 3's absolute target, shown when the floor did not run
# Issue 15: ours must sustain at least this multiple of the Channels floor's S1 in the same run.
S1_FLOOR_RATIO = 1.5
S2_P99_MS = 150.0
S2_TARGET_DELIVERIES = 10_000
# A delivery-rate step counts as sustained when nothing is lost, the last recipient has
# each message within this bound (the server keeps up instead of queueing) ...
S2_SUSTAIN_P99_MS = 1000.0
# ... and the measured delivery rate reaches this fraction of the offered one.
S2_SUSTAIN_FRACTION = 0.9
S3_TARGET_KIB = 24.0
S3_TARGET_CONNECTS = 800
S4_P99_MS = 20.0
S5_P99_MS = 10.0
S6_MAX_OVERHEAD_PCT = 20.0
S7_P99_MS = 25.0
# Fully-qualified already (the server stores that form), so the replies name them as sent.
S7_EMOJI = ("👍", "🔥")
S8_P99_MS = 20.0
# S8's fixture: changes made once to the history chat (reactions, then edits of some of the
# reacted messages: 10 000 versions, S8_REACTIONS distinct messages), paged S8_PAGE at a time.
S8_REACTIONS = 8000
S8_EDITS = 2000
S8_PAGE = 200
# S10: issue 13 says an upload's body is streamed to disk, so the serving process's RSS during a
# 50 MiB upload stays "within a few MiB" of idle: peak - idle at most this.
S10_RSS_GROWTH_MIB = 8.0
# A "rows per ack" above this is not O(1).
S5_MAX_ROWS_PER_ACK = 3.0

MESSAGE_TEXT = "bench message: the quick brown fox jumps over the lazy dog 0123456789"
