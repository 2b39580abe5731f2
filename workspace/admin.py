from django.contrib import admin

from workspace.models import Activity, Invitation, Membership, Workspace


class MembershipInline(admin.TabularInline):
    model = Membership
    fk_name = "workspace"
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["added_by", "added_at"]


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "member_count", "created_by", "created_at"]
    search_fields = ["name", "slug", "description"]
    list_filter = ["created_at"]
    readonly_fields = ["created_by", "created_at"]
    inlines = [MembershipInline]

    def get_queryset(self, request):
        from django.db.models import Count

        return super().get_queryset(request).annotate(_members=Count("memberships"))

    @admin.display(description="members", ordering="_members")
    def member_count(self, obj: Workspace) -> int:
        return obj._members  # type: ignore[attr-defined]  # annotated by get_queryset above


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "workspace", "role", "added_by", "added_at"]
    list_filter = ["role", "workspace"]
    search_fields = ["user__username", "user__email", "workspace__name", "workspace__slug"]
    autocomplete_fields = ["user", "workspace"]
    list_select_related = ["user", "workspace", "added_by"]


@admin.register(Activity)
class ActivityAdmin(admin.ModelAdmin):
    list_display = ["created_at", "workspace", "actor", "verb", "message"]
    list_filter = ["verb", "workspace"]
    search_fields = ["message", "actor__username", "workspace__name"]
    list_select_related = ["workspace", "actor"]
    date_hierarchy = "created_at"

    # The log is a record of what happened: nobody edits history.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = [
        "identifier",
        "workspace",
        "role",
        "state",
        "invitee",
        "invited_by",
        "created_at",
    ]
    list_filter = ["state", "role", "workspace"]
    search_fields = ["identifier", "invitee__username", "workspace__name", "workspace__slug"]
    list_select_related = ["workspace", "invitee", "invited_by"]
    date_hierarchy = "created_at"

    # Invitations change only through their actions (compare-and-set); the admin reads them.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
