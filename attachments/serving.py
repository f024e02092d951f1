"""Answering a file request: inline or as a download, whole or a byte range, through the app
(local storage) or by a redirect to a presigned URL (S3)."""

from __future__ import annotations

import asyncio

from django.http import HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.utils.http import content_disposition_header
from werkzeug.http import parse_range_header

from . import storage
from .models import Upload
from .payloads import INLINE_KINDS

CHUNK = 256 * 1024


def file_response(request, upload: Upload, variant: str) -> HttpResponse:
    blob = upload.blob
    if variant == "thumbnail":
        name, mime, inline, filename = blob.thumbnail_key, "image/webp", True, f"{upload.name}.webp"
    else:
        name, mime, filename = blob.key, blob.mime, upload.name
        # Only what is sniffed as an image, audio or video opens in the browser; anything else
        # (HTML, SVG, PDF, unknown bytes) is a download, so no upload can run as a page here.
        inline = upload.kind in INLINE_KINDS
    disposition = content_disposition_header(not inline, filename)
    if storage.redirects():
        url = storage.storage().url(
            name, parameters={"ResponseContentType": mime, "ResponseContentDisposition": disposition}
        )
        response = HttpResponseRedirect(url)
        response["Cache-Control"] = "private, no-store"
        return response
    size = storage.storage().size(name)
    handle = storage.storage().open(name, "rb")
    status, start, stop = 200, 0, size
    wanted = parse_range_header(request.headers.get("Range"))
    if wanted is not None and request.method == "GET":
        span = wanted.range_for_length(size) if len(wanted.ranges) == 1 else None
        if span is None:
            handle.close()
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return _secure(response, mime, disposition)
        start, stop = span
        status = 206
    handle.seek(start)
    response = StreamingHttpResponse(_limited(handle, stop - start), status=status, content_type=mime)
    response["Content-Length"] = str(stop - start)
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=3600"
    return _secure(response, mime, disposition)


async def _limited(handle, length: int):
    """The bytes, chunk by chunk, read in a thread: an async iterator, so the ASGI handler sends
    each chunk as it comes (it would collect a sync iterator whole before sending)."""
    try:
        while length > 0:
            chunk = await asyncio.to_thread(handle.read, min(CHUNK, length))
            if not chunk:
                break
            length -= len(chunk)
            yield chunk
    finally:
        handle.close()


def _secure(response: HttpResponse, mime: str, disposition: str) -> HttpResponse:
    response["Content-Type"] = mime
    response["Content-Disposition"] = disposition
    response["X-Content-Type-Options"] = "nosniff"
    # Even a file opened directly cannot run script or load anything.
    response["Content-Security-Policy"] = "default-src 'none'; media-src 'self'; img-src 'self'; sandbox"
    return response
