from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from compute import enqueue, quota
from compute.actions import hosts as host_actions
from compute.actions import quota as quota_actions
from compute.forms.hosts import TLS_FIELDS, NodeHostForm
from compute.models import (
    Attachment,
    Compute,
    Environment,
    EnvironmentImage,
    Event,
    FamilyQuota,
    GpuArchitecture,
    Job,
    Node,
    NodeHost,
    QuotaRequest,
    VmFamily,
    VmSize,
    WorkspaceQuota,
)
from workspace.admin_lists import ListAdmin, LongListAdmin


@admin.register(GpuArchitecture)
class GpuArchitectureAdmin(ListAdmin):
    list_display = ["name", "series", "min_cuda"]
    search_fields = ["name", "series"]


SIZE_COLUMNS = [
    "vcpus",
    "memory_gib",
    "gpus",
    "gpu_model",
    "isolated",
    "rdma",
    "price_dedicated",
    "price_low_priority",
]


class VmSizeInline(admin.TabularInline):
    model = VmSize
    extra = 0
    fields = ["name", *SIZE_COLUMNS]


@admin.register(VmFamily)
class VmFamilyAdmin(ListAdmin):
    list_display = [
        "name",
        "category",
        "restricted",
        "gpu_architecture",
        "serves_clusters",
        "serves_instances",
    ]
    list_filter = ["category", "restricted", "gpu_architecture"]
    search_fields = ["name"]
    list_select_related = ["gpu_architecture"]
    inlines = [VmSizeInline]


@admin.register(VmSize)
class VmSizeAdmin(ListAdmin):
    list_display = ["name", "family", *SIZE_COLUMNS]
    list_filter = ["family__category", "family__restricted", "isolated", "rdma", "family"]
    search_fields = ["name", "gpu_model", "family__name"]
    list_select_related = ["family"]
    list_editable = ["price_dedicated", "price_low_priority"]
    # The catalog's 84 sizes in pages of 25 like every list (an editable row costs more
    # than a plain one: 100 of them took 130 ms); the family filter narrows the sheet.


class ReadMostlyAdmin(ListAdmin):
    """Lifecycle state belongs to actions and controllers: the admin looks, it does not edit."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class LiveNodeInline(admin.TabularInline):
    """The nodes a compute has now. A cluster that scaled up and down all year has
    thousands of ended ones: those are a link away (ComputeAdmin.all_nodes)."""

    model = Node
    extra = 0
    readonly_fields = ["index", "state", "container_ref", "started_at", "last_busy_at", "error"]
    fields = tuple(readonly_fields)
    ordering = ["index"]  # the compute's own order (Node's default joins Compute to sort)
    can_delete = False
    verbose_name_plural = "live nodes"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(ended_at__isnull=True)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Compute)
class ComputeAdmin(ReadMostlyAdmin):
    list_display = [
        "name",
        "workspace",
        "kind",
        "state",
        "vm_size",
        "min_nodes",
        "max_nodes",
        "created_by",
        "created_at",
    ]
    list_filter = ["kind", "state", "tier", "vm_size__family", "created_at"]
    search_fields = ["name", "workspace__name", "workspace__slug", "last_error"]
    list_select_related = ["workspace", "vm_size", "created_by"]
    # Newest first, from the primary key: sorting 10,000 names for every page was most of
    # its time (a column header still sorts by name on demand).
    ordering = ["-id"]
    inlines = [LiveNodeInline]
    readonly_fields = ["all_nodes"]
    exclude = ["secret_environment"]  # an instance's secret variables: never shown

    @admin.display(description="nodes")
    def all_nodes(self, obj: Compute) -> str:
        url = reverse("admin:compute_node_changelist")
        return format_html(
            '<a href="{}?compute__id__exact={}">All {} nodes of this compute →</a>',
            url,
            obj.pk,
            obj.nodes.count(),
        )


@admin.register(Job)
class JobAdmin(LongListAdmin, ReadMostlyAdmin):
    """Jobs as they are; secret variables are never shown, not even encrypted."""

    list_display = ["__str__", "workspace", "compute", "status", "submitted_by", "queued_at"]
    # By date: ranges of the queued_at index (a date_hierarchy read every row for its years).
    list_filter = ["status", "compute__kind", "queued_at"]
    search_fields = ["name", "command", "compute__name", "workspace__name", "workspace__slug"]
    list_select_related = ["workspace", "compute", "submitted_by"]
    exclude = ["secret_environment"]


@admin.register(Attachment)
class AttachmentAdmin(ReadMostlyAdmin):
    """How attached computes are reached. The secret is never shown, not even encrypted."""

    list_display = ["compute", "target_kind", "address", "healthy", "last_seen_at"]
    list_filter = ["target_kind", "healthy"]
    search_fields = [
        "compute__name",
        "host",
        "username",
        "health_reason",
        "compute__workspace__name",
    ]
    list_select_related = ["compute"]
    exclude = ["secret"]


@admin.register(Node)
class NodeAdmin(LongListAdmin, ReadMostlyAdmin):
    """Every node ever (rows stay when a node ends); a compute's own come from its page
    (?compute__id__exact=)."""

    list_display = [
        "__str__",
        "compute",
        "state",
        "host",
        "container_ref",
        "started_at",
        "last_busy_at",
    ]
    list_filter = ["state", "compute__kind"]
    search_fields = ["compute__name", "container_ref", "compute__workspace__name", "host__name"]
    list_select_related = ["compute", "host"]
    # Newest first, from the primary key: Node's own order sorts every node by its
    # compute's name (a join and a sort of the whole table).
    ordering = ["-id"]


@admin.register(Event)
class EventAdmin(LongListAdmin, ReadMostlyAdmin):
    list_display = ["created_at", "compute", "level", "verb", "who", "message"]
    # By date: ranges of the created_at index (a date_hierarchy read every row for its years).
    list_filter = ["level", "verb", "compute__kind", "created_at"]
    search_fields = ["message", "compute__name", "compute__workspace__name"]
    list_select_related = ["compute", "actor"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# Where a listed request keeps its figures (QuotaRequestAdmin.get_changelist_instance).
STANDING = "_standing"


def standing_of(obj: QuotaRequest) -> quota.Standing:
    """The figures the list attached, or (the change page: one request) read now."""
    standing = getattr(obj, STANDING, None)
    if standing is None:
        standing = quota.request_standings([obj])[obj.pk]
        setattr(obj, STANDING, standing)
    return standing


@admin.register(QuotaRequest)
class QuotaRequestAdmin(ListAdmin):
    """Where site admins decide: filter, search, and approve or reject with a reason."""

    list_display = [
        "__str__",
        "workspace",
        "target",
        "requested_limit",
        "current_limit",
        "current_usage",
        "status",
        "requested_by",
        "created_at",
    ]
    list_filter = ["status", "family", "family__restricted"]
    search_fields = [
        "workspace__name",
        "workspace__slug",
        "family__name",
        "justification",
        "requested_by__username",
    ]
    list_select_related = ["workspace", "family", "requested_by"]
    readonly_fields = [
        "workspace",
        "family",
        "requested_limit",
        "justification",
        "requested_by",
        "created_at",
        "status",
        "decided_by",
        "decided_at",
        "reason",
        "current_limit",
        "current_usage",
    ]
    actions = ["approve", "reject"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # read-only: decisions go through the actions, for approvers only

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_decide_permission(self, request) -> bool:
        return quota_actions.can_decide(request.user)

    def get_changelist_instance(self, request):
        """The list's figures for the whole page at once (quota.request_standings: four
        queries), instead of two usage queries per row."""
        changelist = super().get_changelist_instance(request)
        shown = list(changelist.result_list)  # the page's rows; the template reuses them
        standings = quota.request_standings(shown)
        for item in shown:
            setattr(item, STANDING, standings[item.pk])
        return changelist

    @admin.display(description="current limit")
    def current_limit(self, obj: QuotaRequest) -> int:
        return standing_of(obj).limit

    @admin.display(description="in use now")
    def current_usage(self, obj: QuotaRequest) -> int:
        return standing_of(obj).used

    @admin.action(description="Approve selected requests…", permissions=["decide"])
    def approve(self, request, queryset):
        return self._decide(request, queryset, approve=True)

    @admin.action(description="Reject selected requests…", permissions=["decide"])
    def reject(self, request, queryset):
        return self._decide(request, queryset, approve=False)

    def _decide(self, request, queryset, approve: bool):
        """First call shows a page asking for the reason; the confirmation decides."""
        if "apply" not in request.POST:
            return TemplateResponse(
                request,
                "admin/compute/quotarequest/decide.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Approve quota requests" if approve else "Reject quota requests",
                    "requests": queryset,
                    "approve": approve,
                    "action": "approve" if approve else "reject",
                    "opts": self.model._meta,
                },
            )
        reason = request.POST.get("reason", "")
        for item in queryset:
            try:
                quota_actions.decide(item.pk, approve=approve, admin=request.user, reason=reason)
            except (ValidationError, PermissionDenied) as error:
                why = error.messages if isinstance(error, ValidationError) else [str(error)]
                self.message_user(request, " ".join(why), level=messages.ERROR)
            else:
                verb = "Approved" if approve else "Rejected"
                self.message_user(request, f"{verb} request #{item.pk}.", level=messages.SUCCESS)
        return None


class QuotaRowAdmin(ListAdmin):
    """Quota rows are edited by quota approvers only, and through the same action as a
    decision, so every change is in the workspace's activity log."""

    edited: tuple[str, ...] = ()

    def has_add_permission(self, request) -> bool:
        return False  # rows are made on demand

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return quota_actions.can_decide(request.user)

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [f.name for f in self.model._meta.fields if f.name not in self.edited]

    def save_model(self, request, obj, form, change) -> None:
        try:
            quota_actions.set_quota(
                request.user, obj, {field: form.cleaned_data[field] for field in self.edited}
            )
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), level=messages.ERROR)


@admin.register(FamilyQuota)
class FamilyQuotaAdmin(QuotaRowAdmin):
    list_display = ["workspace", "family", "limit", "approved"]
    list_filter = ["family__restricted", "family"]
    search_fields = ["workspace__name", "family__name"]
    list_select_related = ["workspace", "family"]
    edited = ("limit", "approved")


@admin.register(WorkspaceQuota)
class WorkspaceQuotaAdmin(QuotaRowAdmin):
    list_display = ["workspace", "low_priority_limit", "low_priority_approved", "max_computes"]
    search_fields = ["workspace__name"]
    list_select_related = ["workspace"]
    edited = ("low_priority_limit", "low_priority_approved", "max_computes")


@admin.register(Environment)
class EnvironmentAdmin(ReadMostlyAdmin):
    list_display = ["__str__", "workspace", "image_state", "image_size", "created_by", "created_at"]
    list_filter = ["image__state"]
    search_fields = ["name", "workspace__slug"]
    list_select_related = ["workspace", "image", "created_by"]

    @admin.display(description="Image", ordering="image__state")
    def image_state(self, obj: Environment) -> str:
        return obj.image.get_state_display()

    @admin.display(description="Disk")
    def image_size(self, obj: Environment) -> str:
        return filesizeformat(obj.image.size_bytes) if obj.image.size_bytes else "—"


@admin.register(EnvironmentImage)
class EnvironmentImageAdmin(ReadMostlyAdmin):
    """The images built for environments, with the disk each takes; unused ones can be
    removed (a worker does it: only workers talk to Docker)."""

    list_display = ["tag", "state", "disk", "attempts", "finished_at"]
    list_filter = ["state"]
    search_fields = ["tag", "spec_hash"]
    actions = ["remove_unused"]

    @admin.display(description="Disk", ordering="size_bytes")
    def disk(self, obj: EnvironmentImage) -> str:
        return filesizeformat(obj.size_bytes) if obj.size_bytes else "—"

    @admin.action(
        description="Remove the selected images no live node or unfinished job uses",
        permissions=["delete"],
    )
    def remove_unused(self, request, queryset) -> None:
        pks = list(queryset.values_list("pk", flat=True))
        enqueue.prune_environment_images(pks)
        self.message_user(
            request,
            f"A worker removes those of the {len(pks)} selected images that nothing uses; "
            "the others are kept. Each is built again when next asked for.",
            messages.SUCCESS,
        )


def capacity_text(figure: str, override: object, engine: str) -> str:
    return f"{figure} (override; engine: {engine})" if override is not None else figure


@admin.register(NodeHost)
class NodeHostAdmin(ListAdmin):
    """The Docker engines nodes run on. TLS material is write-only (compute/forms/hosts.py);
    state changes go through the actions, each confirmed first."""

    form = NodeHostForm
    list_display = [
        "name",
        "docker_url",
        "state",
        "cores",
        "memory",
        "gpu_count",
        "nodes_on_it",
        "last_seen_at",
        "error",
    ]
    list_filter = ["state", "on_this_machine"]
    search_fields = ["name", "docker_url", "last_error"]
    readonly_fields = [
        "state",
        "tls",
        "reported",
        "last_seen_at",
        "unreachable_since",
        "nodes_lost_at",
        "last_error",
        "nodes_on_it",
        "created_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "docker_url", "labels_text", "on_this_machine", "state"]}),
        (
            "TLS client certificate (tcp:// only; stored encrypted, never shown)",
            {"fields": ["tls", "tls_ca", "tls_cert", "tls_key", "clear_tls"]},
        ),
        (
            "Capacity",
            {"fields": ["reported", "cpus_override", "memory_gib_override", "gpus_override"]},
        ),
        (
            "Health",
            {
                "fields": [
                    "last_seen_at",
                    "unreachable_since",
                    "nodes_lost_at",
                    "last_error",
                    "nodes_on_it",
                    "created_at",
                ]
            },
        ),
    ]
    actions = ["drain", "disable", "make_ready"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        # The form's own fields: the fieldsets name form-only fields (labels, TLS paste
        # boxes), which must not become model fields copied as posted.
        kwargs["fields"] = None
        return super().get_form(request, obj, change=change, **kwargs)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(live_nodes=Count("nodes", filter=Q(nodes__ended_at__isnull=True)))
        )

    @admin.display(description="cores")
    def cores(self, obj: NodeHost) -> str:
        return capacity_text(f"{obj.capacity_cpus:g}", obj.cpus_override, f"{obj.cpus:g}")

    @admin.display(description="memory")
    def memory(self, obj: NodeHost) -> str:
        return capacity_text(
            filesizeformat(obj.capacity_memory_bytes),
            obj.memory_gib_override,
            filesizeformat(obj.memory_bytes),
        )

    @admin.display(description="GPUs")
    def gpu_count(self, obj: NodeHost) -> str:
        return capacity_text(str(obj.capacity_gpus), obj.gpus_override, str(obj.gpus))

    @admin.display(description="reported by the engine")
    def reported(self, obj: NodeHost) -> str:
        if not obj.cpus:
            return "Not read yet (the sweep reads it once the engine answers)."
        return f"{obj.cpus:g} cores · {filesizeformat(obj.memory_bytes)} · {obj.gpus} GPU(s)"

    @admin.display(description="nodes")
    def nodes_on_it(self, obj: NodeHost) -> str:
        count = getattr(obj, "live_nodes", None)
        if count is None:
            count = obj.nodes.filter(ended_at__isnull=True).count()
        url = reverse("admin:compute_node_changelist")
        return format_html('<a href="{}?host__id__exact={}">{} live</a>', url, obj.pk, count)

    @admin.display(description="last error")
    def error(self, obj: NodeHost) -> str:
        return obj.last_error[:120] or "—"

    @admin.display(description="TLS material")
    def tls(self, obj: NodeHost) -> str:
        stored = [name for name in TLS_FIELDS if getattr(obj, name)]
        if not stored:
            return "not set"
        return "set" if len(stored) == len(TLS_FIELDS) else f"partly set ({', '.join(stored)})"

    @admin.action(description="Drain the selected hosts…", permissions=["change"])
    def drain(self, request, queryset):
        return self._move(request, queryset, "drain")

    @admin.action(description="Disable the selected hosts…", permissions=["change"])
    def disable(self, request, queryset):
        return self._move(request, queryset, "disable")

    @admin.action(description="Make the selected hosts ready…", permissions=["change"])
    def make_ready(self, request, queryset):
        return self._move(request, queryset, "make_ready")

    def _move(self, request, queryset, action: str):
        """First call shows what the change does and to which hosts; the confirmation
        applies it."""
        move = host_actions.MOVES[action]
        hosts = list(queryset)
        if "apply" not in request.POST:
            return TemplateResponse(
                request,
                "admin/compute/nodehost/confirm_state.html",
                {
                    **self.admin_site.each_context(request),
                    "title": f"{move.verb} node hosts",
                    "move": move,
                    "action": action,
                    "rows": [(host, host_actions.refusal(host, move)) for host in hosts],
                    "opts": self.model._meta,
                },
            )
        for host in hosts:
            why = host_actions.set_host_state(host, action)
            if why:
                self.message_user(
                    request, f"Node host {host.name} left as it is: {why}.", messages.WARNING
                )
            else:
                self.log_change(request, host, f"{move.verb}: now {host.get_state_display()}.")
                self.message_user(
                    request,
                    f"Node host {host.name} is now {host.get_state_display().lower()}.",
                    messages.SUCCESS,
                )
        return None
