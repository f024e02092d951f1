"""REST endpoints for broadcast channels and their posts' likes.

Posts are the channel's messages: they are sent, read, edited and deleted through the chat
endpoints (``/api/chats/{id}/messages``, ``/changes``, ``/history``), whose access check admits a
channel's subscribers (and anyone, for a public channel) as readers.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from ops.errors import ERROR_RESPONSES as E

from . import selectors, services
from .payloads import channel_payload
from .serializers import (
    ChannelCreateSerializer,
    ChannelSearchQuerySerializer,
    ChannelSerializer,
    LikeSerializer,
    SubscribeSerializer,
    SubscriptionSerializer,
)

CHANNEL_KEY = OpenApiParameter(
    "key", str, OpenApiParameter.PATH, description="The channel's id, or its handle (any case, '@' optional)."
)
CHANNEL_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The channel's id.")
POST_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The post's message id.")


def _channel_response(user_id: int, key: object, status_code: int = 200) -> Response:
    return Response(channel_payload(selectors.channel_view(user_id=user_id, key=key)), status=status_code)


def _subscription_payload(result: services.SubscriptionResult) -> dict:
    return {
        "channel_id": result.chat_id,
        "subscribed": result.subscribed,
        "changed": result.changed,
        "subscribers_count": result.subscribers_count,
    }


class ChannelsView(APIView):
    @extend_schema(
        summary="Search public channels, or list yours",
        parameters=[ChannelSearchQuerySerializer],
        responses={200: ChannelSerializer(many=True), 400: E[400], 401: E[401]},
    )
    def get(self, request):
        query = ChannelSearchQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        if "search" in params:
            views = selectors.search_channels(user_id=request.user.id, query=params["search"], limit=params["limit"])
        else:
            views = selectors.my_channels(user_id=request.user.id)[: params["limit"]]
        return Response([channel_payload(view) for view in views])

    @extend_schema(
        summary="Create a channel (public with a handle, else private)",
        request=ChannelCreateSerializer,
        responses={201: ChannelSerializer, 400: E[400], 401: E[401], 409: E[409], 429: E[429]},
    )
    def post(self, request):
        data = ChannelCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        chat = services.create_channel(user_id=request.user.id, **data.validated_data)
        return _channel_response(request.user.id, chat.id, 201)


class ChannelView(APIView):
    @extend_schema(
        summary="One channel, by id or handle",
        parameters=[CHANNEL_KEY],
        responses={200: ChannelSerializer, 401: E[401], 404: E[404]},
    )
    def get(self, request, key: str):
        return _channel_response(request.user.id, key)


class SubscriptionView(APIView):
    @extend_schema(
        summary="Subscribe (idempotent; a private channel needs its invite token)",
        parameters=[CHANNEL_ID],
        request=SubscribeSerializer,
        responses={
            201: OpenApiResponse(SubscriptionSerializer, description="Subscribed now."),
            200: OpenApiResponse(SubscriptionSerializer, description="Already subscribed: nothing changed."),
            400: E[400],
            401: E[401],
            404: E[404],
            429: E[429],
        },
    )
    def post(self, request, id: int):
        data = SubscribeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.subscribe(user_id=request.user.id, chat_id=id, invite=data.validated_data["invite"])
        return Response(_subscription_payload(result), status=201 if result.changed else 200)

    @extend_schema(
        summary="Unsubscribe (idempotent)",
        parameters=[CHANNEL_ID],
        request=None,
        responses={200: SubscriptionSerializer, 401: E[401], 404: E[404], 429: E[429]},
    )
    def delete(self, request, id: int):
        return Response(_subscription_payload(services.unsubscribe(user_id=request.user.id, chat_id=id)))


class LikeView(APIView):
    @extend_schema(
        summary="Like a post (the ❤️ reaction; idempotent)",
        parameters=[POST_ID],
        request=None,
        responses={200: LikeSerializer, 401: E[401], 403: E[403], 404: E[404], 410: E[410], 429: E[429]},
    )
    def post(self, request, id: int):
        return Response(services.like_post(user_id=request.user.id, post_id=id, liked=True).payload())

    @extend_schema(
        summary="Take a like back (idempotent)",
        parameters=[POST_ID],
        request=None,
        responses={200: LikeSerializer, 401: E[401], 403: E[403], 404: E[404], 410: E[410], 429: E[429]},
    )
    def delete(self, request, id: int):
        return Response(services.like_post(user_id=request.user.id, post_id=id, liked=False).payload())
