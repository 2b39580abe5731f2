"""What the deployment and batch scoring forms both pick: a model version of the workspace,
a VM size, an environment (the workspace's or a curated one)."""

from __future__ import annotations

from typing import cast

from django import forms

from compute.forms.computes import environment_label, size_choices
from compute.inference.models import RegisteredModel
from compute.models import Environment, VmSize
from compute.selectors import environments_for
from workspace.models import Workspace


class ModelSizeEnvironmentChoices(forms.Form):
    """Fills and cleans the form's `model`, `vm_size` and `environment` fields."""

    def __init__(self, *args, workspace: Workspace, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.models = {str(m.pk): m for m in RegisteredModel.objects.filter(workspace=workspace)}
        cast(forms.ChoiceField, self.fields["model"]).choices = [("", "Choose a model…")] + [
            (pk, f"{m} ({m.file_name})") for pk, m in self.models.items()
        ]
        cast(forms.ChoiceField, self.fields["vm_size"]).choices = size_choices()
        self.environments = {
            str(e.pk): e for e in environments_for(workspace).order_by("workspace_id", "name")
        }
        cast(forms.ChoiceField, self.fields["environment"]).choices = [
            ("", "None: the site's node image (Debian 12, Python 3)"),
            *((pk, environment_label(e)) for pk, e in self.environments.items()),
        ]

    def clean_model(self) -> RegisteredModel:
        return self.models[self.cleaned_data["model"]]

    def clean_environment(self) -> Environment | None:
        chosen = self.cleaned_data["environment"]
        return self.environments[chosen] if chosen else None

    def clean_vm_size(self) -> VmSize:
        size = VmSize.objects.filter(pk=self.cleaned_data["vm_size"]).first()
        if size is None:
            raise forms.ValidationError("Choose a VM size from the list.")
        return size
