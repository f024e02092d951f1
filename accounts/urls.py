from django.urls import path

from . import views

urlpatterns = [
    path("auth/register", views.RegisterView.as_view(), name="register"),
    path("auth/token", views.TokenView.as_view(), name="token"),
    path("auth/token/refresh", views.TokenRefresh.as_view(), name="token-refresh"),
    path("auth/logout", views.LogoutView.as_view(), name="logout"),
    path("auth/sso", views.SsoConfigView.as_view(), name="sso"),
    path("auth/sso/login", views.SsoLoginView.as_view(), name="sso-login"),
    path("auth/sso/callback", views.SsoCallbackView.as_view(), name="sso-callback"),
    path("auth/sso/exchange", views.SsoExchangeView.as_view(), name="sso-exchange"),
    path("users/me", views.MeView.as_view(), name="me"),
    path("users", views.UserListView.as_view(), name="users"),
]
