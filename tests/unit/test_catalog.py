"""The catalog the data migration loads, and the catalog page's filters."""

from __future__ import annotations

import pytest
from django.urls import reverse

from compute.models import GpuArchitecture, VmFamily, VmSize

pytestmark = pytest.mark.django_db

# Copied from shared/seeds/FACTS.md "Supported VM families": name -> (restricted, category)
FACTS_FAMILIES = {
    "DDSv4": (False, "general"),
    "Dv2": (False, "general"),
    "Dv3": (False, "general"),
    "DSv2": (False, "general"),
    "DSv3": (False, "general"),
    "EAv4": (False, "memory"),
    "Ev3": (False, "memory"),
    "FSv2": (False, "compute"),
    "H": (False, "hpc"),
    "HB": (True, "hpc"),
    "HBv2": (True, "hpc"),
    "HCS": (True, "hpc"),
    "M": (True, "memory"),
    "NC": (False, "gpu"),
    "NC Promo": (False, "gpu"),
    "NCsv2": (True, "gpu"),
    "NCsv3": (True, "gpu"),
    "NDs": (True, "gpu"),
    "NDv2": (True, "gpu"),
    "NV": (False, "gpu"),
    "NVv3": (True, "gpu"),
}
FACTS_ISOLATED = {
    "Standard_M128ms",
    "Standard_F72s_v2",
    "Standard_NC24s_v3",
    "Standard_NC24rs_v3",
}
FACTS_CUDA = {
    "Ampere": ("NDA100_v4", "11.0"),
    "Turing": ("NCT4_v3", "10.0"),
    "Volta": ("NCv3, NDv2", "9.0"),
    "Pascal": ("NCv2, ND", "9.0"),
    "Maxwell": ("NV, NVv3", "9.0"),
    "Kepler": ("NC, NC Promo", "9.0"),
}
# The cloud publishes a single size for NDv2 (Standard_ND40rs_v2); none is invented.
SINGLE_SIZE_FAMILIES = {"NDv2"}


def test_migration_loads_the_21_families_with_their_restrictions():
    loaded = {f.name: (f.restricted, f.category) for f in VmFamily.objects.all()}
    assert loaded == FACTS_FAMILIES
    assert all(f.serves_clusters and f.serves_instances for f in VmFamily.objects.all())


def test_migration_loads_exactly_the_4_isolated_sizes():
    assert set(VmSize.objects.filter(isolated=True).values_list("name", flat=True)) == (
        FACTS_ISOLATED
    )
    assert VmSize.objects.get(name="Standard_NC24rs_v3").rdma


def test_migration_loads_the_6_gpu_architectures():
    loaded = {a.name: (a.series, a.min_cuda) for a in GpuArchitecture.objects.all()}
    assert loaded == FACTS_CUDA


def test_every_family_has_real_sizes_and_gpu_families_have_gpus():
    for family in VmFamily.objects.prefetch_related("sizes"):
        sizes = list(family.sizes.all())
        minimum = 1 if family.name in SINGLE_SIZE_FAMILIES else 3
        assert len(sizes) >= minimum, family.name
        is_gpu = family.category == "gpu"
        assert all((size.gpus > 0) == is_gpu for size in sizes), family.name
        assert (family.gpu_architecture is not None) == is_gpu, family.name
        assert all(0 < size.price_low_priority < size.price_dedicated for size in sizes)
    ds3 = VmSize.objects.get(name="Standard_DS3_v2")
    assert (ds3.vcpus, float(ds3.memory_gib), ds3.family.name) == (4, 14.0, "DSv2")
    nc6s_v3 = VmSize.objects.get(name="Standard_NC6s_v3")
    assert (nc6s_v3.gpus, nc6s_v3.gpu_model, nc6s_v3.family.gpu_architecture.name) == (
        1,
        "Tesla V100",
        "Volta",
    )


def size_names(response) -> set[str]:
    return {size.name for size in response.context["page"].object_list}


@pytest.fixture
def reader_client(client, team):
    client.force_login(team.reader)
    return client


CATALOG = reverse("compute:catalog")


def test_catalog_requires_login(client, db):
    assert client.get(CATALOG).status_code == 302


def test_gpu_filter_lists_only_gpu_sizes_with_cuda_guidance(reader_client):
    response = reader_client.get(CATALOG, {"gpu": "yes"})
    names = size_names(response)
    gpu_total = VmSize.objects.filter(gpus__gt=0).count()
    assert response.context["page"].paginator.count == gpu_total
    assert all(VmSize.objects.get(name=n).gpus > 0 for n in names)
    body = response.content.decode()
    assert "CUDA guidance for GPU sizes" in body
    assert "11.0 and newer" in body


def test_cpu_only_filter_hides_the_cuda_guidance(reader_client):
    response = reader_client.get(CATALOG, {"gpu": "no", "category": "general"})
    assert "CUDA guidance" not in response.content.decode()
    assert "Standard_DS3_v2" in size_names(response)


def test_isolated_restricted_and_minimums_combine(reader_client):
    assert size_names(reader_client.get(CATALOG, {"isolated": "yes"})) == FACTS_ISOLATED
    restricted = size_names(reader_client.get(CATALOG, {"restricted": "yes", "gpu": "yes"}))
    assert "Standard_NC6s_v3" in restricted and "Standard_NC6" not in restricted
    big = reader_client.get(CATALOG, {"min_vcpus": "64", "min_memory": "1024"})
    assert size_names(big) == {
        "Standard_M64s",
        "Standard_M64ms",
        "Standard_M128s",
        "Standard_M128ms",
    }


def test_bad_filter_values_are_explained(reader_client):
    response = reader_client.get(CATALOG, {"min_vcpus": "lots", "gpu": "maybe"})
    body = response.content.decode()
    assert "Check the filters" in body
    assert "Enter a whole number." in body
    assert "Select a valid choice" in body
    assert response.context["page"].paginator.count == 0


def test_htmx_filter_returns_the_results_fragment(reader_client):
    response = reader_client.get(CATALOG, {"category": "hpc"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert "<html" not in body and 'id="results"' in body
    assert "Standard_HB60rs" in body and "Standard_DS3_v2" not in body
    assert "HX-Request" in response["Vary"]


def test_catalog_pages_through_all_sizes(reader_client):
    total = VmSize.objects.count()
    seen = set()
    page = 1
    while True:
        response = reader_client.get(CATALOG, {"sort": "vcpus", "page": page})
        seen |= size_names(response)
        if not response.context["page"].has_next():
            break
        page += 1
    assert len(seen) == total and page > 1
