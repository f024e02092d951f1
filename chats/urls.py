from django.urls import path
from rest_framework.routers import SimpleRouter

from . import channel_views, views

router = SimpleRouter(trailing_slash=False)
router.register("chats", views.ChatViewSet, basename="chat")

api_urlpatterns = router.urls
api_urlpatterns += [
    path("channels", channel_views.ChannelsView.as_view(), name="channels"),
    path("channels/<int:id>/subscription", channel_views.SubscriptionView.as_view(), name="channel-subscription"),
    path("channels/<str:key>", channel_views.ChannelView.as_view(), name="channel"),
    path("posts/<int:id>/like", channel_views.LikeView.as_view(), name="post-like"),
    path("files/<int:upload_id>", views.FileView.as_view(), name="file"),
    path("files/<int:upload_id>/thumbnail", views.FileView.as_view(), {"variant": "thumbnail"}, name="file-thumbnail"),
]
history_urlpatterns = [path("history/<int:chat_id>", views.HistoryView.as_view(), name="history")]
