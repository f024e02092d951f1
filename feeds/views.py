"""``GET /api/feed``: the caller's feed, newest first, by cursor; ``GET /api/feed/popular``: the
most liked posts of public channels of the last day."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from ops.errors import ERROR_RESPONSES as E

from . import selectors
from .payloads import post_payload
from .serializers import FeedPageSerializer, FeedQuerySerializer, PopularQuerySerializer, PopularSerializer


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


class PopularView(APIView):
    @extend_schema(
        summary="Popular posts: the most liked posts of public channels in the last 24 hours",
        description="Ranked by the likes given within POPULAR_HOURS (default 24), most first; the ranking is "
        "cached and computed again by the feed worker at most every few seconds, the posts are read fresh.",
        parameters=[PopularQuerySerializer],
        responses={200: PopularSerializer, 400: E[400], 401: E[401]},
    )
    def get(self, request):
        query = PopularQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        posts = selectors.popular_posts(user_id=request.user.id, limit=query.validated_data["limit"])
        return Response({"results": [post_payload(post) for post in posts]})
