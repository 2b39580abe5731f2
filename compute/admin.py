from django.contrib import admin

from compute.models import GpuArchitecture, VmFamily, VmSize


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
