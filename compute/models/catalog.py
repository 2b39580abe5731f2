"""The VM catalog: families, sizes and GPU architectures (facts in shared/seeds/FACTS.md).

Loaded by a data migration so every fresh database has it; admins may edit prices and add
sizes in the Django admin.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models


class Category(models.TextChoices):
    GENERAL = "general", "General purpose"
    MEMORY = "memory", "Memory optimized"
    COMPUTE = "compute", "Compute optimized"
    HPC = "hpc", "High-performance compute"
    GPU = "gpu", "GPU"


class GpuArchitecture(models.Model):
    """An NVIDIA architecture, the VM series built on it, and the CUDA it needs."""

    name = models.CharField(max_length=32, unique=True)
    series = models.CharField(max_length=100, help_text="VM series using it, e.g. NCv3, NDv2")
    min_cuda = models.CharField("minimum CUDA", max_length=8)
    release_order = models.PositiveSmallIntegerField(
        help_text="Newest architecture first when listed (higher is newer)."
    )

    class Meta:
        ordering = ["-release_order"]
        verbose_name = "GPU architecture"

    def __str__(self) -> str:
        return self.name

    @property
    def cuda_guidance(self) -> str:
        return (
            f"{self.name} GPUs need CUDA {self.min_cuda} or newer; the CUDA version must "
            "also match what your PyTorch or TensorFlow build supports."
        )


class VmFamily(models.Model):
    name = models.CharField(max_length=32, unique=True)
    category = models.CharField(max_length=16, choices=Category.choices)
    restricted = models.BooleanField(
        default=False, help_text="Needs an approved quota increase before first use."
    )
    serves_clusters = models.BooleanField("serves compute clusters", default=True)
    serves_instances = models.BooleanField("serves compute instances", default=True)
    gpu_architecture = models.ForeignKey(
        GpuArchitecture, null=True, blank=True, on_delete=models.PROTECT, related_name="families"
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "VM family"
        verbose_name_plural = "VM families"

    def __str__(self) -> str:
        return self.name


class VmSize(models.Model):
    name = models.CharField(max_length=48, unique=True, help_text="e.g. Standard_DS3_v2")
    family = models.ForeignKey(VmFamily, on_delete=models.PROTECT, related_name="sizes")
    vcpus = models.PositiveSmallIntegerField("vCPUs")
    memory_gib = models.DecimalField("memory (GiB)", max_digits=7, decimal_places=1)
    gpus = models.PositiveSmallIntegerField("GPUs", default=0)
    gpu_model = models.CharField("GPU model", max_length=48, blank=True)
    gpu_memory_gib = models.PositiveSmallIntegerField("GPU memory per GPU (GiB)", default=0)
    isolated = models.BooleanField(
        default=False, help_text="Dedicated to a single customer on its hardware."
    )
    rdma = models.BooleanField("RDMA", default=False)
    price_dedicated = models.DecimalField(
        "est. $/hour dedicated", max_digits=8, decimal_places=3, default=Decimal("0")
    )
    price_low_priority = models.DecimalField(
        "est. $/hour low priority", max_digits=8, decimal_places=3, default=Decimal("0")
    )

    class Meta:
        ordering = ["family__name", "vcpus", "name"]
        verbose_name = "VM size"

    def __str__(self) -> str:
        return self.name

    @property
    def has_gpu(self) -> bool:
        return self.gpus > 0

    @property
    def short_name(self) -> str:
        return self.name.removeprefix("Standard_")
