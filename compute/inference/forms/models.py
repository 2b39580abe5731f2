from __future__ import annotations

from django import forms

from compute.actions.environments import NAME_HELP
from compute.forms.environments import ENVIRONMENT_NAME_RULE
from workspace.forms import StyledForm


class ModelForm(StyledForm, forms.Form):
    name = forms.CharField(max_length=64, validators=[ENVIRONMENT_NAME_RULE], help_text=NAME_HELP)
    description = forms.CharField(max_length=300, required=False)
    upload = forms.FileField(
        label="Model file (or a .zip or .tar.gz of its folder)",
        max_length=200,
        help_text="Stored read-only; a new upload under the same name is its next version.",
    )
