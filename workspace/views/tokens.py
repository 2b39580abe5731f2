"""The user's personal access tokens (profile → API tokens): make one, list them, revoke.

A new token is shown once, in the answer to the POST that made it: never put in the session,
a URL, a message or a log. A token is reachable only by its owner: anyone else's id answers
404, like a workspace the user is not a member of.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST

from workspace.access import AuthedRequest
from workspace.forms import AccessTokenForm
from workspace.models import AccessToken
from workspace.redirects import local_target
from workspace.tokens import NewToken, create_token, revoke_token

PAGE_SIZE = 25


@login_required
@require_http_methods(["GET", "POST"])
@sensitive_variables()  # `made` holds the new token in clear (error reports list locals)
def tokens(request: AuthedRequest) -> HttpResponse:
    made: NewToken | None = None
    if request.method == "POST":
        form = AccessTokenForm(request.POST, user=request.user)
        if form.is_valid():
            try:
                made = create_token(request.user, **form.cleaned_data)
            except ValidationError as error:
                form.add_error(None, error)  # a dict lands on its fields; the limit on top
            else:
                form = AccessTokenForm(user=request.user)  # blank again, for the next one
    else:
        form = AccessTokenForm(user=request.user)
    response = render(request, "workspace/tokens.html", page_context(request, form, made))
    if made is not None:
        response["Cache-Control"] = "no-store"  # shown once: never again from a cache
    return response


@sensitive_variables()
def page_context(request: AuthedRequest, form: AccessTokenForm, made: NewToken | None) -> dict:
    mine = AccessToken.objects.filter(user=request.user).select_related("workspace")
    return {
        "nav": "tokens",
        "form": form,
        "made": made,
        "page": Paginator(mine, PAGE_SIZE).get_page(request.GET.get("page")),
        "now": timezone.now(),
        "site_url": request.build_absolute_uri("/").rstrip("/"),
    }


@login_required
@require_POST
def token_revoke(request: AuthedRequest, token_id: int) -> HttpResponse:
    try:
        token = revoke_token(request.user, token_id)
    except ValidationError:
        raise Http404("No such token.")  # another user's token does not exist for this one
    messages.success(
        request,
        f"Revoked “{token.name}” (hgr_{token.prefix}…): anything still using it is refused.",
    )
    back = reverse("tokens")
    return redirect(local_target(request, request.POST.get("next", ""), back))
