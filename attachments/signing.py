"""Short-lived signed URLs for files, so ``<img src>`` and ``<audio src>`` work without an
``Authorization`` header.

A URL names the upload, the variant (the file or its thumbnail) and an expiry time, signed with
an HMAC of the project's secret (Django's :class:`~django.core.signing.Signer`, salted for this
use). Expiry times are rounded up to the next ``FILE_URL_MAX_AGE_SECONDS`` boundary and one more
period added, so a URL lives between one and two periods and the same URL is handed out for a
while (browsers cache it).
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core import signing

_SIGNER = signing.Signer(salt="attachments.file-url")
VARIANTS = ("file", "thumbnail")


def _value(upload_id: int, variant: str, expires: int) -> str:
    return f"{upload_id}:{variant}:{expires}"


def sign(upload_id: int, variant: str = "file", *, now: float | None = None) -> dict[str, str]:
    """The query parameters that let anyone holding them fetch this variant until they expire."""
    period = settings.FILE_URL_MAX_AGE_SECONDS
    now = time.time() if now is None else now
    expires = (int(now) // period + 2) * period
    signature = _SIGNER.signature(_value(upload_id, variant, expires))
    return {"expires": str(expires), "signature": signature}


def check(
    upload_id: int, variant: str, expires: str | None, signature: str | None, *, now: float | None = None
) -> bool:
    """Whether the parameters are a valid, unexpired signature for this upload and variant."""
    # ASCII digits only: str.isdigit() is also true for "¹" or "٣", which int() refuses.
    if not expires or not signature or not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        return False
    now = time.time() if now is None else now
    if int(expires) < now:
        return False
    return signing.constant_time_compare(signature, _SIGNER.signature(_value(upload_id, variant, int(expires))))


def url(upload_id: int, variant: str = "file") -> str:
    params = sign(upload_id, variant)
    path = f"/api/files/{upload_id}" if variant == "file" else f"/api/files/{upload_id}/thumbnail"
    return f"{path}?expires={params['expires']}&signature={params['signature']}"
