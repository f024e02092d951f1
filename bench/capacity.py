"""The arithmetic behind docs/SCALING.md: ``python -m bench.capacity`` prints every derived figure.

No measurement here: the inputs are figures of docs/PERFORMANCE.md (named in docs/SCALING.md §1) and
the workload assumptions of docs/SCALING.md §2. Change an input, rerun, and update the plan.
"""

import math

MIX = [(0.70, 2), (0.25, 20), (0.05, 500)]  # share of messages, chat size
ACK_PER_DELIVERY = {2: 1.0, 20: 0.25, 500: 0.05}  # assumption
READ_ALL_PER_MSG = {2: 1.0, 20: 0.2, 500: 0.02}  # assumption: 1:1 one advance per ack
C_SEND = 1.1  # ms server CPU per 1:1 message incl. its delivery (S1)
C_DELIV = 0.73e3 / 20063  # ms per direct delivery (S2: 73 % of a core at 20 063/s)
C_QDELIV = 0.15  # ms per small fan-out delivery (d5b7218 profile 0.1-0.2)
C_ACK = 0.7  # ms server CPU per read ack (S5)
C_RL = 0.09  # ms rate-limit round trip (upper bound from cache.get 60-89 us)
C_CONN = 1000 / 1040  # ms per handshake, upper bound (S3 1 040 connects/s on one process)
C_REST = 7.0  # ms per REST read (S4 p50 6.5-7.6 ms wall, sequential)
REST_PER_RECONNECT = 2
LIFETIME_S = 1800  # assumption: mean socket lifetime 30 min
BUDGET = 600.0  # ms CPU per s per process (60 % of a core)
C_CMD = 0.015  # ms redis-py CPU per pipelined command / per received small envelope (assumption)
C_ENV = {2: 0.015, 20: 0.020, 500: 0.070}  # ms to parse one envelope on a process (assumption)
PG_SEND = 0.5
PG_ACK = 0.5
PG_RECONNECT = 0.6  # ms PostgreSQL CPU
REDIS_BUDGET = 60000  # command-equivalents/s per Redis core at 60 % (assumption: 100 k/s/core)
SUB_DELIV = 0.25  # command-equivalents per pub/sub delivery to a subscriber (assumption)

R = sum(s * (n - 1) for s, n in MIX)
acks = sum(s * (n - 1) * ACK_PER_DELIVERY[n] for s, n in MIX)
ra_events = sum(s * READ_ALL_PER_MSG[n] for s, n in MIX)
ra_deliv = sum(s * READ_ALL_PER_MSG[n] * n for s, n in MIX)
print(
    f"recipients/msg {R:.3f} acks/msg {acks:.3f} read_all events/msg {ra_events:.3f} read_all deliveries/msg {ra_deliv:.3f}"
)
new_cpu = sum(s * (C_SEND + (n - 2) * C_DELIV) for s, n in MIX)
ack_cpu = acks * C_ACK
ra_cpu = sum(s * READ_ALL_PER_MSG[n] * n * (C_QDELIV if n < 16 else C_DELIV) for s, n in MIX)
per_msg = new_cpu + ack_cpu + ra_cpu + C_RL
print(f"cpu/msg: new {new_cpu:.3f} ack {ack_cpu:.3f} read_all {ra_cpu:.3f} rl {C_RL} total {per_msg:.3f}")
events = 1 + acks + ra_events
env_parse = (
    sum(s * C_ENV[n] for s, n in MIX) + acks * C_ENV[2] + sum(s * READ_ALL_PER_MSG[n] * C_ENV[n] for s, n in MIX)
)
print(f"events/msg {events:.3f}; broadcast parse per process per msg {env_parse * 1000:.1f} us")
per_reconnect = C_CONN + REST_PER_RECONNECT * C_REST


def D(P, members):  # distinct processes holding the other members (random placement, 1 socket per user)
    k = members - 1
    return P * (1 - (1 - 1 / P) ** k) if P > 1 else 1


def routing(P):
    smembers = R + acks + ra_deliv
    pub = sum(s * D(P, n) for s, n in MIX) + acks * 1 + sum(s * READ_ALL_PER_MSG[n] * D(P, n + 1) for s, n in MIX)
    return smembers, pub


for U in (10_000, 100_000, 1_000_000):
    M = U / 60
    conn = U / LIFETIME_S
    work = M * per_msg + conn * per_reconnect
    bparse = M * env_parse
    Pb = work / (BUDGET - bparse) if bparse < BUDGET else float("inf")
    # routing: iterate P
    P = max(2, work / BUDGET)
    for _ in range(20):
        sm, pub = routing(P)
        over = sm * C_CMD + pub * C_CMD + pub * C_CMD
        P = (work + M * over) / BUDGET
    sm, pub = routing(P)
    print(
        f"\nU={U}: M={M:.1f}/s deliveries(new)={M * R:.0f}/s read_all deliv={M * ra_deliv:.0f} acks={M * acks:.0f}/s connects={conn:.1f}/s"
    )
    print(
        f"  work {work:.0f} ms/s (msgs {M * per_msg:.0f}, churn {conn * per_reconnect:.0f}); broadcast parse/process {bparse:.0f} ms/s; P_broadcast={Pb:.2f}"
    )
    print(
        f"  routing: P={P:.2f} smembers/msg {sm:.2f} publish/msg {pub:.2f} overhead/msg {(sm * C_CMD + 2 * pub * C_CMD):.3f} ms"
    )
    Pbi = math.ceil(Pb) if Pb != float("inf") else None
    for label, Pn in (("broadcast", Pbi), ("routing", math.ceil(P))):
        if Pn is None:
            print(f"  {label}: infeasible")
            continue
        cmds_b = M * (events + 2) + conn * 5
        deliv_b = M * events * Pn
        print(
            f"  {label} P={Pn}: broadcast cmds {cmds_b:.0f}/s, sub deliveries {deliv_b:.0f}/s, cmd-eq {cmds_b + SUB_DELIV * deliv_b:.0f}"
        )
    Pn = math.ceil(P)
    sm, pub = routing(Pn)
    cmds_r = M * (sm + pub + 2) + conn * (5 + 1) + conn * 1 + Pn / 5
    print(
        f"  routing P={Pn}: cmds {cmds_r:.0f}/s (smembers {M * sm:.0f}, publish {M * pub:.0f}), deliveries {M * pub:.0f}, cmd-eq {cmds_r + SUB_DELIV * M * pub:.0f}, shards {(cmds_r + SUB_DELIV * M * pub) / REDIS_BUDGET:.2f}"
    )
    pg = M * (PG_SEND + acks * PG_ACK) + conn * PG_RECONNECT
    commits = M * (1 + acks + ra_events)
    stmts = M * (2 + 2 * acks)
    print(
        f"  PG cpu {pg:.0f} ms/s = {pg / 1000:.2f} cores; write commits {commits:.0f}/s; statements {stmts:.0f}/s; inserts {M:.0f}/s membership upd {M * (1 + acks):.0f}/s chat upd {M * (1 + ra_events):.0f}/s"
    )
    wal = M * 1.1 + M * acks * 0.45 + M * ra_events * 0.15
    print(
        f"  WAL no-FPW ~{wal / 1000:.2f} MB/s; msg storage {M * 410 / 1e6:.2f} MB/s = {M * 410 * 3600 / 1e9:.1f} GB/h"
    )
    mem = U * 27.8 / 1024
    print(f"  socket mem {mem:.0f} MiB = {mem / 1024:.2f} GiB")

# --- docs/SCALING.md §0: the same model with the inputs re-measured in issue 15 ---------------
C_SEND_NOW = 1.4  # ms server CPU per 1:1 message, uvicorn, routing on (S1 CPU ms/msg 1.30-1.55)
C_ACK_NOW = 0.76  # ms per read ack (S5: 76 % of a core at 1 000 acks/s)
PG_SEND_NOW = 1.0  # ms PostgreSQL execution per send (pg_stat_statements, 0.92-1.16)
CHURN_MS = 15  # ms per reconnect (handshake + 2 catch-up reads, §2)
new_now = sum(s * (C_SEND_NOW + (n - 2) * C_DELIV) for s, n in MIX)
per_msg_now = new_now + acks * C_ACK_NOW + ra_cpu + C_RL
print(
    f"\n§0 re-measured: cpu/msg new {new_now:.2f} ack {acks * C_ACK_NOW:.2f} read_all {ra_cpu:.2f} rl {C_RL} total {per_msg_now:.2f} ms"
)
for U in (10_000, 100_000, 1_000_000):
    M, conn = U / 60, U / LIFETIME_S
    work = M * per_msg_now + conn * CHURN_MS
    print(
        f"  U={U}: work {work:.0f} ms/s, processes {work / BUDGET:.1f}, PostgreSQL for sends {M * PG_SEND_NOW / 1000:.2f} cores"
    )
