from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("chats", views.ChatViewSet, basename="chat")

api_urlpatterns = router.urls
history_urlpatterns = [path("history/<int:chat_id>", views.HistoryView.as_view(), name="history")]
