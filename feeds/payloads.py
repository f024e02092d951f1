"""The JSON of a post as the feed shows it."""

from __future__ import annotations

from attachments.payloads import attachment_payload
from chats.payloads import iso

from .selectors import FeedPost


def post_payload(post: FeedPost) -> dict:
    return {
        "id": post.id,
        "channel": {"id": post.channel_id, "title": post.channel_title, "handle": post.channel_handle},
        "seq": post.seq,
        "sender_id": post.sender_id,
        "text": post.text,
        "attachments": [attachment_payload(entry) for entry in post.attachments],
        "created_at": iso(post.created_at),
        "edited_at": iso(post.edited_at) if post.edited_at is not None else None,
        "version": post.version,
        "likes_count": post.likes_count,
        "liked_by_me": post.liked_by_me,
    }
