from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from ops.admin_tools import EstimatedCountPaginator, ReadOnlyAdmin

from . import services
from .models import ExternalIdentity, User, username_validator


class UserAddForm(AdminUserCreationForm):
    """The admin's "Add user" form, with the username rule registrations follow (a safe ASCII set)."""

    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("username", "email")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Optional on the model (SSO users may have none), required for an account made by hand.
        self.fields["email"].required = True

    def clean_username(self):
        username = super().clean_username()
        username_validator(username)
        return username


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("id", "username", "email", "is_active", "is_staff", "date_joined")
    list_filter = ("is_active", "is_staff")
    search_fields = ("username", "email")
    ordering = ("id",)
    actions = ["deactivate_users"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    add_form = UserAddForm
    fieldsets = (*BaseUserAdmin.fieldsets, ("Privacy", {"fields": ("who_can_add_me",)}))
    # The email is unique and required: without it here a second added user hit the constraint.
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "email", "usable_password", "password1", "password2")}),
    )

    def save_model(self, request, obj, form, change):
        # Deactivation goes through the service so the user's open sockets are closed.
        deactivating = change and "is_active" in form.changed_data and not obj.is_active
        if deactivating:
            obj.is_active = True
        super().save_model(request, obj, form, change)
        if deactivating:
            services.set_active(user=obj, active=False)

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # The user's token ledger and SSO identities are read-only in the admin but go with the user; without this
        # nobody who ever logged in could be deleted.
        perms_needed -= {
            OutstandingToken._meta.verbose_name,
            BlacklistedToken._meta.verbose_name,
            ExternalIdentity._meta.verbose_name,
        }
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj):
        # Deletion is a service (sockets closed, groups handed over); the confirmation page
        # (templates/admin/accounts/user/) recommends deactivation instead.
        services.delete_user(user=obj)

    def delete_queryset(self, request, queryset):
        for user in queryset:
            services.delete_user(user=user)

    @admin.action(description="Deactivate selected users (closes their sockets)")
    def deactivate_users(self, request, queryset):
        count = 0
        for user in queryset.filter(is_active=True):
            services.set_active(user=user, active=False)
            count += 1
        self.message_user(request, f"Deactivated {count} user(s).", messages.SUCCESS)


@admin.register(ExternalIdentity)
class ExternalIdentityAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """Which provider account (issuer, subject) logs in as which user: written by SSO logins only,
    and gone with the user."""

    list_display = ("id", "user", "issuer", "subject", "created_at", "last_login_at")
    list_select_related = ("user",)
    list_filter = ("issuer",)
    search_fields = ("subject", "user__username")
    ordering = ("-id",)
    show_full_result_count = False
