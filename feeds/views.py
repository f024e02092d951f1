"""``GET /api/feed``: the caller's feed, newest first, by cursor."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from ops.errors import ERROR_RESPONSES as E

from . import selectors
from .payloads import post_payload
from .serializers import FeedPageSerializer, FeedQuerySerializer


class FeedView(APIView):
    @extend_schema(
        summary="Your feed: posts of the channels you subscribe to, newest first",
        parameters=[FeedQuerySerializer],
        responses={200: FeedPageSerializer, 400: E[400], 401: E[401]},
    )
    def get(self, request):
        query = FeedQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        page = selectors.feed_page(user_id=request.user.id, before=params.get("cursor"), limit=params["limit"])
        return Response(
            {
                "results": [post_payload(post) for post in page.posts],
                "next_cursor": page.next_before,
            }
        )
