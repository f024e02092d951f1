import pytest

from chats import services
from tests.conftest import receive_until, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)


async def test_send_and_receive(make_user):
    from channels.db import database_sync_to_async

    alice = await database_sync_to_async(make_user)("alice")
    bob = await database_sync_to_async(make_user)("bob")
    chat = (await database_sync_to_async(services.open_direct_chat)(user_id=alice.id, other_user_id=bob.id)).chat
    a = await ws_connect(alice)
    b = await ws_connect(bob)
    await a.send_json_to({"type": "message.send", "chat_id": chat.id, "client_id": "c1", "text": " hi ", "ref": "r1"})
    ack, _ = await receive_until(a, "message.ack")
    assert ack["message"]["text"] == "hi" and ack["ref"] == "r1" and ack["duplicate"] is False
    new, _ = await receive_until(b, "message.new")
    assert new["message"]["id"] == ack["message"]["id"]
    await b.send_json_to({"type": "message.read", "chat_id": chat.id, "up_to_seq": 1})
    read, _ = await receive_until(b, "chat.read")
    assert read["last_read_seq"] == 1
    ra, _ = await receive_until(a, "chat.read_all")
    assert ra["up_to_seq"] == 1
    await a.disconnect()
    await b.disconnect()
