from __future__ import annotations

from django import forms
from django.db.models import QuerySet

from compute.models import Category, VmSize
from workspace.forms import StyledForm

ANY_YES_NO = [("", "Any"), ("yes", "Yes"), ("no", "No")]
SORTS = {
    "family": ("family__name", "vcpus", "name"),
    "vcpus": ("vcpus", "memory_gib", "name"),
    "memory": ("memory_gib", "vcpus", "name"),
    "price": ("price_dedicated", "name"),
    "gpus": ("-gpus", "name"),
}


class CatalogFilterForm(StyledForm, forms.Form):
    """Filters of the catalog page; every field optional, every value checked."""

    q = forms.CharField(label="Size name", required=False, max_length=48)
    category = forms.ChoiceField(
        choices=[("", "All categories"), *Category.choices], required=False
    )
    gpu = forms.ChoiceField(label="GPU", choices=ANY_YES_NO, required=False)
    restricted = forms.ChoiceField(label="Needs approval", choices=ANY_YES_NO, required=False)
    isolated = forms.ChoiceField(choices=ANY_YES_NO, required=False)
    min_vcpus = forms.IntegerField(label="Min vCPUs", required=False, min_value=0, max_value=1000)
    min_memory = forms.DecimalField(
        label="Min memory (GiB)", required=False, min_value=0, max_value=100000, decimal_places=1
    )
    sort = forms.ChoiceField(
        choices=[
            ("family", "Family"),
            ("vcpus", "vCPUs"),
            ("memory", "Memory"),
            ("price", "Price"),
            ("gpus", "GPUs"),
        ],
        required=False,
    )

    def filter(self, sizes: QuerySet[VmSize]) -> QuerySet[VmSize]:
        data = self.cleaned_data
        if data.get("q"):
            sizes = sizes.filter(name__icontains=data["q"].strip())
        if data.get("category"):
            sizes = sizes.filter(family__category=data["category"])
        for field, lookup in (
            ("gpu", {"gpus__gt": 0}),
            ("restricted", {"family__restricted": True}),
            ("isolated", {"isolated": True}),
        ):
            if data.get(field) == "yes":
                sizes = sizes.filter(**lookup)
            elif data.get(field) == "no":
                sizes = sizes.exclude(**lookup)
        if data.get("min_vcpus") is not None:
            sizes = sizes.filter(vcpus__gte=data["min_vcpus"])
        if data.get("min_memory") is not None:
            sizes = sizes.filter(memory_gib__gte=data["min_memory"])
        return sizes.order_by(*SORTS[data.get("sort") or "family"])
