from django.contrib import admin

from compute.models import Compute, Event, GpuArchitecture, Node, VmFamily, VmSize


@admin.register(GpuArchitecture)
class GpuArchitectureAdmin(admin.ModelAdmin):
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
class VmFamilyAdmin(admin.ModelAdmin):
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
    inlines = [VmSizeInline]


@admin.register(VmSize)
class VmSizeAdmin(admin.ModelAdmin):
    list_display = ["name", "family", *SIZE_COLUMNS]
    list_filter = ["family__category", "family__restricted", "isolated", "rdma", "family"]
    search_fields = ["name", "gpu_model", "family__name"]
    list_select_related = ["family"]
    list_editable = ["price_dedicated", "price_low_priority"]


class ReadMostlyAdmin(admin.ModelAdmin):
    """Lifecycle state belongs to actions and controllers: the admin looks, it does not edit."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class NodeInline(admin.TabularInline):
    model = Node
    extra = 0
    fields = ["index", "state", "container_ref", "started_at", "last_busy_at", "error"]
    readonly_fields = fields
    can_delete = False

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
    list_filter = ["kind", "state", "tier", "workspace", "vm_size__family"]
    search_fields = ["name", "workspace__name", "workspace__slug", "last_error"]
    list_select_related = ["workspace", "vm_size", "created_by"]
    date_hierarchy = "created_at"
    inlines = [NodeInline]


@admin.register(Node)
class NodeAdmin(ReadMostlyAdmin):
    list_display = ["__str__", "compute", "state", "container_ref", "started_at", "last_busy_at"]
    list_filter = ["state", "compute__kind", "compute__workspace"]
    search_fields = ["compute__name", "container_ref"]
    list_select_related = ["compute"]


@admin.register(Event)
class EventAdmin(ReadMostlyAdmin):
    list_display = ["created_at", "compute", "level", "verb", "who", "message"]
    list_filter = ["level", "verb", "compute__kind", "compute__workspace"]
    search_fields = ["message", "compute__name"]
    list_select_related = ["compute", "actor"]
    date_hierarchy = "created_at"

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
