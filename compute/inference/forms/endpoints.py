from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from django import forms

from compute.forms.computes import environment_label, size_choices
from compute.inference.models import Deployment, RegisteredModel
from compute.inference.models.endpoints import NAME_RULE
from compute.inference.rules import TARGETS
from compute.models import Environment, VmSize
from compute.selectors import environments_for
from workspace.forms import QuickSelect, StyledForm
from workspace.models import Workspace

SCORING_EXAMPLE = '''import json
import pickle
from pathlib import Path

model = None


def init():
    """Once per replica: load the model (HANGAR_MODEL_DIR holds its files)."""
    global model
    import os
    model = pickle.loads(Path(os.environ["HANGAR_MODEL_DIR"], "model.pkl").read_bytes())


def run(request_json):
    """Per request: the request's JSON in, a JSON-able answer out."""
    rows = json.loads(request_json)["data"]
    return {"predictions": [int(p) for p in model.predict(rows)]}
'''


class EndpointForm(StyledForm, forms.Form):
    name = forms.CharField(
        max_length=32,
        validators=[NAME_RULE],
        help_text="Part of its scoring address: /score/<workspace>/<name>.",
    )
    description = forms.CharField(max_length=300, required=False)


class DeploymentForm(StyledForm, forms.Form):
    name = forms.CharField(
        max_length=32, validators=[NAME_RULE], initial="blue", help_text="e.g. blue, green."
    )
    model = forms.ChoiceField(widget=QuickSelect)
    target = forms.ChoiceField(
        choices=[(t.value, f"{f.label} · {f.used_for}") for t, f in TARGETS.items()],
        initial="managed_cluster",
        help_text=" ".join(f"{f.label}: {f.note}" for f in TARGETS.values()),
    )
    vm_size = forms.ChoiceField(label="VM size", widget=QuickSelect)
    environment = forms.ChoiceField(
        required=False, help_text="The packages its replicas run with (the model's framework)."
    )
    min_replicas = forms.IntegerField(min_value=0, max_value=100, initial=1)
    max_replicas = forms.IntegerField(min_value=1, max_value=100, initial=1)
    target_in_flight = forms.IntegerField(
        label="Requests in flight per replica",
        min_value=1,
        max_value=1000,
        initial=4,
        help_text="The autoscaler adds replicas above this, per replica.",
    )
    request_timeout_ms = forms.IntegerField(
        label="Request timeout (ms)", min_value=100, max_value=300_000, initial=5000
    )
    scoring_script = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 14, "class": "font-monospace", "spellcheck": "false"}),
        initial=SCORING_EXAMPLE,
        max_length=200_000,
        help_text="init() once per replica; run(request_json) per request.",
    )

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


class TrafficForm(StyledForm, forms.Form):
    """One whole percent per deployment of the endpoint."""

    def __init__(self, *args, deployments: Sequence[Deployment], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for deployment in deployments:
            self.fields[f"traffic_{deployment.pk}"] = forms.IntegerField(
                label=f"{deployment.name} (%)", min_value=0, max_value=100,
                initial=deployment.traffic,
            )  # fmt: skip
        self.deployments = deployments

    def weights(self) -> dict[int, int]:
        return {d.pk: self.cleaned_data[f"traffic_{d.pk}"] for d in self.deployments}
