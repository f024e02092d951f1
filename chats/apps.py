from django.apps import AppConfig


class ChatsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "chats"

    def ready(self) -> None:
        from accounts import services as accounts_services

        from .services import leave_all_groups
        from .services.channels import unsubscribe_all

        # A deleted user first leaves every group (owner succession, events): see delete_user.
        accounts_services.before_user_deletion(leave_all_groups)
        accounts_services.before_user_deletion(unsubscribe_all)
