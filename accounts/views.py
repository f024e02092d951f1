"""Account endpoints: register, tokens, logout, me, user search."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from ops.errors import ERROR_RESPONSES

from . import selectors, services
from .serializers import (
    LogoutSerializer,
    PublicUserSerializer,
    RefreshSerializer,
    RegisterSerializer,
    TokenPairResponseSerializer,
    TokenPairSerializer,
    UserSearchQuerySerializer,
    UserSerializer,
    UserSettingsSerializer,
)
from .throttles import AuthRateThrottle


class RegisterView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [AuthRateThrottle]

    @extend_schema(
        request=RegisterSerializer,
        responses={201: UserSerializer, 400: ERROR_RESPONSES[400], 429: ERROR_RESPONSES[429]},
        auth=[],
    )
    def post(self, request):
        data = RegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.register_user(**data.validated_data)
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)


_AUTH_ERRORS = {400: ERROR_RESPONSES[400], 401: ERROR_RESPONSES[401], 429: ERROR_RESPONSES[429]}


@extend_schema(responses={200: TokenPairResponseSerializer, **_AUTH_ERRORS}, auth=[])
class TokenView(TokenObtainPairView):
    """Exchange username and password for an access and a refresh token (a new session)."""

    serializer_class = TokenPairSerializer
    throttle_classes = [AuthRateThrottle]


@extend_schema(request=RefreshSerializer, responses={200: TokenPairResponseSerializer, **_AUTH_ERRORS}, auth=[])
class TokenRefresh(TokenRefreshView):
    """Exchange a refresh token for a new pair; the old refresh token is refused from then on.

    Of several parallel refreshes of one token exactly one succeeds.
    """

    serializer_class = RefreshSerializer
    throttle_classes = [AuthRateThrottle]


class LogoutView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    def get_authenticate_header(self, request) -> str:
        # Without it DRF turns the invalid-token 401 into a 403 (no authenticator to name).
        return 'Bearer realm="api"'

    @extend_schema(
        request=LogoutSerializer, responses={204: None, 400: ERROR_RESPONSES[400], 401: ERROR_RESPONSES[401]}, auth=[]
    )
    def post(self, request):
        data = LogoutSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.logout(refresh=data.validated_data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    @extend_schema(
        summary="The caller's account and settings", responses={200: UserSerializer, 401: ERROR_RESPONSES[401]}
    )
    def get(self, request):
        return Response(UserSerializer(request.user).data)

    @extend_schema(
        summary="Change the caller's settings",
        request=UserSettingsSerializer,
        responses={200: UserSerializer, 400: ERROR_RESPONSES[400], 401: ERROR_RESPONSES[401]},
    )
    def patch(self, request):
        data = UserSettingsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.update_settings(user=request.user, **data.validated_data)
        return Response(UserSerializer(user).data)


class UserListView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("search", str, description="Case-insensitive username prefix.")],
        responses={200: PublicUserSerializer(many=True), 400: ERROR_RESPONSES[400], 401: ERROR_RESPONSES[401]},
    )
    def get(self, request):
        query = UserSearchQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        users = selectors.search_users(prefix=query.validated_data.get("search", ""), exclude_id=request.user.id)
        return Response(PublicUserSerializer(users, many=True).data)
