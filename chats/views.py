"""REST endpoints for chats, members, messages, read state and history.

Thin by design: validate input with a serializer, call one selector or service, render
with ``chats.payloads``. Access goes through ``selectors.get_chat_for_reader`` (reads) or
the services' chat lock (writes); both answer 404 for missing and foreign chats alike.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from attachments import signing as file_urls
from attachments.exceptions import FileNotFound
from attachments.serving import file_response
from ops.errors import ERROR_RESPONSES as E

from . import idempotency, selectors, services
from .exceptions import Forbidden, InvalidInput
from .payloads import chat_payload, iso, message_payload
from .serializers import (
    CHAT_CREATE_SERIALIZERS,
    ChangesPageSerializer,
    ChangesQuerySerializer,
    ChatCreateSerializer,
    ChatKindSerializer,
    ChatSerializer,
    ChatUpdateSerializer,
    CursorQuerySerializer,
    DeleteMessagesSerializer,
    DeleteResultSerializer,
    EditEntrySerializer,
    EditMessageSerializer,
    ForwardResultSerializer,
    ForwardSerializer,
    HistoryPageSerializer,
    HistoryQuerySerializer,
    MemberAddSerializer,
    MessageSerializer,
    MessagesPageSerializer,
    PinsResultSerializer,
    ReactionResultSerializer,
    ReadSerializer,
    ReadStateSerializer,
    SendMessageSerializer,
)

CHAT_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="Chat id.")
SEQ = OpenApiParameter("seq", int, OpenApiParameter.PATH, description="The message's seq in the chat.")
EMOJI = OpenApiParameter("emoji", str, OpenApiParameter.PATH, description="Exactly one emoji, URL-encoded.")
_CHANGE_ERRORS = {400: E[400], 401: E[401], 403: E[403], 404: E[404], 410: E[410], 429: E[429]}


def _client_id(in_body: str | None, header: str | None) -> str:
    """A send's key: the body's ``client_id``, or the ``Idempotency-Key`` header (the same thing
    for a message: it is stored once per key), which must agree when both are given."""
    if in_body is not None and header is not None and in_body != header:
        raise InvalidInput({"client_id": ["Differs from the Idempotency-Key header; send one, or the same."]})
    key = in_body if in_body is not None else header
    if key is None:
        raise InvalidInput({"client_id": ["This field is required (or send an Idempotency-Key header)."]})
    return key


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
        parameters=[CHAT_ID, idempotency.SEND_PARAMETER],
        request=SendMessageSerializer,
        responses={
            201: OpenApiResponse(MessageSerializer, description="Stored."),
            200: OpenApiResponse(MessageSerializer, description="Duplicate client_id: the original message."),
            400: E[400],
            401: E[401],
            403: E[403],
            404: E[404],
            409: E[409],
            410: E[410],
            429: E[429],
        },
    )
    @action(detail=True, methods=["get", "post"], url_path="messages")
    def messages(self, request, pk=None):
        if request.method == "POST":
            data = SendMessageSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            fields = data.validated_data
            result = services.send_message(
                user_id=request.user.id,
                chat_id=pk,
                client_id=_client_id(fields.get("client_id"), idempotency.key_from(request)),
                text=fields.get("text"),
                reply_to_seq=fields.get("reply_to_seq"),
                attachment_ids=fields.get("attachment_ids"),
            )
            return Response(result.payload(), status=200 if result.duplicate else 201)
        query = CursorQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        chat = selectors.get_chat_for_reader(user_id=request.user.id, chat_id=pk)
        if "before_seq" in params:
            rows, has_more = selectors.messages_before(
                chat=chat, reader=request.user.id, before_seq=params["before_seq"], limit=params["limit"]
            )
        else:
            rows, has_more = selectors.messages_after(
                chat=chat, reader=request.user.id, after_seq=params.get("after_seq", 0), limit=params["limit"]
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

    @extend_schema(
        methods=["GET"],
        operation_id="chats_message_retrieve",
        summary="One message",
        parameters=[CHAT_ID, SEQ],
        responses={200: MessageSerializer, 401: E[401], 404: E[404]},
    )
    @extend_schema(
        methods=["PATCH"],
        summary="Edit your own text message (within EDIT_WINDOW_HOURS)",
        parameters=[CHAT_ID, SEQ],
        request=EditMessageSerializer,
        responses={200: MessageSerializer, **_CHANGE_ERRORS},
    )
    @extend_schema(
        methods=["DELETE"],
        summary="Delete a message for everyone (yours, or any as a group's owner/admin)",
        parameters=[CHAT_ID, SEQ],
        request=None,
        responses={200: DeleteResultSerializer, **_CHANGE_ERRORS},
    )
    @action(detail=True, methods=["get", "patch", "delete"], url_path=r"messages/(?P<seq>[0-9]+)")
    def message(self, request, pk=None, seq=None):
        if request.method == "PATCH":
            data = EditMessageSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            result = services.edit_message(
                user_id=request.user.id, chat_id=pk, seq=int(seq), text=data.validated_data["text"]
            )
            return Response(result.payload())
        if request.method == "DELETE":
            result = services.delete_messages(user_id=request.user.id, chat_id=pk, seqs=[int(seq)])
            return Response(result.payload())
        chat = selectors.get_chat_for_reader(user_id=request.user.id, chat_id=pk)
        view = selectors.message_view(chat=chat, reader=request.user.id, seq=seq)
        return Response(message_payload(view, read_all_seq=chat.read_all_seq))

    @extend_schema(
        summary="A message's earlier texts, oldest first",
        parameters=[CHAT_ID, SEQ],
        responses={200: EditEntrySerializer(many=True), 401: E[401], 404: E[404]},
    )
    @action(detail=True, methods=["get"], url_path=r"messages/(?P<seq>[0-9]+)/edits")
    def edits(self, request, pk=None, seq=None):
        chat = selectors.get_chat_for_reader(user_id=request.user.id, chat_id=pk)
        entries = selectors.edit_history(chat=chat, seq=seq)
        return Response([{"text": e.text, "edited_at": iso(e.edited_at)} for e in entries])

    @extend_schema(
        summary="Delete up to 100 messages for everyone, all or nothing",
        parameters=[CHAT_ID],
        request=DeleteMessagesSerializer,
        responses={200: DeleteResultSerializer, **_CHANGE_ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="messages/delete")
    def delete_messages(self, request, pk=None):
        data = DeleteMessagesSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.delete_messages(user_id=request.user.id, chat_id=pk, seqs=data.validated_data["seqs"])
        return Response(result.payload())

    @extend_schema(
        methods=["PUT"],
        summary="Add your reaction (idempotent)",
        parameters=[CHAT_ID, SEQ, EMOJI],
        request=None,
        responses={200: ReactionResultSerializer, **_CHANGE_ERRORS},
    )
    @extend_schema(
        methods=["DELETE"],
        summary="Remove your reaction (idempotent)",
        parameters=[CHAT_ID, SEQ, EMOJI],
        request=None,
        responses={200: ReactionResultSerializer, **_CHANGE_ERRORS},
    )
    @action(detail=True, methods=["put", "delete"], url_path=r"messages/(?P<seq>[0-9]+)/reactions/(?P<emoji>[^/]+)")
    def reaction(self, request, pk=None, seq=None, emoji=None):
        result = services.set_reaction(
            user_id=request.user.id, chat_id=pk, seq=int(seq), emoji=emoji, add=request.method == "PUT"
        )
        return Response(result.payload())

    @extend_schema(
        methods=["PUT"],
        summary="Pin a message (groups: owner/admin; direct chats: both)",
        parameters=[CHAT_ID, SEQ],
        request=None,
        responses={200: PinsResultSerializer, **_CHANGE_ERRORS},
    )
    @extend_schema(
        methods=["DELETE"],
        summary="Unpin a message",
        parameters=[CHAT_ID, SEQ],
        request=None,
        responses={200: PinsResultSerializer, **_CHANGE_ERRORS},
    )
    @action(detail=True, methods=["put", "delete"], url_path=r"pins/(?P<seq>[0-9]+)")
    def pin(self, request, pk=None, seq=None):
        result = services.set_pin(user_id=request.user.id, chat_id=pk, seq=int(seq), pinned=request.method == "PUT")
        return Response(result.payload())

    @extend_schema(
        summary="Forward messages of another chat here (idempotent per client_id)",
        parameters=[CHAT_ID],
        request=ForwardSerializer,
        responses={
            201: OpenApiResponse(ForwardResultSerializer, description="Stored."),
            200: OpenApiResponse(ForwardResultSerializer, description="Every client_id was used: the originals."),
            409: E[409],
            **_CHANGE_ERRORS,
        },
    )
    @action(detail=True, methods=["post"], url_path="forward")
    def forward(self, request, pk=None):
        data = ForwardSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.forward_messages(user_id=request.user.id, to_chat_id=pk, **data.validated_data)
        return Response(result.payload(), status=200 if result.duplicate else 201)

    @extend_schema(
        summary="What changed after a version: the current state of each changed message",
        parameters=[CHAT_ID, ChangesQuerySerializer],
        responses={200: ChangesPageSerializer, 400: E[400], 401: E[401], 404: E[404]},
    )
    @action(detail=True, methods=["get"], url_path="changes")
    def changes(self, request, pk=None):
        query = ChangesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        chat = selectors.get_chat_for_reader(user_id=request.user.id, chat_id=pk)
        page = selectors.changes_after(
            chat=chat,
            reader=request.user.id,
            after_version=query.validated_data["after_version"],
            limit=query.validated_data["limit"],
        )
        return Response(
            {
                "results": [message_payload(m, read_all_seq=chat.read_all_seq) for m in page.results],
                "version": page.version,
                "pinned_seqs": page.pinned_seqs,
                "has_more": page.has_more,
            }
        )


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
        chat = selectors.get_chat_for_reader(user_id=request.user.id, chat_id=chat_id)
        rows = selectors.history_page(chat=chat, reader=request.user.id, offset=offset, limit=limit)
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


class FileView(APIView):
    """``GET /api/files/{id}`` and ``/api/files/{id}/thumbnail``: with a signed URL (the message
    objects' ``url``/``thumbnail_url``, no header needed) or with a token and the same access
    rule as history (``selectors.readable_upload``)."""

    permission_classes = [AllowAny]  # a signed URL needs no token; without one, see get()

    @extend_schema(
        summary="Download a file, or its thumbnail (signed URL or token)",
        parameters=[
            OpenApiParameter("upload_id", int, OpenApiParameter.PATH),
            OpenApiParameter("expires", str, description="From a signed URL."),
            OpenApiParameter("signature", str, description="From a signed URL."),
            OpenApiParameter("Range", str, OpenApiParameter.HEADER, description="One byte range: 206 Partial Content."),
        ],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(description="The bytes, with the sniffed Content-Type."),
            (206, "application/octet-stream"): OpenApiResponse(description="The requested range."),
            302: OpenApiResponse(description="S3 storage: a redirect to a short-lived presigned URL."),
            401: E[401],
            403: E[403],
            404: E[404],
            416: OpenApiResponse(description="The range is outside the file."),
        },
    )
    def get(self, request, upload_id: int, variant: str = "file"):
        expires, signature = request.query_params.get("expires"), request.query_params.get("signature")
        if expires is not None or signature is not None:
            if not file_urls.check(upload_id, variant, expires, signature):
                raise Forbidden("This link is invalid or has expired.")
            upload = selectors.signed_upload(upload_id=upload_id)
        elif getattr(request.user, "is_authenticated", False):
            upload = selectors.readable_upload(user_id=request.user.id, upload_id=upload_id)
        else:
            raise NotAuthenticated()
        if variant == "thumbnail" and not upload.blob.thumbnail_key:
            raise FileNotFound("This file has no thumbnail.")
        return file_response(request, upload, variant)
