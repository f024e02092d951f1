"""Broadcast channels over REST (issue 14): creating, finding, subscribing, posting, reading,
liking, and who may do which (the permission matrix), with the database state after each.

Posts are the channel's messages: they go through the chat endpoints, which admit a channel's
subscribers (and anyone for a public channel) as readers and only its staff as senders.
"""

from __future__ import annotations

import pytest

from chats import services
from chats.models import Chat, Membership, Reaction, Subscription
from tests.chats.test_concurrency import Workers

pytestmark = pytest.mark.django_db

LIKE = "❤️"


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    settings.SEND_RATE_LIMIT = 0
    settings.MESSAGE_CHANGE_RATE_LIMIT = 0
    settings.CHAT_CHANGE_RATE_LIMIT = 0
    settings.GROUP_CREATE_DAILY_LIMIT = 0


def _channel(api, owner, **body) -> dict:
    response = api(owner).post("/api/channels", {"title": "Daily News", **body}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def _post(api, user, channel_id: int, text: str, key: str):
    return api(user).post(f"/api/chats/{channel_id}/messages", {"client_id": key, "text": text}, format="json")


# --- create and find ----------------------------------------------------------------------------


def test_a_public_channel_has_a_handle_an_owner_and_a_first_system_message(api, make_user):
    owner = make_user()
    channel = _channel(api, owner, handle="@DailyNews", about="Everything, daily.")
    assert channel | {"id": 0, "created_at": "", "invite_token": ""} == {
        "id": 0,
        "kind": "channel",
        "title": "Daily News",
        "handle": "DailyNews",
        "about": "Everything, daily.",
        "public": True,
        "subscribers_count": 0,
        "subscribed": False,
        "role": "owner",
        "invite_token": "",
        "created_at": "",
        "last_seq": 1,
        "version": 1,
        "pinned_seqs": [],
    }
    assert channel["invite_token"]  # the staff see it
    chat = Chat.objects.get(id=channel["id"])
    assert (chat.kind, chat.handle, chat.last_seq) == ("channel", "DailyNews", 1)
    assert list(Membership.objects.filter(chat=chat).values_list("user_id", "role")) == [(owner.id, "owner")]
    # Not a chat kind POST /api/chats makes.
    refused = api(owner).post("/api/chats", {"kind": "channel", "title": "X"}, format="json")
    assert refused.status_code == 400 and refused.json()["code"] == "validation_error"


@pytest.mark.parametrize("handle", ["abc", "1news", "news_", "new$s", "n" * 33, "ünïcode"])
def test_bad_handles_are_refused(api, make_user, handle):
    response = api(make_user()).post("/api/channels", {"title": "T", "handle": handle}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "validation_error"
    assert not Chat.objects.filter(kind="channel").exists()


def test_a_handle_is_unique_whatever_its_case(api, make_user):
    _channel(api, make_user(), handle="TechTalk")
    response = api(make_user()).post("/api/channels", {"title": "Other", "handle": "techtalk"}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "handle_taken"
    assert Chat.objects.filter(kind="channel").count() == 1


def test_search_finds_public_channels_by_handle_or_title_prefix_most_subscribed_first(api, make_user):
    owner, reader = make_user(), make_user()
    small = _channel(api, owner, title="Cooking at home", handle="cookbook")
    big = _channel(api, owner, title="The Kitchen", handle="cooking_daily")
    _channel(api, owner, title="Cooking secrets")  # private: never found
    _channel(api, owner, title="Garden", handle="garden")
    services.subscribe(user_id=reader.id, chat_id=big["id"])

    def found(query):
        response = api(reader).get("/api/channels", {"search": query})
        assert response.status_code == 200
        return [c["id"] for c in response.json()]

    assert found("COOK") == [big["id"], small["id"]]  # by handle or title, any case
    assert found("the kit") == [big["id"]]
    assert found("@cooking") == [big["id"]]  # @ names handles only
    assert found("@cooking at") == []
    assert found("100%") == [] and found("_") == []  # LIKE wildcards are plain characters
    mine = api(reader).get("/api/channels").json()  # no search: my channels
    assert [(c["id"], c["subscribed"], c["invite_token"]) for c in mine] == [(big["id"], True, None)]


def test_a_channel_is_found_by_id_or_handle_and_a_private_one_only_by_its_readers(api, make_user):
    owner, outsider, reader = make_user(), make_user(), make_user()
    public = _channel(api, owner, handle="opennews")
    private = _channel(api, owner, title="Inner circle")
    assert api(outsider).get("/api/channels/@OpenNews").json()["id"] == public["id"]
    assert api(outsider).get(f"/api/channels/{public['id']}").json()["handle"] == "opennews"
    assert api(outsider).get(f"/api/channels/{private['id']}").status_code == 404
    assert api(outsider).get("/api/channels/nosuchhandle").status_code == 404
    services.subscribe(user_id=reader.id, chat_id=private["id"], invite=private["invite_token"])
    seen = api(reader).get(f"/api/channels/{private['id']}").json()
    assert (seen["subscribed"], seen["role"], seen["invite_token"], seen["public"]) == (True, None, None, False)


# --- subscriptions --------------------------------------------------------------------------------


def test_subscribing_and_unsubscribing_are_idempotent_and_counted_exactly(api, make_user):
    owner, reader = make_user(), make_user()
    channel = _channel(api, owner, handle="counted")
    url = f"/api/channels/{channel['id']}/subscription"
    first = api(reader).post(url, {}, format="json")
    assert first.status_code == 201
    assert first.json() == {"channel_id": channel["id"], "subscribed": True, "changed": True, "subscribers_count": 1}
    again = api(reader).post(url, {}, format="json")
    assert again.status_code == 200 and again.json()["changed"] is False and again.json()["subscribers_count"] == 1
    assert Subscription.objects.filter(chat_id=channel["id"]).count() == 1
    left = api(reader).delete(url)
    assert left.status_code == 200 and left.json() == {
        "channel_id": channel["id"],
        "subscribed": False,
        "changed": True,
        "subscribers_count": 0,
    }
    assert api(reader).delete(url).json()["changed"] is False
    assert Chat.objects.get(id=channel["id"]).subscribers_count == 0
    assert not Subscription.objects.exists()


def test_a_private_channel_takes_its_invite_token(api, make_user):
    owner, reader = make_user(), make_user()
    channel = _channel(api, owner)
    url = f"/api/channels/{channel['id']}/subscription"
    for body in ({}, {"invite": "wrong"}):
        response = api(reader).post(url, body, format="json")
        assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert api(reader).delete(url).status_code == 404  # unseen: the same answer
    assert api(reader).post(url, {"invite": channel["invite_token"]}, format="json").status_code == 201
    assert api(reader).post(url, {}, format="json").json()["changed"] is False  # in: no token needed
    assert Chat.objects.get(id=channel["id"]).subscribers_count == 1


def test_groups_and_direct_chats_take_no_subscriptions(api, make_user):
    owner, other = make_user(), make_user()
    group = services.create_group(user_id=owner.id, title="G", member_ids=[other.id])
    assert api(other).post(f"/api/channels/{group.id}/subscription", {}, format="json").status_code == 404
    assert not Subscription.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_subscribes_of_one_user_are_one_subscription_and_parallel_users_count_exactly(make_user):
    owner, reader = make_user(), make_user()
    others = [make_user() for _ in range(20)]
    channel = services.create_channel(user_id=owner.id, title="Race", handle="racing")
    same = Workers([lambda: services.subscribe(user_id=reader.id, chat_id=channel.id) for _ in range(20)]).run()
    assert sum(result.changed for result in same) == 1
    many = Workers([lambda u=u: services.subscribe(user_id=u.id, chat_id=channel.id) for u in others]).run()
    assert all(result.changed for result in many)
    assert sorted(result.subscribers_count for result in many) == list(range(2, 22))
    assert Chat.objects.get(id=channel.id).subscribers_count == 21 == Subscription.objects.count()
    gone = Workers(
        [lambda u=u: services.unsubscribe(user_id=u.id, chat_id=channel.id) for u in [*others, reader] * 2]
    ).run()
    assert sum(result.changed for result in gone) == 21
    assert Chat.objects.get(id=channel.id).subscribers_count == 0 == Subscription.objects.count()


# --- posting and reading: the permission matrix ------------------------------------------------------


def test_only_the_staff_post_and_readers_read_the_history(api, make_user):
    owner, admin, subscriber, outsider = make_user(), make_user(), make_user(), make_user()
    public = _channel(api, owner, handle="matrix")
    private = _channel(api, owner, title="Private")
    for channel in (public, private):
        Membership.objects.create(chat_id=channel["id"], user=admin, role=Membership.Role.ADMIN)
        services.subscribe(user_id=subscriber.id, chat_id=channel["id"], invite=channel["invite_token"])
    for channel in (public, private):
        assert _post(api, owner, channel["id"], "from the owner", f"o{channel['id']}").status_code == 201
        assert _post(api, admin, channel["id"], "from an admin", f"a{channel['id']}").status_code == 201
        refused = _post(api, subscriber, channel["id"], "me too", "s")
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    # An outsider may read a public channel (posting is forbidden), not a private one (not found).
    assert _post(api, outsider, public["id"], "hi", "x1").json()["code"] == "forbidden"
    assert _post(api, outsider, private["id"], "hi", "x2").status_code == 404
    for reader, channel, readable in [
        (subscriber, public, True),
        (subscriber, private, True),
        (outsider, public, True),
        (outsider, private, False),
    ]:
        cid = channel["id"]
        for path in (
            f"/api/chats/{cid}/messages",
            f"/api/chats/{cid}/messages/2",
            f"/api/chats/{cid}/messages/2/edits",
            f"/api/chats/{cid}/changes?after_version=0",
            f"/history/{cid}",
        ):
            response = api(reader).get(path)
            assert response.status_code == (200 if readable else 404), (path, response.json())
        if readable:
            texts = [m["text"] for m in api(reader).get(f"/api/chats/{cid}/messages").json()["results"]]
            assert texts[1:] == ["from the owner", "from an admin"]
    assert Chat.objects.get(id=public["id"]).last_seq == 3  # refusals took no seq


def test_readers_cannot_change_posts_and_the_staff_delete_any(api, make_user):
    owner, admin, subscriber = make_user(), make_user(), make_user()
    channel = _channel(api, owner, handle="changes")
    Membership.objects.create(chat_id=channel["id"], user=admin, role=Membership.Role.ADMIN)
    services.subscribe(user_id=subscriber.id, chat_id=channel["id"])
    seq = _post(api, owner, channel["id"], "news", "n1").json()["seq"]
    url = f"/api/chats/{channel['id']}/messages/{seq}"
    version = Chat.objects.get(id=channel["id"]).version
    assert api(subscriber).patch(url, {"text": "fake"}, format="json").json()["code"] == "forbidden"
    assert api(subscriber).delete(url).json()["code"] == "forbidden"
    assert api(subscriber).put(f"/api/chats/{channel['id']}/pins/{seq}").json()["code"] == "forbidden"
    assert Chat.objects.get(id=channel["id"]).version == version
    assert api(owner).patch(url, {"text": "news (fixed)"}, format="json").status_code == 200  # message rules
    assert api(admin).delete(url).status_code == 200  # an admin deletes the owner's post
    assert api(subscriber).get(url).json()["deleted"] is True


# --- likes ------------------------------------------------------------------------------------------


def test_likes_are_the_heart_reaction_idempotent_and_counted(api, make_user):
    owner, fan, passerby = make_user(), make_user(), make_user()
    channel = _channel(api, owner, handle="likes")
    services.subscribe(user_id=fan.id, chat_id=channel["id"])
    post = _post(api, owner, channel["id"], "like me", "l1").json()
    url = f"/api/posts/{post['id']}/like"
    liked = api(fan).post(url)
    assert liked.status_code == 200
    body = liked.json()
    assert body | {"version": 0} == {
        "id": post["id"],
        "channel_id": channel["id"],
        "seq": post["seq"],
        "likes_count": 1,
        "liked_by_me": True,
        "changed": True,
        "version": 0,
    }
    assert api(fan).post(url).json() | {"version": 0} == {**body, "changed": False, "version": 0}
    assert api(owner).post(url).json()["likes_count"] == 2
    # The same reaction rows and change log as any reaction.
    assert sorted(Reaction.objects.filter(message_id=post["id"]).values_list("user_id", "emoji")) == sorted(
        [(fan.id, LIKE), (owner.id, LIKE)]
    )
    changes = api(fan).get(f"/api/chats/{channel['id']}/changes?after_version={post['version']}").json()
    [changed] = changes["results"]
    assert changed["reactions"] == [{"emoji": LIKE, "count": 2, "me": True}]
    # A public channel's reader who has not subscribed may not like; nobody sees private posts.
    refused = api(passerby).post(url)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert api(fan).delete(url).json()["likes_count"] == 1
    assert api(fan).delete(url).json()["changed"] is False
    private = _channel(api, owner, title="Hidden")
    secret = _post(api, owner, private["id"], "secret", "p1").json()
    assert api(passerby).post(f"/api/posts/{secret['id']}/like").status_code == 404
    assert api(passerby).post("/api/posts/999999999/like").status_code == 404
    # Messages of groups are not posts.
    group = services.create_group(user_id=owner.id, title="G", member_ids=[fan.id])
    in_group = services.send_message(user_id=owner.id, chat_id=group.id, client_id="g1", text="hi").message
    assert api(fan).post(f"/api/posts/{in_group.id}/like").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_thirty_parallel_likes_and_unlikes_are_counted_exactly(make_user):
    owner = make_user()
    fans = [make_user() for _ in range(30)]
    channel = services.create_channel(user_id=owner.id, title="Hot", handle="hotposts")
    for fan in fans:
        services.subscribe(user_id=fan.id, chat_id=channel.id)
    post = services.send_message(user_id=owner.id, chat_id=channel.id, client_id="hot", text="hot").message
    twice = [f for f in fans for _ in range(2)]
    results = Workers([lambda f=f: services.like_post(user_id=f.id, post_id=post.id, liked=True) for f in twice]).run()
    assert sum(r.changed for r in results) == 30
    assert Reaction.objects.filter(message_id=post.id).count() == 30
    assert services.like_post(user_id=owner.id, post_id=post.id, liked=False).likes_count == 30
    quitters = fans[:10]
    Workers([lambda f=f: services.like_post(user_id=f.id, post_id=post.id, liked=False) for f in quitters]).run()
    chat = Chat.objects.get(id=channel.id)
    assert services.like_post(user_id=fans[-1].id, post_id=post.id, liked=True).likes_count == 20
    # Every change took one version: send 2, then 30 likes and 10 unlikes.
    assert chat.version == 2 + 30 + 10


def test_a_public_post_can_be_forwarded_by_a_reader_and_its_files_downloaded(api, make_user, tmp_path, settings):
    owner, reader, friend = make_user(), make_user(), make_user()
    channel = _channel(api, owner, handle="forwarded")
    post = _post(api, owner, channel["id"], "share me", "f1").json()
    direct = services.open_direct_chat(user_id=reader.id, other_user_id=friend.id).chat
    response = api(reader).post(
        f"/api/chats/{direct.id}/forward",
        {"from_chat_id": channel["id"], "seqs": [post["seq"]], "client_ids": ["fw1"]},
        format="json",
    )
    assert response.status_code == 201, response.json()
    [copy] = response.json()["messages"]
    assert copy["text"] == "share me"
    assert copy["forwarded_from"]["chat_id"] == channel["id"]  # the reader may see the source


def test_an_empty_search_lists_every_public_channel(api, make_user):
    owner = make_user()
    public = [_channel(api, owner, title=f"C{n}", handle=f"chan{n}x") for n in range(3)]
    _channel(api, owner, title="Hidden")
    found = api(make_user()).get("/api/channels?search=").json()
    assert sorted(c["id"] for c in found) == sorted(c["id"] for c in public)


def test_the_owner_appoints_and_removes_admins_who_post(api, make_user):
    owner, admin, other = make_user(), make_user(), make_user()
    channel = _channel(api, owner, handle="staffed")
    members = f"/api/chats/{channel['id']}/members"
    refused = api(owner).post(members, {"user_id": admin.id}, format="json")  # role defaults to member
    assert refused.status_code == 400 and refused.json()["code"] == "validation_error"
    assert api(owner).post(members, {"user_id": admin.id, "role": "admin"}, format="json").status_code == 201
    assert _post(api, admin, channel["id"], "from the new admin", "na1").status_code == 201
    assert api(admin).get(f"/api/channels/{channel['id']}").json()["role"] == "admin"
    # Only the owner appoints; an admin cannot remove another admin.
    assert api(admin).post(members, {"user_id": other.id, "role": "admin"}, format="json").status_code == 403
    assert api(owner).delete(f"{members}/{admin.id}").status_code == 204
    assert _post(api, admin, channel["id"], "no longer", "na2").json()["code"] == "forbidden"
    assert list(Membership.objects.filter(chat_id=channel["id"]).values_list("user_id", flat=True)) == [owner.id]


def test_a_deleted_user_leaves_the_subscriber_counts_exact(api, make_user):
    from accounts import services as accounts_services

    owner, reader = make_user(), make_user()
    channels = [_channel(api, owner, title=f"D{n}", handle=f"deleted{n}x") for n in range(2)]
    for channel in channels:
        services.subscribe(user_id=reader.id, chat_id=channel["id"])
    accounts_services.delete_user(user=reader)
    assert [Chat.objects.get(id=c["id"]).subscribers_count for c in channels] == [0, 0]
    assert not Subscription.objects.exists()
