"""Input rules shared by REST serializers, socket frames and services: defined once here.

Each ``clean_*`` returns the cleaned value or raises :class:`~chats.exceptions.InvalidInput`
with a field error; :func:`as_id` answers None for anything that is not a database id, so
callers turn it into their own "not found".
"""

from __future__ import annotations

import re
import unicodedata

import emoji as emoji_data
from django.conf import settings

from .exceptions import ChatNotFound, InvalidInput

# Largest value of a bigint primary key (and of a seq).
MAX_ID = 2**63 - 1
CLIENT_ID_MAX = 64
TITLE_MAX = 128
# Messages one delete or forward may name.
BATCH_MAX = 100
EMOJI_MAX = 64  # characters: the longest ZWJ sequences are ~10

# What draws nothing on its own: controls, format characters (zero-width space and joiners,
# bidi controls, the BOM, tag characters), separators (spaces), combining marks alone
# (variation selectors, the combining grapheme joiner) ...
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"})
# ... and letters and symbols whose glyph is blank: Hangul fillers, the braille blank.
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_blank(text: str) -> bool:
    """Whether ``text`` shows nothing: empty, or only whitespace and invisible characters."""
    return all(char in _BLANK_GLYPHS or unicodedata.category(char) in _INVISIBLE_CATEGORIES for char in text)


def as_id(value: object) -> int | None:
    """``value`` as a database id (1..MAX_ID; ints and digit strings from URLs), else None."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= MAX_ID else None


def chat_id_or_404(value: object) -> int:
    """A chat id, or ChatNotFound: an id that cannot exist is answered like a foreign chat."""
    chat_id = as_id(value)
    if chat_id is None:
        raise ChatNotFound()
    return chat_id


def clean_seq(value: object, *, field: str = "up_to_seq") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not (0 <= value <= MAX_ID):
        raise InvalidInput({field: ["Must be a non-negative integer."]})
    return value


def clean_text(text: object) -> str:
    """Message text: a string of 1..MESSAGE_MAX_LENGTH characters after trimming, not blank
    (:func:`is_blank`: only invisible characters count as blank too)."""
    if not isinstance(text, str):
        raise InvalidInput({"text": ["Must be a string."]})
    if "\x00" in text:  # PostgreSQL text cannot hold NUL; REST (DRF) refuses it the same way
        raise InvalidInput({"text": ["Null characters are not allowed."]})
    text = text.strip()
    if is_blank(text):
        raise InvalidInput({"text": ["Must not be blank."]})
    if len(text) > settings.MESSAGE_MAX_LENGTH:
        raise InvalidInput({"text": [f"At most {settings.MESSAGE_MAX_LENGTH} characters."]})
    return text


def clean_caption(text: object) -> str:
    """The text of a message that carries files: as :func:`clean_text`, but it may be empty."""
    if text is None or (isinstance(text, str) and is_blank(text.strip())):
        return ""
    return clean_text(text)


def clean_attachment_ids(value: object) -> list[int]:
    """Uploads a message carries: none (None or []) or 1..ATTACHMENTS_PER_MESSAGE distinct ids."""
    if value is None:
        return []
    limit = settings.ATTACHMENTS_PER_MESSAGE
    if not isinstance(value, list) or len(value) > limit:
        raise InvalidInput({"attachment_ids": [f"Must be a list of at most {limit} upload ids."]})
    ids = [clean_message_seq(item, field="attachment_ids") for item in value]
    if len(set(ids)) != len(ids):
        raise InvalidInput({"attachment_ids": ["Must not repeat an upload."]})
    return ids


def clean_client_id(client_id: object) -> str:
    if not isinstance(client_id, str) or not (1 <= len(client_id) <= CLIENT_ID_MAX) or not client_id.strip():
        raise InvalidInput({"client_id": [f"Must be a string of 1..{CLIENT_ID_MAX} characters."]})
    if "\x00" in client_id:
        raise InvalidInput({"client_id": ["Null characters are not allowed."]})
    return client_id


HANDLE_RULE = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,30}[A-Za-z0-9]", re.ASCII)
ABOUT_MAX = 255


def clean_handle(handle: object) -> str | None:
    """A channel's public handle (``@news``): 5..32 ASCII letters, digits and underscores,
    starting with a letter and not ending with "_"; a leading "@" is dropped. None or "" is
    no handle (a private channel). Unique whatever the case, kept as written."""
    if handle is None or handle == "":
        return None
    if not isinstance(handle, str):
        raise InvalidInput({"handle": ["Must be a string."]})
    handle = handle.strip().removeprefix("@")
    if not HANDLE_RULE.fullmatch(handle):
        raise InvalidInput(
            {"handle": ["5 to 32 letters, digits or underscores, starting with a letter, not ending with _."]}
        )
    return handle


def clean_about(about: object) -> str:
    if about is None:
        return ""
    if not isinstance(about, str) or "\x00" in about:
        raise InvalidInput({"about": ["Must be a string without null characters."]})
    about = about.strip()
    if len(about) > ABOUT_MAX:
        raise InvalidInput({"about": [f"At most {ABOUT_MAX} characters."]})
    return about


def clean_title(title: object) -> str:
    """A group title: 1..TITLE_MAX characters after trimming, not blank (as for text)."""
    if not isinstance(title, str):
        raise InvalidInput({"title": ["Must be a string."]})
    if "\x00" in title:
        raise InvalidInput({"title": ["Null characters are not allowed."]})
    title = title.strip()
    if is_blank(title):
        raise InvalidInput({"title": ["Must not be blank."]})
    if len(title) > TITLE_MAX:
        raise InvalidInput({"title": [f"At most {TITLE_MAX} characters."]})
    return title


def clean_message_seq(value: object, *, field: str = "seq") -> int:
    """The seq of a message: a positive integer."""
    if not isinstance(value, int) or isinstance(value, bool) or not (1 <= value <= MAX_ID):
        raise InvalidInput({field: ["Must be a positive integer."]})
    return value


def clean_optional_seq(value: object, *, field: str) -> int | None:
    return None if value is None else clean_message_seq(value, field=field)


def clean_seqs(value: object, *, field: str = "seqs") -> list[int]:
    """1..BATCH_MAX distinct message seqs, in the order given."""
    if not isinstance(value, list) or not (1 <= len(value) <= BATCH_MAX):
        raise InvalidInput({field: [f"Must be a list of 1..{BATCH_MAX} seqs."]})
    seqs = [clean_message_seq(item, field=field) for item in value]
    if len(set(seqs)) != len(seqs):
        raise InvalidInput({field: ["Must not repeat a seq."]})
    return seqs


def clean_client_ids(value: object, *, count: int) -> list[str]:
    """One distinct client_id per forwarded message."""
    if not isinstance(value, list) or len(value) != count:
        raise InvalidInput({"client_ids": [f"Must be a list of {count} client_ids, one per seq."]})
    keys = []
    for item in value:
        try:
            keys.append(clean_client_id(item))
        except InvalidInput:
            raise InvalidInput({"client_ids": [f"Each must be a string of 1..{CLIENT_ID_MAX} characters."]}) from None
    if len(set(keys)) != len(keys):
        raise InvalidInput({"client_ids": ["Must not repeat a client_id."]})
    return keys


def clean_emoji(value: object) -> str:
    """Exactly one emoji (by Unicode's emoji data, through the ``emoji`` library), in its
    fully-qualified form: "❤" and "❤️" are the same reaction."""
    if not isinstance(value, str) or not (1 <= len(value) <= EMOJI_MAX) or not emoji_data.is_emoji(value):
        raise InvalidInput({"emoji": ["Must be exactly one emoji."]})
    qualified = emoji_data.emojize(emoji_data.demojize(value), variant=None)
    return qualified if emoji_data.is_emoji(qualified) else value
