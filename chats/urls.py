from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("chats", views.ChatViewSet, basename="chat")

api_urlpatterns = router.urls
api_urlpatterns += [
    path("files/<int:upload_id>", views.FileView.as_view(), name="file"),
    path("files/<int:upload_id>/thumbnail", views.FileView.as_view(), {"variant": "thumbnail"}, name="file-thumbnail"),
]
history_urlpatterns = [path("history/<int:chat_id>", views.HistoryView.as_view(), name="history")]
