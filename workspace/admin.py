from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from workspace.admin_lists import ListAdmin, LongListAdmin
from workspace.models import Activity, Invitation, Membership, Workspace


class MembershipInline(admin.TabularInline):
    """A workspace's members, roles editable. Whose membership a row is does not change,
    so the user is shown, not offered in a picker: an autocomplete widget looks its one
    user up with a query of its own, one per member. New members are added from the
    membership page (WorkspaceAdmin.add_member)."""

    model = Membership
    fk_name = "workspace"
    extra = 0
    fields = ["user", "role", "added_by", "added_at"]
    readonly_fields = ["user", "added_by", "added_at"]

    def get_queryset(self, request):
        # The workspace too: each row's title is the membership's str(), which names it.
        return super().get_queryset(request).select_related("user", "added_by", "workspace")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Workspace)
class WorkspaceAdmin(ListAdmin):
    list_display = ["name", "slug", "member_count", "created_by", "created_at"]
    search_fields = ["name", "slug", "description"]
    list_filter = ["created_at"]
    list_select_related = ["created_by"]
    readonly_fields = ["created_by", "created_at", "add_member"]
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_members=Count("memberships"))

    @admin.display(description="members", ordering="_members")
    def member_count(self, obj: Workspace) -> int:
        return obj._members  # type: ignore[attr-defined]  # annotated by get_queryset above

    @admin.display(description="new member")
    def add_member(self, obj: Workspace) -> str:
        if obj.pk is None:
            return "Save the workspace first."
        url = reverse("admin:workspace_membership_add")
        return format_html('<a href="{}?workspace={}">Add a member →</a>', url, obj.pk)


@admin.register(Membership)
class MembershipAdmin(ListAdmin):
    list_display = ["user", "workspace", "role", "added_by", "added_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "user__email", "workspace__name", "workspace__slug"]
    autocomplete_fields = ["user", "workspace"]
    list_select_related = ["user", "workspace", "added_by"]
    readonly_fields = ["added_by", "added_at"]  # a record, not a choice among every user


@admin.register(Activity)
class ActivityAdmin(LongListAdmin):
    list_display = ["created_at", "workspace", "actor", "verb", "message"]
    # By date: ranges of the created_at index (a date_hierarchy read every row for its years).
    list_filter = ["verb", "created_at"]
    search_fields = ["message", "actor__username", "workspace__name"]
    list_select_related = ["workspace", "actor"]

    # The log is a record of what happened: nobody edits history.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Invitation)
class InvitationAdmin(ListAdmin):
    list_display = [
        "identifier",
        "workspace",
        "role",
        "state",
        "invitee",
        "invited_by",
        "created_at",
    ]
    list_filter = ["state", "role"]
    search_fields = ["identifier", "invitee__username", "workspace__name", "workspace__slug"]
    list_select_related = ["workspace", "invitee", "invited_by"]
    date_hierarchy = "created_at"  # kept: a few per workspace, not a log

    # Invitations change only through their actions (compare-and-set); the admin reads them.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


# Django's user list, with the lists' page size and row checkbox (admin_lists.ListAdmin).
admin.site.unregister(User)


@admin.register(User)
class HangarUserAdmin(ListAdmin, UserAdmin):
    pass
