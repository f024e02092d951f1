"""Serves the single-page browser client: one HTML page and its JS modules and CSS.

The assets are served by Django itself, so the client works under plain daphne with
``DEBUG=false`` and no static-file server in front (``/static/`` may not be served at all).
They are revalidated on every load (``no-cache`` + ``Last-Modified``): modules import each
other by relative path, so a version query on the entry point alone would not bust them.
"""

from __future__ import annotations

from pathlib import Path

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_safe
from django.views.static import serve

from attachments import storage as attachments_storage

ASSET_DIR = Path(__file__).resolve().parent / "static" / "webclient"
ASSETS = frozenset(p.name for p in ASSET_DIR.iterdir() if p.suffix in {".js", ".css", ".svg"})


@require_safe
def index(request: HttpRequest) -> HttpResponse:
    # Files on S3 load from the object store's origin (a redirect to a presigned URL).
    media_origin = attachments_storage.browser_origin() or ""
    response = render(request, "webclient/index.html", {"media_origin": media_origin})
    patch_cache_control(response, no_cache=True)
    return response


@require_safe
def asset(request: HttpRequest, name: str) -> HttpResponse:
    """One file of the client; only the files shipped in ``static/webclient`` exist."""
    if name not in ASSETS:
        raise Http404("No such asset.")
    response = serve(request, name, document_root=ASSET_DIR)
    patch_cache_control(response, no_cache=True)
    response["X-Content-Type-Options"] = "nosniff"
    return response
