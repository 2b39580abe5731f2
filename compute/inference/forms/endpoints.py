from __future__ import annotations

from collections.abc import Sequence

from django import forms

from compute.inference.forms.choices import ModelSizeEnvironmentChoices
from compute.inference.models import Deployment
from compute.inference.models.endpoints import NAME_RULE
from compute.inference.rules import TARGETS
from workspace.forms import QuickSelect, StyledForm

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


class DeploymentForm(StyledForm, ModelSizeEnvironmentChoices):
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
