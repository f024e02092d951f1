"""REST endpoints for chats, members, messages, read state and history.

Thin by design: validate input with a serializer, call one selector or service, render
with ``chats.payloads``. Access goes through ``selectors.get_chat_for_member`` (reads) or
the services' chat lock (writes); both answer 404 for missing and foreign chats alike.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from ops.errors import ERROR_RESPONSES as E

from . import selectors, services
from .payloads import chat_payload, message_payload
from .serializers import (
    CHAT_CREATE_SERIALIZERS,
    ChatCreateSerializer,
    ChatKindSerializer,
    ChatSerializer,
    ChatUpdateSerializer,
    CursorQuerySerializer,
    HistoryPageSerializer,
    HistoryQuerySerializer,
    MemberAddSerializer,
    MessageSerializer,
    MessagesPageSerializer,
    ReadSerializer,
    ReadStateSerializer,
    SendMessageSerializer,
)

CHAT_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="Chat id.")


def _chat_response(user_id: int, chat_id: int, status_code: int = 200) -> Response:
    return Response(chat_payload(selectors.chat_view(user_id=user_id, chat_id=chat_id)), status=status_code)


@extend_schema_view(
    list=extend_schema(
        summary="The caller's chats, most recent activity first",
        responses={200: ChatSerializer(many=True), 401: E[401]},
    ),
    retrieve=extend_schema(
        summary="One chat", parameters=[CHAT_ID], responses={200: ChatSerializer, 401: E[401], 404: E[404]}
    ),
)
class ChatViewSet(viewsets.ViewSet):
    lookup_value_regex = r"[0-9]+"

    def list(self, request):
        views = selectors.chat_views_for_user(user_id=request.user.id)
        return Response([chat_payload(view) for view in views])

    def retrieve(self, request, pk=None):
        return _chat_response(request.user.id, pk)

    @extend_schema(
        summary="Open a direct chat (idempotent) or create a group",
        request=ChatCreateSerializer,
        responses={
            201: OpenApiResponse(ChatSerializer, description="Created."),
            200: OpenApiResponse(ChatSerializer, description="The existing direct chat with that user."),
            400: E[400],
            401: E[401],
            403: E[403],
            404: E[404],
            429: E[429],
        },
    )
    def create(self, request):
        kind = ChatKindSerializer(data=request.data)
        kind.is_valid(raise_exception=True)
        data = CHAT_CREATE_SERIALIZERS[kind.validated_data["kind"]](data=request.data)
        data.is_valid(raise_exception=True)
        attrs = data.validated_data
        if attrs["kind"] == "direct":
            result = services.open_direct_chat(user_id=request.user.id, other_user_id=attrs["user_id"])
            return _chat_response(request.user.id, result.chat.id, 201 if result.created else 200)
        chat = services.create_group(user_id=request.user.id, title=attrs["title"], member_ids=attrs["member_ids"])
        return _chat_response(request.user.id, chat.id, 201)

    @extend_schema(
        summary="Rename a group (owner/admin)",
        parameters=[CHAT_ID],
        request=ChatUpdateSerializer,
        responses={200: ChatSerializer, 400: E[400], 401: E[401], 403: E[403], 404: E[404], 429: E[429]},
    )
    def partial_update(self, request, pk=None):
        data = ChatUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.rename_group(user_id=request.user.id, chat_id=pk, title=data.validated_data["title"])
        return _chat_response(request.user.id, pk)

    @extend_schema(
        summary="Add a member to a group (owner/admin)",
        parameters=[CHAT_ID],
        request=MemberAddSerializer,
        responses={
            201: ChatSerializer,
            400: E[400],
            401: E[401],
            403: E[403],
            404: E[404],
            409: E[409],
            429: E[429],
        },
    )
    @action(detail=True, methods=["post"], url_path="members")
    def members(self, request, pk=None):
        data = MemberAddSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.add_member(actor_id=request.user.id, chat_id=pk, **data.validated_data)
        return _chat_response(request.user.id, pk, 201)

    @extend_schema(
        summary="Remove a member (owner/admin), or leave (your own id)",
        parameters=[CHAT_ID, OpenApiParameter("user_id", int, OpenApiParameter.PATH)],
        request=None,
        responses={204: None, 400: E[400], 401: E[401], 403: E[403], 404: E[404], 429: E[429]},
    )
    @action(detail=True, methods=["delete"], url_path=r"members/(?P<user_id>[0-9]+)")
    def remove_member(self, request, pk=None, user_id=None):
        services.remove_member(actor_id=request.user.id, chat_id=pk, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        methods=["GET"],
        summary="Messages by seq cursor: after_seq (catch-up) or before_seq (scroll back)",
        parameters=[CHAT_ID, CursorQuerySerializer],
        responses={200: MessagesPageSerializer, 400: E[400], 401: E[401], 404: E[404]},
    )
    @extend_schema(
        methods=["POST"],
        summary="Send a message (idempotent per client_id)",
        parameters=[CHAT_ID],
        request=SendMessageSerializer,
        responses={
            201: OpenApiResponse(MessageSerializer, description="Stored."),
            200: OpenApiResponse(MessageSerializer, description="Duplicate client_id: the original message."),
            400: E[400],
            401: E[401],
            403: E[403],
            404: E[404],
            409: E[409],
            429: E[429],
        },
    )
    @action(detail=True, methods=["get", "post"], url_path="messages")
    def messages(self, request, pk=None):
        if request.method == "POST":
            data = SendMessageSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            result = services.send_message(user_id=request.user.id, chat_id=pk, **data.validated_data)
            return Response(result.payload(), status=200 if result.duplicate else 201)
        query = CursorQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        chat = selectors.get_chat_for_member(user_id=request.user.id, chat_id=pk)
        if "before_seq" in params:
            rows, has_more = selectors.messages_before(
                chat=chat, before_seq=params["before_seq"], limit=params["limit"]
            )
        else:
            rows, has_more = selectors.messages_after(
                chat=chat, after_seq=params.get("after_seq", 0), limit=params["limit"]
            )
        return Response(
            {"results": [message_payload(m, read_all_seq=chat.read_all_seq) for m in rows], "has_more": has_more}
        )

    @extend_schema(
        summary="Mark the chat read up to a seq",
        parameters=[CHAT_ID],
        request=ReadSerializer,
        responses={200: ReadStateSerializer, 400: E[400], 401: E[401], 404: E[404]},
    )
    @action(detail=True, methods=["post"], url_path="read")
    def read(self, request, pk=None):
        data = ReadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.mark_read(user_id=request.user.id, chat_id=pk, up_to_seq=data.validated_data["up_to_seq"])
        return Response({"last_read_seq": result.last_read_seq, "read_all_seq": result.read_all_seq})


class HistoryView(APIView):
    @extend_schema(
        summary="Chat history, oldest first, by limit/offset",
        parameters=[OpenApiParameter("chat_id", int, OpenApiParameter.PATH), HistoryQuerySerializer],
        responses={200: HistoryPageSerializer, 400: E[400], 401: E[401], 404: E[404]},
    )
    def get(self, request, chat_id: int):
        query = HistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        limit, offset = query.validated_data["limit"], query.validated_data["offset"]
        chat = selectors.get_chat_for_member(user_id=request.user.id, chat_id=chat_id)
        rows = selectors.history_page(chat=chat, offset=offset, limit=limit)
        count = chat.last_seq
        url = request.build_absolute_uri()
        next_url = (
            replace_query_param(replace_query_param(url, "limit", limit), "offset", offset + limit)
            if limit and offset + limit < count
            else None
        )
        if offset <= 0 or not limit:
            previous_url = None
        elif offset - limit <= 0:
            previous_url = remove_query_param(replace_query_param(url, "limit", limit), "offset")
        else:
            previous_url = replace_query_param(replace_query_param(url, "limit", limit), "offset", offset - limit)
        return Response(
            {
                "count": count,
                "next": next_url,
                "previous": previous_url,
                "results": [message_payload(m, read_all_seq=chat.read_all_seq) for m in rows],
            }
        )
