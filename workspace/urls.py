from django.urls import path

from workspace.views import invitations as invitation_views
from workspace.views import workspaces as views

app_name = "workspace"

urlpatterns = [
    path("", views.workspace_list, name="list"),
    path("new/", views.workspace_create, name="create"),
    path("<slug:slug>/", views.overview, name="overview"),
    path("<slug:slug>/activity/", views.activity, name="activity"),
    path("<slug:slug>/settings/", views.workspace_settings, name="settings"),
    path("<slug:slug>/members/", views.members, name="members"),
    path("<slug:slug>/members/add/", views.member_add, name="member-add"),
    path("<slug:slug>/members/<int:membership_id>/role/", views.member_role, name="member-role"),
    path(
        "<slug:slug>/members/<int:membership_id>/remove/",
        views.member_remove,
        name="member-remove",
    ),
    path(
        "<slug:slug>/invitations/<int:invitation_id>/revoke/",
        invitation_views.invitation_revoke,
        name="invitation-revoke",
    ),
]
