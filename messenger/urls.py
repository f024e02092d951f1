from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from chats.urls import api_urlpatterns, history_urlpatterns
from ops.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("accounts.urls")),
    path("api/", include(api_urlpatterns)),
    path("api/", include("attachments.urls")),
    path("api/", include("feeds.urls")),
    *history_urlpatterns,
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    # /healthz and /readyz are answered by ops.health.HealthCheckMiddleware.
    path("metrics", metrics_view, name="metrics"),
    path("", include("webclient.urls")),
]

handler400 = "ops.errors.json_400"
handler404 = "ops.errors.json_404"
handler500 = "ops.errors.json_500"
