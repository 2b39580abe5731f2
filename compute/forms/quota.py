"""The quota request form: a new limit for a family (or the low-priority pool), and why."""

from __future__ import annotations

from django import forms

from compute.models import VmFamily
from workspace.forms import StyledForm


class QuotaRequestForm(StyledForm, forms.Form):
    family = forms.ModelChoiceField(
        queryset=VmFamily.objects.order_by("name"),
        required=False,
        empty_label="Low-priority pool (any family)",
        label="For",
    )
    cores = forms.IntegerField(label="New limit (cores)", min_value=1, max_value=100_000)
    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text="What the cores are for, for how long: site admins decide on this.",
    )
