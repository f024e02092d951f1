"""Direct PostgreSQL access for the harness: create the bench database, read pg_stat counters.

The harness never writes domain rows through SQL while a server runs except to reset
the read-ack group's watermarks between runs and to delete S10's uploads after it (fixture
resets, not code paths under test).
"""

from __future__ import annotations

import time

import psycopg

TABLES = ("chats_message", "chats_chat", "chats_membership")


def admin_url(base: str) -> str:
    return f"{base}/postgres"


def connect(base: str, db: str, **kw) -> psycopg.Connection:
    return psycopg.connect(f"{base}/{db}", autocommit=True, **kw)


# Tables every send or read rewrites a row of (the chat's counters, the sender's watermark).
HOT_TABLES = ("chats_chat", "chats_membership", "chats_message")


def vacuum_hot_tables(base: str, db: str) -> float:
    """VACUUM (ANALYZE) the tables sends and reads update; returns the seconds it took.

    The bench database lives across runs, and a machine may run PostgreSQL with autovacuum off
    (this one's CI configuration does): every send leaves a dead ``chats_membership`` tuple (the
    sender's watermark is indexed, so the update is never HOT), and without a vacuum the send
    statement slowed down run after run -- S1 at 500 msgs/s, p50 9-11 ms before, 3.1-3.3 ms
    after one VACUUM (docs/PERFORMANCE.md, "The S1 stalls"). Each measured step starts from
    vacuumed tables, as a deployment with autovacuum on would be.
    """
    started = time.perf_counter()
    with connect(base, db) as conn:
        conn.execute(f"VACUUM (ANALYZE) {', '.join(HOT_TABLES)}")  # constant table names  # nosec B608
    return time.perf_counter() - started


def database_exists(base: str, db: str) -> bool:
    with psycopg.connect(admin_url(base), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db]).fetchone() is not None


def ensure_database(base: str, db: str) -> bool:
    """Create ``db`` if missing; True if it was created."""
    if database_exists(base, db):
        return False
    with psycopg.connect(admin_url(base), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    return True


def table_writes(base: str, db: str) -> dict[str, dict[str, int]]:
    """Cumulative rows inserted/updated/deleted per table (pg_stat_user_tables), fresh snapshot."""
    with connect(base, db) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables WHERE relname = ANY(%s)",
            [list(TABLES)],
        ).fetchall()
        sessions = conn.execute(
            "SELECT sessions, xact_commit FROM pg_stat_database WHERE datname = %s",
            [db],
        ).fetchone()
    out = {name: {"ins": ins, "upd": upd, "del": dele} for name, ins, upd, dele in rows}
    out["_db"] = {
        "sessions": int(sessions[0] or 0),
        "xact_commit": int(sessions[1] or 0),
    }
    return out


def writes_delta(before: dict, after: dict) -> dict[str, dict[str, int]]:
    return {name: {k: after[name][k] - before.get(name, {}).get(k, 0) for k in after[name]} for name in after}


def settled_table_writes(base: str, db: str, *, timeout_s: float = 3.0) -> dict:
    """pg_stat counters once they stop moving (backends flush their stats on exit or when idle)."""
    last = table_writes(base, db)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        time.sleep(0.5)
        now = table_writes(base, db)
        if {k: v for k, v in now.items() if k != "_db"} == {k: v for k, v in last.items() if k != "_db"}:
            return now
        last = now
    return last


def reset_read_group(base: str, db: str, *, chat_id: int, watermark: int) -> None:
    """Put every member of the read-ack group back at ``watermark`` so each run starts alike."""
    with connect(base, db) as conn, conn.transaction():
        conn.execute(
            "UPDATE chats_membership SET last_read_seq = %s WHERE chat_id = %s",
            [watermark, chat_id],
        )
        conn.execute(
            "UPDATE chats_chat SET read_all_seq = %s WHERE id = %s",
            [watermark, chat_id],
        )


def stored_with_prefix(base: str, db: str, prefix: str) -> tuple[int, int]:
    """(messages, distinct (sender, client_id)) whose client_id starts with ``prefix``."""
    with connect(base, db) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (sender_id, client_id)) FROM chats_message WHERE client_id LIKE %s",
            [prefix.replace("%", r"\%").replace("_", r"\_") + "%"],
        ).fetchone()
    return int(row[0]), int(row[1])


def seq_gaps(base: str, db: str, chat_ids: list[int]) -> list[tuple[int, int, int]]:
    """(chat_id, last_seq, messages) for chats whose seq is not exactly 1..last_seq."""
    with connect(base, db) as conn:
        rows = conn.execute(
            """
            SELECT c.id, c.last_seq, count(m.id), coalesce(max(m.seq), 0), coalesce(min(m.seq), 1)
            FROM chats_chat c LEFT JOIN chats_message m ON m.chat_id = c.id
            WHERE c.id = ANY(%s) GROUP BY c.id, c.last_seq
            """,
            [chat_ids],
        ).fetchall()
    return [
        (cid, last, n)
        for cid, last, n, mx, mn in rows
        if not (n == last == mx and mn == 1) and not (n == 0 and last == 0)
    ]


def reaction_state(base: str, db: str, chat_ids: list[int]) -> dict:
    """S7: the chats' text messages, their reaction rows and cached counts, and the chats' versions.

    ``messages`` [(chat_id, seq, message_id)] by chat and seq; ``rows`` {(message_id, emoji): COUNT
    of chats_reaction rows}; ``cached`` {(message_id, emoji): count in chats_message.reactions};
    ``mine`` {(message_id, user_id, emoji)}; ``versions`` {chat_id: version}.
    """
    with connect(base, db) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        messages = conn.execute(
            """SELECT chat_id, seq, id FROM chats_message
               WHERE chat_id = ANY(%s) AND kind = 'text' AND deleted_at IS NULL ORDER BY chat_id, seq""",
            [chat_ids],
        ).fetchall()
        mine = conn.execute(
            """SELECT r.message_id, r.user_id, r.emoji FROM chats_reaction r
               JOIN chats_message m ON m.id = r.message_id WHERE m.chat_id = ANY(%s)""",
            [chat_ids],
        ).fetchall()
        cached = conn.execute(
            """SELECT m.id, e->>0, (e->>1)::int FROM chats_message m, jsonb_array_elements(m.reactions) AS e
               WHERE m.chat_id = ANY(%s)""",
            [chat_ids],
        ).fetchall()
        versions = dict(conn.execute("SELECT id, version FROM chats_chat WHERE id = ANY(%s)", [chat_ids]).fetchall())
    rows: dict[tuple[int, str], int] = {}
    for message_id, _user, emoji in mine:
        rows[(message_id, emoji)] = rows.get((message_id, emoji), 0) + 1
    return {
        "messages": messages,
        "rows": rows,
        "cached": {(m, e): n for m, e, n in cached},
        "mine": {tuple(r) for r in mine},
        "versions": versions,
    }


def chat_version(base: str, db: str, chat_id: int) -> int | None:
    with connect(base, db) as conn:
        row = conn.execute("SELECT version FROM chats_chat WHERE id = %s", [chat_id]).fetchone()
    return row[0] if row else None


def remove_uploads(base: str, db: str, upload_ids: list[int]) -> dict[str, int]:
    """Delete S10's uploads, release their blobs' references and delete the blobs nothing holds
    any more (their files go with the run's ``ATTACHMENTS_DIR``): a fixture cleanup after the
    scenario, not a code path under test."""
    if not upload_ids:
        return {"uploads": 0, "blobs": 0}
    with connect(base, db) as conn, conn.transaction():
        released = conn.execute(
            "WITH gone AS (DELETE FROM attachments_upload WHERE id = ANY(%s) RETURNING blob_id),"
            " counted AS (SELECT blob_id, count(*) AS n FROM gone GROUP BY blob_id)"
            " UPDATE attachments_blob b SET refs = GREATEST(b.refs - counted.n, 0) FROM counted"
            " WHERE b.id = counted.blob_id RETURNING b.id, counted.n",
            [list(upload_ids)],
        ).fetchall()
        blobs = conn.execute(
            "DELETE FROM attachments_blob b WHERE b.id = ANY(%s) AND b.refs = 0"
            " AND NOT EXISTS (SELECT 1 FROM attachments_upload u WHERE u.blob_id = b.id)",
            [[blob_id for blob_id, _ in released]],
        ).rowcount
    return {"uploads": sum(n for _, n in released), "blobs": blobs}
