"""The API of models, endpoints and deployments: the pages' forms and actions, as JSON."""

# No `from __future__ import annotations`: django-ninja reads these annotations at import.

from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.utils.datastructures import MultiValueDict
from ninja import Body, File, Form, Router, Schema, Status
from ninja.files import UploadedFile
from ninja.pagination import paginate

from compute.api.auth import api_access
from compute.api.errors import form_invalid
from compute.api.pagination import CursorPagination, newest_first
from compute.api.schemas import Error, absolute
from compute.inference.actions.batch import cancel_batch
from compute.inference.actions.endpoints import (
    add_deployment,
    create_endpoint,
    delete_deployment,
    endpoint_keys,
    regenerate_key,
    set_traffic,
)
from compute.inference.actions.models import register_model
from compute.inference.forms.batch import BatchForm
from compute.inference.forms.endpoints import DeploymentForm, EndpointForm
from compute.inference.forms.models import ModelForm
from compute.inference.models import BatchJob, Endpoint, KeySlot, RegisteredModel
from compute.inference.selectors import (
    batch_jobs_of,
    endpoints_of,
    errors_csv,
    models_of,
    predictions_csv,
)
from compute.lib.downloads import csv_download
from compute.lib.uploads import refused_upload
from compute.models import VmSize
from compute.selectors import ID, environment_choice
from workspace.models import Role

router = Router(tags=["inference"])
REFUSALS: dict[int | str, Any] = {401: Error, 403: Error, 404: Error, 409: Error, 422: Error}
ENDPOINT = "/workspaces/{slug}/endpoints/{int:endpoint_id}"


class ModelOut(Schema):
    id: int
    name: str
    version: int
    description: str
    kind: str
    file_name: str
    size_bytes: int
    created_by: str | None
    created_at: datetime
    url: str

    @staticmethod
    def resolve_created_by(model: Any) -> str | None:
        return model.created_by.username if model.created_by_id else None

    @staticmethod
    def resolve_url(model: Any) -> str:
        return absolute(model.get_absolute_url())


class DeploymentOut(Schema):
    id: int
    name: str
    model: str  # "name:version"
    environment: str | None
    target: str
    vm_size: str
    min_replicas: int
    max_replicas: int
    target_in_flight: int
    request_timeout_ms: int
    traffic: int  # percent of the endpoint's requests

    @staticmethod
    def resolve_model(deployment: Any) -> str:
        return str(deployment.model)

    @staticmethod
    def resolve_environment(deployment: Any) -> str | None:
        return str(deployment.environment) if deployment.environment_id else None

    @staticmethod
    def resolve_vm_size(deployment: Any) -> str:
        return deployment.vm_size.name


class EndpointOut(Schema):
    id: int
    name: str
    description: str
    scoring_path: str
    scoring_url: str  # where to POST a request: the gateway's address and the path
    deployments: list[DeploymentOut]
    keys_changed_at: datetime
    created_at: datetime
    url: str

    @staticmethod
    def resolve_scoring_url(endpoint: Any) -> str:
        return settings.HANGAR_SCORE_URL.rstrip("/") + endpoint.scoring_path

    @staticmethod
    def resolve_deployments(endpoint: Any) -> list:
        return list(endpoint.deployments.all())

    @staticmethod
    def resolve_url(endpoint: Any) -> str:
        return absolute(endpoint.get_absolute_url())


class KeysOut(Schema):
    primary: str
    secondary: str


class EndpointIn(Schema):
    name: str
    description: str = ""


class DeploymentIn(Schema):
    name: str
    model: str  # "name:version", "name" (its newest version) or an id
    scoring_script: str
    target: str = "managed_cluster"
    vm_size: str  # a size's name, e.g. "Standard_DS3_v2"
    environment: str = ""  # an environment's id, name or name:version; "": the node image
    min_replicas: int = 1
    max_replicas: int = 1
    target_in_flight: int = 4
    request_timeout_ms: int = 5000


def endpoint_in(request: HttpRequest, slug: str, endpoint_id: int) -> Endpoint:
    access = api_access(request, slug)
    return get_object_or_404(endpoints_of(access.workspace), pk=endpoint_id)


def model_choice(request: HttpRequest, slug: str, text: str) -> str:
    """The form's choice for the model `text` names, or the text for the form to refuse."""
    models = models_of(api_access(request, slug).workspace)
    name, colon, version = text.strip().partition(":")
    if not colon and ID.fullmatch(name):
        found = models.filter(pk=int(name)).first()
    elif colon:
        ok = ID.fullmatch(version) is not None
        found = models.filter(name=name, version=int(version)).first() if ok else None
    else:
        found = models.filter(name=name).order_by("-version").first()
    return str(found.pk) if found else text


@router.get("/workspaces/{slug}/models", response=list[ModelOut])
@paginate(CursorPagination, **newest_first("-id"))
def list_models(request: HttpRequest, slug: str) -> QuerySet:
    return models_of(api_access(request, slug).workspace)


@router.get("/workspaces/{slug}/models/{int:model_id}", response={200: ModelOut, **REFUSALS})
def show_model(request: HttpRequest, slug: str, model_id: int) -> RegisteredModel:
    return get_object_or_404(models_of(api_access(request, slug).workspace), pk=model_id)


@router.post(
    "/workspaces/{slug}/models",
    response={201: ModelOut, **REFUSALS},
    url_name="register_model",
)
def register(
    request: HttpRequest,
    slug: str,
    name: str = Form(...),
    description: str = Form(""),
    upload: UploadedFile = File(..., description="The model's file, or a .zip of its folder."),
) -> Status:
    """Register a model (the next version when the name is taken)."""
    access = api_access(request, slug, Role.CONTRIBUTOR, "registering models")
    form = ModelForm({"name": name, "description": description}, {"upload": upload})
    refused = refused_upload(request)
    if refused or not form.is_valid():
        if refused:
            form.add_error("upload", refused)
        raise form_invalid(form)
    made = register_model(
        access,
        name=form.cleaned_data["name"],
        description=form.cleaned_data["description"],
        file_name=upload.name or "model",
        data=upload,
    )
    return Status(201, made)


@router.get("/workspaces/{slug}/endpoints", response=list[EndpointOut])
@paginate(CursorPagination, **newest_first("name", "id"))
def list_endpoints(request: HttpRequest, slug: str) -> QuerySet:
    return endpoints_of(api_access(request, slug).workspace).prefetch_related(
        "deployments__model", "deployments__environment", "deployments__vm_size"
    )


@router.get(ENDPOINT, response={200: EndpointOut, **REFUSALS})
def show_endpoint(request: HttpRequest, slug: str, endpoint_id: int) -> Endpoint:
    return endpoint_in(request, slug, endpoint_id)


@router.post("/workspaces/{slug}/endpoints", response={201: EndpointOut, **REFUSALS})
def make_endpoint(request: HttpRequest, slug: str, payload: EndpointIn) -> Status:
    access = api_access(request, slug, Role.CONTRIBUTOR, "making endpoints")
    form = EndpointForm(payload.dict())
    if not form.is_valid():
        raise form_invalid(form)
    return Status(201, create_endpoint(access, **form.cleaned_data))


@router.get(f"{ENDPOINT}/keys", response={200: KeysOut, **REFUSALS})
def show_keys(request: HttpRequest, slug: str, endpoint_id: int) -> Any:
    access = api_access(request, slug, Role.CONTRIBUTOR, "reading endpoint keys")
    return endpoint_keys(access, endpoint_in(request, slug, endpoint_id))


@router.post(f"{ENDPOINT}/keys/{{slot}}/regenerate", response={200: KeysOut, **REFUSALS})
def regenerate(request: HttpRequest, slug: str, endpoint_id: int, slot: KeySlot) -> Any:
    """A new key in one slot; the other keeps working."""
    access = api_access(request, slug, Role.CONTRIBUTOR, "regenerating endpoint keys")
    endpoint = endpoint_in(request, slug, endpoint_id)
    regenerate_key(access, endpoint, slot)
    endpoint.refresh_from_db()
    return endpoint_keys(access, endpoint)


@router.post(f"{ENDPOINT}/deployments", response={201: DeploymentOut, **REFUSALS})
def deploy(request: HttpRequest, slug: str, endpoint_id: int, payload: DeploymentIn) -> Status:
    access = api_access(request, slug, Role.CONTRIBUTOR, "deploying models")
    endpoint = endpoint_in(request, slug, endpoint_id)
    size = VmSize.objects.filter(name=payload.vm_size).values_list("pk", flat=True).first()
    data = {
        **payload.dict(),
        "model": model_choice(request, slug, payload.model),
        "vm_size": str(size) if size is not None else payload.vm_size,
        "environment": environment_choice(access.workspace, payload.environment),
    }
    form = DeploymentForm(data, workspace=access.workspace)
    if not form.is_valid():
        raise form_invalid(form)
    return Status(201, add_deployment(access, endpoint, **form.cleaned_data))


@router.delete(f"{ENDPOINT}/deployments/{{int:deployment_id}}", response={204: None, **REFUSALS})
def undeploy(request: HttpRequest, slug: str, endpoint_id: int, deployment_id: int) -> Status:
    """Remove a deployment (not while it takes traffic beside others); its replicas stop."""
    access = api_access(request, slug, Role.CONTRIBUTOR, "removing deployments")
    endpoint = endpoint_in(request, slug, endpoint_id)
    deployment = get_object_or_404(endpoint.deployments, pk=deployment_id)
    delete_deployment(access, deployment)
    return Status(204, None)


@router.put(f"{ENDPOINT}/traffic", response={200: EndpointOut, **REFUSALS})
def split_traffic(
    request: HttpRequest, slug: str, endpoint_id: int, payload: dict[str, int] = Body(...)
) -> Endpoint:
    """Every deployment's percent of the requests, by name: `{"blue": 80, "green": 20}`."""
    access = api_access(request, slug, Role.CONTRIBUTOR, "splitting endpoint traffic")
    endpoint = endpoint_in(request, slug, endpoint_id)
    by_name = {d.name: d.pk for d in endpoint.deployments.all()}
    unknown = sorted(set(payload) - set(by_name))
    if unknown:
        raise ValidationError(f"{endpoint} has no deployment named {', '.join(unknown)}.")
    set_traffic(access, endpoint, {by_name[name]: share for name, share in payload.items()})
    return endpoint_in(request, slug, endpoint_id)


# Batch scoring ----------------------------------------------------------------------------

BATCH = "/workspaces/{slug}/batch-jobs/{int:batch_id}"


class BatchJobOut(Schema):
    id: int
    name: str
    state: str
    model: str  # "name:version"
    environment: str | None
    vm_size: str
    tier: str
    node_count: int
    mini_batch_size: int
    max_attempts: int
    input_name: str
    file_count: int
    input_bytes: int
    batches_total: int
    batches_done: int
    batches_failed: int
    row_count: int
    error: str
    created_by: str | None
    created_at: datetime
    finished_at: datetime | None
    url: str
    predictions_url: str
    errors_url: str

    @staticmethod
    def resolve_model(batch: Any) -> str:
        return str(batch.model)

    @staticmethod
    def resolve_environment(batch: Any) -> str | None:
        return str(batch.environment) if batch.environment_id else None

    @staticmethod
    def resolve_vm_size(batch: Any) -> str:
        return batch.vm_size.name

    @staticmethod
    def resolve_created_by(batch: Any) -> str | None:
        return batch.created_by.username if batch.created_by_id else None

    @staticmethod
    def resolve_url(batch: Any) -> str:
        return absolute(batch.get_absolute_url())

    @staticmethod
    def resolve_predictions_url(batch: Any) -> str:
        return absolute(
            f"/api/v1/workspaces/{batch.workspace.slug}/batch-jobs/{batch.pk}/predictions"
        )

    @staticmethod
    def resolve_errors_url(batch: Any) -> str:
        return absolute(f"/api/v1/workspaces/{batch.workspace.slug}/batch-jobs/{batch.pk}/errors")


def batch_in(request: HttpRequest, slug: str, batch_id: int) -> BatchJob:
    access = api_access(request, slug)
    return get_object_or_404(
        batch_jobs_of(access.workspace).select_related("vm_size", "environment", "workspace"),
        pk=batch_id,
    )


@router.get("/workspaces/{slug}/batch-jobs", response=list[BatchJobOut])
@paginate(CursorPagination, **newest_first("-id"))
def list_batch_jobs(request: HttpRequest, slug: str) -> QuerySet:
    return batch_jobs_of(api_access(request, slug).workspace).select_related(
        "vm_size", "environment", "workspace"
    )


@router.post(
    "/workspaces/{slug}/batch-jobs",
    response={201: BatchJobOut, **REFUSALS},
    url_name="submit_batch_job",
)
def submit_batch_job(
    request: HttpRequest,
    slug: str,
    name: str = Form(...),
    model: str = Form(..., description='"name:version", "name" (its newest version) or an id'),
    scoring_script: str = Form(...),
    vm_size: str = Form(..., description='a size\'s name, e.g. "Standard_D2s_v3"'),
    environment: str = Form("", description='an id, name or name:version; "": the node image'),
    tier: str = Form("dedicated"),
    node_count: int = Form(2),
    mini_batch_size: int = Form(10),
    max_attempts: int = Form(3),
    inputs: list[UploadedFile] = File(
        None, description="Input files, or one .zip of a folder (or give from_job)."
    ),
    from_job: int | None = Form(
        None, description="instead of inputs: a completed job's id, whose output files are scored"
    ),
) -> Status:
    """Score input files with a registered model, in mini-batches on nodes of its own."""
    access = api_access(request, slug, Role.CONTRIBUTOR, "submitting batch scoring jobs")
    size = VmSize.objects.filter(name=vm_size).values_list("pk", flat=True).first()
    data = {
        "name": name,
        "model": model_choice(request, slug, model),
        "scoring_script": scoring_script,
        "vm_size": str(size) if size is not None else vm_size,
        "environment": environment_choice(access.workspace, environment),
        "tier": tier,
        "node_count": node_count,
        "mini_batch_size": mini_batch_size,
        "max_attempts": max_attempts,
        "from_job": from_job if from_job is not None else "",
    }
    form = BatchForm(data, MultiValueDict({"inputs": inputs or []}), workspace=access.workspace)
    refused = refused_upload(request)
    if refused or not form.is_valid():
        if refused:
            form.add_error("inputs", refused)
        raise form_invalid(form)
    batch = form.submit(access)
    return Status(201, batch_in(request, slug, batch.pk))


@router.get(BATCH, response={200: BatchJobOut, **REFUSALS})
def show_batch_job(request: HttpRequest, slug: str, batch_id: int) -> BatchJob:
    return batch_in(request, slug, batch_id)


@router.post(f"{BATCH}/cancel", response={200: BatchJobOut, **REFUSALS})
def cancel_batch_job(request: HttpRequest, slug: str, batch_id: int) -> BatchJob:
    """End it now: running mini-batches stop; the rows of those done are kept."""
    access = api_access(request, slug, Role.CONTRIBUTOR, "canceling batch scoring jobs")
    cancel_batch(access, batch_in(request, slug, batch_id))
    return batch_in(request, slug, batch_id)


@router.get(f"{BATCH}/predictions", response={200: None, **REFUSALS})
def batch_job_predictions(request: HttpRequest, slug: str, batch_id: int) -> HttpResponseBase:
    """predictions.csv: each mini-batch's rows once, in input order (grows while it runs)."""
    batch = batch_in(request, slug, batch_id)
    return csv_download(predictions_csv(batch), f"{batch.name}-predictions.csv")


@router.get(f"{BATCH}/errors", response={200: None, **REFUSALS})
def batch_job_errors(request: HttpRequest, slug: str, batch_id: int) -> HttpResponseBase:
    """errors.csv: the mini-batches that failed past their attempts, their files and why."""
    batch = batch_in(request, slug, batch_id)
    return csv_download(errors_csv(batch), f"{batch.name}-errors.csv")
