"""Bulk load data for benchmarks: ``manage.py seed_data --users N --chats M --messages K``.

The data set is a pure function of its :class:`LoadPlan` (see :mod:`.plan` for the layout):
users ``load_0000001`` .. ``load_<N>`` sharing one password hash, groups of
``group_size`` members first, direct chats for the rest of the chats, chat 1 holding
``big_chat_messages`` messages and the rest spread evenly; message ``s`` of chat ``c``
has ``seq = s`` and ``client_id = "load-<c>-<s>"``.

Everything the services maintain holds for the loaded rows: ``seq`` runs 1..last_seq
without gaps, ``last_activity_at`` is the newest message's time, every member's
``last_read_seq`` lies between the seq of their own newest message and ``last_seq``,
``read_all_seq`` is the lowest watermark, direct chats carry ``direct_key`` and two
memberships, every group has one owner, its creator. The change counter is what sends alone
leave: message ``version = seq``, chat ``version = last_seq``; no message is edited, deleted,
a reply or a forward, none has reactions, no chat has pins.

Idempotent and resumable: users are found by username; a chat is written together
with its memberships and all its messages in one transaction, so a chat that exists
(a group by title and owner, a direct chat by ``direct_key``) is complete and is
skipped. Rerunning with other numbers only adds the users and chats that are missing;
existing chats keep what they hold.

Rows go into PostgreSQL, the project's only database, through ``COPY`` (psycopg 3); ids
come from the tables' own sequences (``nextval``), so no ``setval`` is needed afterwards;
the tables are vacuumed and analyzed at the end (only analyzed inside a transaction, as in
tests).

``seed_data --feed`` loads the feed's data set instead (:mod:`.feed`): the same users, channels
with power-law audiences, their posts and the read model the feed's handlers would have left.

A development tool (see :mod:`devtools`): not in the production image.
"""

from .feed import FeedLoader, FeedPlan, FeedReport, load_users
from .loader import Loader, LoadReport
from .plan import LOAD_PASSWORD, LoadPlan, username

__all__ = [
    "LOAD_PASSWORD",
    "FeedLoader",
    "FeedPlan",
    "FeedReport",
    "LoadPlan",
    "LoadReport",
    "Loader",
    "load_users",
    "username",
]
