"""Create the fault suite's users and chats through the services; print them as JSON.

Run as a child process with the private services in the environment:
``python -m tests.faults.seed '{"users": 10, "groups": 2, "group_size": 5, "directs": 3, "seed": 1}'``.
Every user is in one "all hands" group (the live-delivery probe uses it), the first four
are in a "quiet room" nobody in the population writes to, and there are random groups and
direct chats. Tokens are real access tokens (``AccessToken.for_user``).
"""

from __future__ import annotations

import json
import random
import sys


def main(spec: dict) -> dict:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.tokens import start_session
    from chats import services

    rng = random.Random(spec.get("seed", 1))
    User = get_user_model()
    users = [
        User.objects.create_user(username=f"fault{n}", email=f"fault{n}@example.com", password="Fault-Suite-42")
        for n in range(spec["users"])
    ]
    ids = [user.id for user in users]
    chats = []
    hands = services.create_group(user_id=ids[0], title="all hands", member_ids=ids[1:])
    chats.append({"id": hands.id, "kind": "group", "members": ids, "all_hands": True})
    # Nobody in the population writes here: the suite posts one message during each Redis outage and
    # checks that members learn of it although no later message in the chat would reveal the gap.
    quiet_members = ids[: min(4, len(ids))]
    quiet = services.create_group(user_id=quiet_members[0], title="quiet room", member_ids=quiet_members[1:])
    chats.append({"id": quiet.id, "kind": "group", "members": quiet_members, "quiet": True})
    for n in range(spec["groups"]):
        members = rng.sample(ids, min(spec["group_size"], len(ids)))
        chat = services.create_group(user_id=members[0], title=f"group {n}", member_ids=members[1:])
        chats.append({"id": chat.id, "kind": "group", "members": sorted(members)})
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < min(spec["directs"], len(ids) * (len(ids) - 1) // 2):
        a, b = sorted(rng.sample(ids, 2))
        pairs.add((a, b))
    for a, b in sorted(pairs):
        chat = services.open_direct_chat(user_id=a, other_user_id=b).chat
        chats.append({"id": chat.id, "kind": "direct", "members": [a, b]})
    return {
        "users": [
            {"id": user.id, "username": user.username, "token": str(AccessToken.for_user(user))} for user in users
        ],
        # A login-session token (carries a sid, so authentication also consults the cache/Redis).
        "session_token": str(start_session(users[0]).access_token),
        "chats": chats,
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
