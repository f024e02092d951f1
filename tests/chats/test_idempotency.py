"""``Idempotency-Key`` on the channel commands (issue 14): a repeated key returns the original
answer and changes nothing -- even after the state moved on, and for 20 parallel repeats -- the
same key for another command is refused, a failed command stores nothing, and a post's key is
its client_id."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from chats import idempotency, services
from chats.models import Chat, CommandKey, Message, Reaction, Subscription
from tests.chats.test_concurrency import Workers

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    settings.SEND_RATE_LIMIT = 0
    settings.MESSAGE_CHANGE_RATE_LIMIT = 0
    settings.CHAT_CHANGE_RATE_LIMIT = 0
    settings.GROUP_CREATE_DAILY_LIMIT = 0


def _headers(key):
    return {"HTTP_IDEMPOTENCY_KEY": key}


def test_a_repeated_like_key_replays_the_first_answer_after_an_unlike(api, make_user):
    owner, fan = make_user(), make_user()
    channel = services.create_channel(user_id=owner.id, title="K", handle="keyed")
    services.subscribe(user_id=fan.id, chat_id=channel.id)
    post = services.send_message(user_id=owner.id, chat_id=channel.id, client_id="p", text="hi").message
    url = f"/api/posts/{post.id}/like"
    first = api(fan).post(url, **_headers("like-1"))
    assert first.status_code == 200 and first.json()["liked_by_me"] is True
    assert "Idempotent-Replayed" not in first
    assert api(fan).delete(url, **_headers("unlike-1")).json()["likes_count"] == 0
    # The like's key again: the first answer, and no like is added back.
    again = api(fan).post(url, **_headers("like-1"))
    assert (again.status_code, again.json(), again["Idempotent-Replayed"]) == (200, first.json(), "true")
    assert not Reaction.objects.filter(message_id=post.id).exists()
    # The key for another command: refused, nothing done.
    other = api(fan).delete(url, **_headers("like-1"))
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    assert api(fan).post(f"/api/posts/{post.id + 1}/like", **_headers("like-1")).status_code == 409
    # Without a key the command just runs.
    assert api(fan).post(url).json()["likes_count"] == 1


def test_subscribe_create_and_failures(api, make_user):
    owner, reader = make_user(), make_user()
    created = api(owner).post("/api/channels", {"title": "Once", "handle": "onlyonce"}, format="json", **_headers("c1"))
    assert created.status_code == 201
    replay = api(owner).post("/api/channels", {"title": "Once", "handle": "onlyonce"}, format="json", **_headers("c1"))
    assert (replay.status_code, replay.json()) == (201, created.json())
    assert Chat.objects.filter(kind="channel").count() == 1
    cid = created.json()["id"]
    url = f"/api/channels/{cid}/subscription"
    assert api(reader).post(url, {}, format="json", **_headers("s1")).status_code == 201
    api(reader).delete(url)
    replay = api(reader).post(url, {}, format="json", **_headers("s1"))
    assert replay.status_code == 201 and replay.json()["subscribers_count"] == 1  # the first answer
    assert not Subscription.objects.exists()  # and nothing done
    # A command that fails stores nothing: the key is free for the retry.
    private = services.create_channel(user_id=owner.id, title="Closed")
    purl = f"/api/channels/{private.id}/subscription"
    assert api(reader).post(purl, {"invite": "nope"}, format="json", **_headers("s2")).status_code == 404
    assert not CommandKey.objects.filter(key="s2").exists()
    ok = api(reader).post(purl, {"invite": private.invite_token}, format="json", **_headers("s2"))
    assert ok.status_code == 201
    # Keys are per user.
    assert api(owner).post(purl, {}, format="json", **_headers("s2")).status_code == 201


@pytest.mark.parametrize("key", ["", "x" * 65, "spa ce", "ключ", "tab\t"])
def test_bad_keys_are_refused(api, make_user, key):
    owner = make_user()
    channel = services.create_channel(user_id=owner.id, title="T", handle="badkeys")
    response = api(make_user()).post(f"/api/channels/{channel.id}/subscription", {}, format="json", **_headers(key))
    assert response.status_code == 400 and response.json()["code"] == "validation_error"
    assert not Subscription.objects.exists()


def test_a_posts_key_is_its_client_id(api, make_user):
    owner = make_user()
    channel = services.create_channel(user_id=owner.id, title="P", handle="postkeys")
    url = f"/api/chats/{channel.id}/messages"
    first = api(owner).post(url, {"text": "one"}, format="json", **_headers("post-1"))
    assert first.status_code == 201 and first.json()["client_id"] == "post-1"
    again = api(owner).post(url, {"text": "one"}, format="json", **_headers("post-1"))
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    same = api(owner).post(url, {"client_id": "post-1", "text": "one"}, format="json", **_headers("post-1"))
    assert same.status_code == 200
    differ = api(owner).post(url, {"client_id": "post-2", "text": "x"}, format="json", **_headers("post-1"))
    assert differ.status_code == 400 and differ.json()["code"] == "validation_error"
    missing = api(owner).post(url, {"text": "x"}, format="json")
    assert missing.status_code == 400 and "client_id" in missing.json()["detail"]
    assert Message.objects.filter(chat_id=channel.id, kind="text").count() == 1


@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_repeats_of_a_key_run_the_command_once(api, make_user):
    owner, fans = make_user(), [make_user() for _ in range(2)]
    channel = services.create_channel(user_id=owner.id, title="Race", handle="keyrace")
    for fan in fans:
        services.subscribe(user_id=fan.id, chat_id=channel.id)
    post = services.send_message(user_id=owner.id, chat_id=channel.id, client_id="p", text="hi").message

    def like(fan):
        response = api(fan).post(f"/api/posts/{post.id}/like", **_headers("same-key"))
        return response.status_code, response.json(), response.get("Idempotent-Replayed")

    results = Workers([lambda f=f: like(f) for f in fans for _ in range(10)]).run()
    assert all(body["liked_by_me"] for _, body, _ in results)
    assert sum(replayed is None for _, _, replayed in results) == 2  # one first use per user
    assert {status for status, _, _ in results} == {200}
    assert Reaction.objects.filter(message_id=post.id).count() == 2
    assert CommandKey.objects.count() == 2


def test_expired_keys_are_free_again_and_purged(api, make_user, settings):
    owner, fan = make_user(), make_user()
    channel = services.create_channel(user_id=owner.id, title="Old", handle="oldkeys")
    url = f"/api/channels/{channel.id}/subscription"
    api(fan).post(url, {}, format="json", **_headers("k"))
    api(fan).delete(url)
    CommandKey.objects.update(created_at=timezone.now() - dt.timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS + 1))
    again = api(fan).post(url, {}, format="json", **_headers("k"))
    assert "Idempotent-Replayed" not in again and Subscription.objects.count() == 1  # ran again
    CommandKey.objects.update(created_at=timezone.now() - dt.timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS + 1))
    assert idempotency.purge() == 1
    assert not CommandKey.objects.exists()
