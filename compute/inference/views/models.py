"""Model pages: the workspace's registered models, registering one (an upload), and one's
page."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render

from compute.inference.actions.models import register_model
from compute.inference.forms.models import ModelForm
from compute.inference.selectors import models_of
from compute.lib.uploads import refused_upload
from compute.views.common import add_errors
from workspace.access import AuthedRequest, WorkspaceAccess, workspace_view
from workspace.models import Role
from workspace.queries import KeysFirstPaginator

PER_PAGE = 50


@workspace_view()
def model_list(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    paginator = KeysFirstPaginator(
        models_of(access.workspace).order_by("name", "-version"), PER_PAGE
    )
    page = paginator.get_page(request.GET.get("page"))
    return render(
        request,
        "inference/models.html",
        {"nav": "models", "access": access, "workspace": access.workspace, "page": page},
    )


@workspace_view(Role.CONTRIBUTOR, "registering models")
def model_create(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    form = ModelForm(request.POST or None, request.FILES or None)
    refused = refused_upload(request)
    if request.method == "POST" and refused:
        form.is_valid()
        form.add_error("upload", refused)
    elif request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["upload"]
        try:
            made = register_model(
                access,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                file_name=upload.name,
                data=upload,
            )
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, f"Registered model {made}.")
            return redirect(made)
    return render(
        request,
        "inference/model_form.html",
        {"nav": "models", "access": access, "workspace": access.workspace, "form": form},
    )


@workspace_view()
def model_detail(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    model = models_of(access.workspace).filter(pk=pk).first()
    if model is None:
        raise Http404("No such model in this workspace.")
    versions = models_of(access.workspace).filter(name=model.name).order_by("-version")[:20]
    return render(
        request,
        "inference/model.html",
        {
            "nav": "models",
            "access": access,
            "workspace": access.workspace,
            "model": model,
            "versions": versions,
        },
    )
