"""Compute pages: the list with its tabs, create forms, the live detail page, actions."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, F, Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from compute.actions import computes as actions
from compute.forms.computes import ClusterBoundsForm, ClusterForm, InstanceForm
from compute.models import Compute, ComputeKind, ComputeState, Job, JobStatus, Node
from compute.models.states import JOB_ACTIVE, JOB_UNFINISHED, LIVE_NODE_STATES, NODE_CHANGING
from compute.selectors import computes_of
from compute.views.attached import attached_detail
from compute.views.charts import cluster_chart
from compute.views.common import add_errors, back
from compute.views.quota import what_if_for_form
from workspace.access import AuthedRequest, WorkspaceAccess, require_role, workspace_view
from workspace.models import Role
from workspace.queries import count_per_row
from workspace.views.htmx import render_htmx

TABS = {
    "instances": ComputeKind.INSTANCE,
    "clusters": ComputeKind.CLUSTER,
    "attached": ComputeKind.ATTACHED,
}
PAGE_SIZE = 25
EVENTS_ON_PAGE = 30
NODES_ON_PAGE = 24


@workspace_view()
def compute_list(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    tab = request.GET.get("tab", "instances")
    if tab not in TABS:
        tab = "instances"
    computes = (
        computes_of(access)
        .filter(kind=TABS[tab])
        .exclude(state=ComputeState.DELETED)
        .select_related("vm_size", "created_by", "assigned_to", "attachment")
        .annotate(
            live_nodes=count_per_row(Node.objects.filter(state__in=LIVE_NODE_STATES), "compute"),
            queued_jobs=count_per_row(Job.objects.filter(status=JobStatus.QUEUED), "compute"),
            running_jobs=count_per_row(Job.objects.filter(status__in=JOB_ACTIVE), "compute"),
        )
        .order_by("name")
    )
    page = Paginator(computes, PAGE_SIZE).get_page(request.GET.get("page"))
    counts = dict(
        computes_of(access)
        .exclude(state=ComputeState.DELETED)
        .values_list("kind")
        .annotate(n=Count("id"))
        .values_list("kind", "n")
    )
    steady = all(compute.is_steady for compute in page)
    return render_htmx(
        request,
        "compute/list.html",
        {
            "nav": "compute",
            "access": access,
            "workspace": access.workspace,
            "tab": tab,
            "page": page,
            "query": f"tab={tab}",
            "steady": steady,
            "instance_count": counts.get(ComputeKind.INSTANCE, 0),
            "cluster_count": counts.get(ComputeKind.CLUSTER, 0),
            "attached_count": counts.get(ComputeKind.ATTACHED, 0),
        },
        partial="compute-table",
        steady=steady,
    )


def _members(access: WorkspaceAccess) -> list:
    return [
        m.user
        for m in access.workspace.memberships.select_related("user").order_by("user__username")
    ]


@sensitive_post_parameters("secret_environment")
@sensitive_variables()  # an instance's secret variables pass through here in clear
@workspace_view(Role.CONTRIBUTOR, "creating compute")
def compute_create(request: AuthedRequest, access: WorkspaceAccess, kind: str) -> HttpResponse:
    if kind not in ("instance", "cluster"):
        raise Http404("No such kind of compute.")
    data = request.POST if request.method == "POST" else None
    if kind == "instance":
        form: InstanceForm | ClusterForm = InstanceForm(
            data, workspace=access.workspace, members=_members(access), can_assign=access.is_admin
        )
        create: Callable[..., Compute] = actions.create_instance
    else:
        form = ClusterForm(data, workspace=access.workspace)
        create = actions.create_cluster
    if data is not None and form.is_valid():
        try:
            compute = create(access, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, f"Creating {compute.name}…")
            return redirect(compute)
    return render(
        request,
        "compute/create.html",
        {
            "nav": "compute",
            "access": access,
            "workspace": access.workspace,
            "form": form,
            "kind": kind,
            "what_if": what_if_for_form(access.workspace, form),
        },
    )


def _detail_context(access: WorkspaceAccess, compute: Compute) -> dict:
    # Live and changing nodes counted in one read of the live-node index (node_live_idx).
    nodes = compute.nodes.filter(state__in=(*LIVE_NODE_STATES, *NODE_CHANGING)).aggregate(
        live=Count("pk", filter=Q(state__in=LIVE_NODE_STATES)),
        changing=Count("pk", filter=Q(state__in=NODE_CHANGING)),
    )
    # Jobs at work or nodes coming and going keep the page live even in a steady state;
    # so do idle nodes above a cluster's minimum (they will scale down soon).
    busy = compute.jobs.filter(status__in=JOB_UNFINISHED).exists()
    changing = bool(nodes["changing"]) or (compute.is_cluster and nodes["live"] > compute.min_nodes)
    return {
        "steady": compute.is_steady and not busy and not changing,
        "chart": cluster_chart(compute) if compute.is_cluster else None,
        "recent_jobs": compute.jobs.select_related("submitted_by").order_by("-queued_at")[:8],
        "nav": "compute",
        "access": access,
        "workspace": access.workspace,
        "compute": compute,
        # The newest rows: the live nodes, then the last ones removed (older ones are
        # history, told by the events).
        "nodes": compute.nodes.order_by(F("ended_at").desc(nulls_first=True), "-index")[
            :NODES_ON_PAGE
        ],
        "live_nodes": nodes["live"],
        "events": compute.events.select_related("actor")[:EVENTS_ON_PAGE],
        "verbs": compute.allowed_verbs(access.role),
    }


@workspace_view()
def compute_detail(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    compute = get_object_or_404(
        computes_of(access).select_related(
            "vm_size__family", "created_by", "assigned_to", "environment__image"
        ),
        pk=pk,
    )
    if compute.is_attached and compute.state != ComputeState.DELETED:
        return attached_detail(request, access, compute)
    context = _detail_context(access, compute)
    return render_htmx(
        request,
        "compute/detail.html",
        context,
        partial="live",
        steady=context["steady"],
        messages=True,
    )


@workspace_view(Role.CONTRIBUTOR, "changing compute")
def compute_action(
    request: AuthedRequest, access: WorkspaceAccess, pk: int, verb: str
) -> HttpResponse:
    if verb not in ("start", "stop", "restart", "delete"):
        raise Http404("No such action.")
    compute = get_object_or_404(computes_of(access), pk=pk)
    if request.method != "POST":
        return redirect(compute)
    try:
        if verb == "delete":
            require_role(access, Role.ADMIN, "deleting compute")
            actions.delete_compute(access, compute.pk)
            messages.success(request, f"Deleting {compute.name}: its nodes are being removed.")
        else:
            actions.instance_verb(access, compute.pk, verb)
            if verb == "start" and request.POST.get("then") == "submit":
                # "Start and submit job": a starting instance takes jobs; they wait for it.
                messages.success(request, f"Starting {compute.name}: your job waits for it.")
                submit = reverse("compute:job-submit", args=[access.workspace.slug])
                return redirect(f"{submit}?compute={compute.pk}")
            messages.success(request, f"{compute.name}: {verb} requested.")
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    if request.htmx:
        compute.refresh_from_db()
        context = _detail_context(access, compute)
        return render_htmx(request, "compute/detail.html", context, partial="live", messages=True)
    return back(request, compute)  # "Stop now" from the inbox returns there


@workspace_view(Role.CONTRIBUTOR, "changing compute")
def cluster_update(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    compute = get_object_or_404(computes_of(access).filter(kind=ComputeKind.CLUSTER), pk=pk)
    initial = {
        "min_nodes": compute.min_nodes,
        "max_nodes": compute.max_nodes,
        "idle_seconds_before_scaledown": compute.idle_seconds_before_scaledown,
    }
    form = ClusterBoundsForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            actions.update_cluster(access, compute.pk, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, f"{compute.name}: resizing to the new bounds.")
            return redirect(compute)
    return render(
        request,
        "compute/cluster_update.html",
        {
            "nav": "compute",
            "access": access,
            "workspace": access.workspace,
            "compute": compute,
            "form": form,
        },
    )
