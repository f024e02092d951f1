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

from . import idempotency, selectors, services
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
IDEMPOTENCY_KEY = idempotency.PARAMETER
POST_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The post's message id.")


def _once(request, command: str, run) -> Response:
    """Answer a command, once per Idempotency-Key (chats.idempotency)."""
    status_code, body, replayed = idempotency.run_once(
        user_id=request.user.id, key=idempotency.key_from(request), command=command, run=run
    )
    response = Response(body, status=status_code)
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response


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
        parameters=[IDEMPOTENCY_KEY],
        request=ChannelCreateSerializer,
        responses={201: ChannelSerializer, 400: E[400], 401: E[401], 409: E[409], 429: E[429]},
    )
    def post(self, request):
        data = ChannelCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)

        def create():
            chat = services.create_channel(user_id=request.user.id, **data.validated_data)
            return 201, channel_payload(selectors.channel_view(user_id=request.user.id, key=chat.id))

        return _once(request, "create_channel", create)


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
        parameters=[CHANNEL_ID, IDEMPOTENCY_KEY],
        request=SubscribeSerializer,
        responses={
            201: OpenApiResponse(SubscriptionSerializer, description="Subscribed now."),
            200: OpenApiResponse(SubscriptionSerializer, description="Already subscribed: nothing changed."),
            400: E[400],
            401: E[401],
            404: E[404],
            409: E[409],
            429: E[429],
        },
    )
    def post(self, request, id: int):
        data = SubscribeSerializer(data=request.data)
        data.is_valid(raise_exception=True)

        def subscribe():
            result = services.subscribe(user_id=request.user.id, chat_id=id, invite=data.validated_data["invite"])
            return 201 if result.changed else 200, _subscription_payload(result)

        return _once(request, f"subscribe:{id}", subscribe)

    @extend_schema(
        summary="Unsubscribe (idempotent)",
        parameters=[CHANNEL_ID, IDEMPOTENCY_KEY],
        request=None,
        responses={200: SubscriptionSerializer, 400: E[400], 401: E[401], 404: E[404], 409: E[409], 429: E[429]},
    )
    def delete(self, request, id: int):
        return _once(
            request,
            f"unsubscribe:{id}",
            lambda: (200, _subscription_payload(services.unsubscribe(user_id=request.user.id, chat_id=id))),
        )


class LikeView(APIView):
    @extend_schema(
        summary="Like a post (the ❤️ reaction; idempotent)",
        parameters=[POST_ID, IDEMPOTENCY_KEY],
        request=None,
        responses={
            200: LikeSerializer,
            400: E[400],
            401: E[401],
            403: E[403],
            404: E[404],
            409: E[409],
            410: E[410],
            429: E[429],
        },
    )
    def post(self, request, id: int):
        return self._like(request, id, liked=True)

    @extend_schema(
        summary="Take a like back (idempotent)",
        parameters=[POST_ID, IDEMPOTENCY_KEY],
        request=None,
        responses={
            200: LikeSerializer,
            400: E[400],
            401: E[401],
            403: E[403],
            404: E[404],
            409: E[409],
            410: E[410],
            429: E[429],
        },
    )
    def delete(self, request, id: int):
        return self._like(request, id, liked=False)

    @staticmethod
    def _like(request, post_id: int, *, liked: bool) -> Response:
        return _once(
            request,
            f"{'like' if liked else 'unlike'}:{post_id}",
            lambda: (200, services.like_post(user_id=request.user.id, post_id=post_id, liked=liked).payload()),
        )
