from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from ops.admin_tools import EstimatedCountPaginator

from . import services
from .models import User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("id", "username", "email", "is_active", "is_staff", "date_joined")
    list_filter = ("is_active", "is_staff")
    search_fields = ("username", "email")
    ordering = ("id",)
    actions = ["deactivate_users"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def save_model(self, request, obj, form, change):
        # Deactivation goes through the service so the user's open sockets are closed.
        deactivating = change and "is_active" in form.changed_data and not obj.is_active
        if deactivating:
            obj.is_active = True
        super().save_model(request, obj, form, change)
        if deactivating:
            services.set_active(user=obj, active=False)

    @admin.action(description="Deactivate selected users (closes their sockets)")
    def deactivate_users(self, request, queryset):
        count = 0
        for user in queryset.filter(is_active=True):
            services.set_active(user=user, active=False)
            count += 1
        self.message_user(request, f"Deactivated {count} user(s).", messages.SUCCESS)
