"""Account endpoints: register, tokens, logout, me, user search."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from messenger.errors import ERROR_RESPONSES

from . import selectors, services
from .serializers import LogoutSerializer, PublicUserSerializer, RegisterSerializer, UserSerializer, UserSearchQuerySerializer


class RegisterView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(request=RegisterSerializer, responses={201: UserSerializer, 400: ERROR_RESPONSES[400]}, auth=[])
    def post(self, request):
        data = RegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.register_user(**data.validated_data)
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)


@extend_schema(responses={200: None, 401: ERROR_RESPONSES[401], 400: ERROR_RESPONSES[400]}, auth=[])
class TokenView(TokenObtainPairView):
    """Exchange username and password for an access and a refresh token."""


@extend_schema(auth=[], responses={401: ERROR_RESPONSES[401], 400: ERROR_RESPONSES[400]})
class TokenRefresh(TokenRefreshView):
    """Exchange a refresh token for a new pair; the old refresh token is refused from then on."""


class LogoutView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(request=LogoutSerializer, responses={204: None, 400: ERROR_RESPONSES[400], 401: ERROR_RESPONSES[401]}, auth=[])
    def post(self, request):
        data = LogoutSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.logout(refresh=data.validated_data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    @extend_schema(responses={200: UserSerializer, 401: ERROR_RESPONSES[401]})
    def get(self, request):
        return Response(UserSerializer(request.user).data)


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
