"""Account endpoints: register, tokens, single sign-on, logout, me, user search."""

from __future__ import annotations

import logging
from urllib.parse import quote

from django.conf import settings
from django.http import HttpResponseRedirect
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from ops.errors import ERROR_RESPONSES, ErrorSerializer

from . import oidc, selectors, services
from .exceptions import SsoDisabled, SsoError
from .serializers import (
    LogoutSerializer,
    PublicUserSerializer,
    RefreshSerializer,
    RegisterSerializer,
    SsoConfigSerializer,
    SsoExchangeSerializer,
    TokenPairResponseSerializer,
    TokenPairSerializer,
    UserSearchQuerySerializer,
    UserSerializer,
    UserSettingsSerializer,
)
from .throttles import AuthRateThrottle

logger = logging.getLogger(__name__)


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


# --- single sign-on (accounts/oidc.py; docs/PROTOCOL.md §10) -------------------------------------
#
# login and callback are full-page browser navigations: they answer with redirects, never JSON.
# The callback's outcome reaches the web client in the URL *fragment* of "/" (never sent to a
# server, never in a Referer): a one-time code (#sso_code=) that POST /api/auth/sso/exchange turns
# into tokens, or a stable error code (#sso_error=). Tokens never appear in a URL.

_SSO_REDIRECT = OpenApiResponse(
    description="A redirect (Location header): to the provider, or to /#sso_code=<code> or /#sso_error=<code>."
)
_LOCATION = OpenApiParameter(
    "Location", OpenApiTypes.STR, OpenApiParameter.HEADER, response=[302], description="Where the browser goes next."
)


def _to_client(fragment: str, value: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(f"/#{fragment}={quote(value, safe='')}")
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


class SsoConfigView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(summary="Whether single sign-on is offered", responses={200: SsoConfigSerializer}, auth=[])
    def get(self, request):
        enabled = oidc.enabled()
        return Response(
            {
                "enabled": enabled,
                "provider": oidc.provider_name(),
                "login_url": reverse("sso-login") if enabled else None,
            }
        )


class SsoLoginView(APIView):
    """Start a single sign-on: a redirect to the provider's authorization endpoint (state, nonce and
    PKCE verifier kept in this browser's session cookie). Without a provider, or when it cannot be
    reached, a redirect to ``/#sso_error=sso_disabled`` or ``sso_unavailable``."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [AuthRateThrottle]

    @extend_schema(
        summary="Start single sign-on (browser navigation)",
        parameters=[_LOCATION],
        responses={302: _SSO_REDIRECT, 429: ERROR_RESPONSES[429]},
        auth=[],
    )
    def get(self, request):
        try:
            redirect_uri = settings.OIDC_REDIRECT_URI or request.build_absolute_uri(reverse("sso-callback"))
            response = oidc.start_login(request, redirect_uri=redirect_uri)
        except SsoError as exc:
            if not isinstance(exc, SsoDisabled):
                logger.warning("sso login not started: %s (%r)", exc.code, exc.__cause__)
            return _to_client("sso_error", exc.code)
        response["Cache-Control"] = "no-store"
        return response


class SsoCallbackView(APIView):
    """The provider's answer: the state is checked, the code exchanged, the ID token verified, and
    the user found by (issuer, subject) or created; then a redirect to ``/#sso_code=<one-time
    code>``, or to ``/#sso_error=<code>`` (sso_disabled, sso_state_mismatch, sso_denied,
    sso_failed, sso_unavailable, account_disabled)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        summary="Single sign-on callback (the provider redirects the browser here)",
        parameters=[
            OpenApiParameter("code", OpenApiTypes.STR, description="From the provider."),
            OpenApiParameter("state", OpenApiTypes.STR, description="From the provider."),
            OpenApiParameter("error", OpenApiTypes.STR, description="From the provider, instead of code."),
            _LOCATION,
        ],
        responses={302: _SSO_REDIRECT},
        auth=[],
    )
    def get(self, request):
        try:
            claims = oidc.finish_login(request)
            user = services.sign_in_with_identity(claims=claims)
        except SsoError as exc:
            if not isinstance(exc, SsoDisabled):
                logger.warning("sso login failed: %s (%r)", exc.code, exc.__cause__)
            return _to_client("sso_error", exc.code)
        finally:
            if not request.session.keys():
                # The session held only this login's state: its row goes now, not at clearsessions.
                request.session.flush()
        return _to_client("sso_code", services.issue_sso_code(user=user))


class SsoExchangeView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [AuthRateThrottle]

    @extend_schema(
        summary="Trade a one-time single sign-on code for a token pair",
        description="The code from /#sso_code= works once, within 60 seconds. The answer is the "
        "pair POST /api/auth/token gives: a new session.",
        request=SsoExchangeSerializer,
        responses={
            200: TokenPairResponseSerializer,
            400: OpenApiResponse(ErrorSerializer, description="invalid_sso_code / validation_error / invalid_json"),
            403: OpenApiResponse(ErrorSerializer, description="account_disabled"),
            404: OpenApiResponse(ErrorSerializer, description="sso_disabled"),
            429: ERROR_RESPONSES[429],
        },
        auth=[],
    )
    def post(self, request):
        data = SsoExchangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if not oidc.enabled():
            raise SsoDisabled()
        return Response(services.redeem_sso_code(code=data.validated_data["code"]))


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
