from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path

from compute.api.main import api
from compute.views.home import home
from compute.views.metrics import metrics
from workspace.views import errors
from workspace.views.invitations import invitation_accept, invitation_decline, invitations
from workspace.views.tokens import token_revoke, tokens
from workspace.views.workspaces import notifications, notifications_read


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    # At request time: the hashed name is known once collectstatic has run.
    return HttpResponsePermanentRedirect(static("hangar/favicon.svg"))


urlpatterns = [
    path("", home, name="home"),
    # Browsers ask for /favicon.ico on their own: the icon the pages name, not a 404.
    path("favicon.ico", favicon),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("notifications/", notifications, name="notifications"),
    path("notifications/read/", notifications_read, name="notifications-read"),
    path("invitations/", invitations, name="invitations"),
    path("invitations/<int:invitation_id>/accept/", invitation_accept, name="invitation-accept"),
    path("invitations/<int:invitation_id>/decline/", invitation_decline, name="invitation-decline"),
    path("profile/tokens/", tokens, name="tokens"),
    path("profile/tokens/<int:token_id>/revoke/", token_revoke, name="token-revoke"),
    path("w/", include("workspace.urls")),
    path("", include("compute.urls")),
    path("", include("compute.inference.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    # Prometheus' usual address, no trailing slash; off unless HANGAR_METRICS_TOKEN is set.
    path("metrics", metrics, name="metrics"),
]

# Error pages that keep the navigation (a workspace's, for its members) and say what next.
handler403 = errors.permission_denied
handler404 = errors.page_not_found
handler500 = errors.server_error
