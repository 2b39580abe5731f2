from __future__ import annotations

from typing import cast

from django import forms
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from compute.actions.jobs import Code, submit_job
from compute.forms.computes import environment_label
from compute.forms.fields import check_disjoint, parse_variables, secret_variables_field
from compute.models import CodeKind, Compute, Environment, Job, JobStatus
from compute.selectors import environments_for, live_computes_of
from workspace.access import WorkspaceAccess
from workspace.forms import QuickSelect, StyledForm
from workspace.models import Workspace

MAX_NAME = 200  # Job.code_name


class JobSubmitForm(StyledForm, forms.Form):
    # A compute that takes no job now is shown greyed out, with why (`Compute.job_refusal`,
    # the rule `submit_job` follows).
    compute = forms.TypedChoiceField(coerce=int, label="Compute target", widget=QuickSelect)
    name = forms.CharField(
        max_length=80, required=False, help_text="Shown in lists; defaults to the command."
    )
    command = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "class": "font-monospace", "spellcheck": "false"}),
        max_length=10_000,
        help_text="Runs with sh in the code folder (or an empty folder without code).",
    )
    node_count = forms.IntegerField(
        label="Nodes", min_value=1, initial=1, help_text="A multi-node job gets all nodes at once."
    )
    runs_in = forms.ChoiceField(
        label="Environment",
        required=False,
        help_text="The packages it runs with. A cluster starts nodes of another environment "
        "for it; an instance runs its own.",
    )
    environment = forms.CharField(
        label="Environment variables",
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 2, "class": "font-monospace", "placeholder": "EPOCHS=3\nLR=0.01"}
        ),
        help_text="One KEY=value per line. Members of the workspace see these values.",
    )
    secret_environment = secret_variables_field(
        "One KEY=value per line. Stored encrypted and never shown again, to anyone: pages "
        "show the name only. The job reads it like any variable."
    )
    script = forms.CharField(
        label="Script (optional)",
        required=False,
        max_length=1_000_000,
        widget=forms.Textarea(attrs={"rows": 5, "class": "font-monospace", "spellcheck": "false"}),
        help_text="Saved as the file named below, read-only in the node.",
    )
    script_name = forms.CharField(
        label="Script file name", required=False, initial="train.py", max_length=MAX_NAME
    )
    upload = forms.FileField(
        label="Or upload code (a file, or a .zip of a folder)",
        required=False,
        max_length=MAX_NAME,
    )

    def __init__(self, *args, workspace: Workspace, upload_refused: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Why the upload handler dropped the file while the request was parsed, if it did.
        self.upload_refused = upload_refused
        self.fields["upload"].help_text = (
            f"Up to {settings.HANGAR_CODE_LIMIT_MB} MiB, also once unpacked; a zip is "
            "unpacked. Mounted read-only in the node."
        )
        # Only what a label and `job_refusal` read: a workspace may have hundreds.
        computes = list(
            live_computes_of(workspace).only("name", "kind", "state").order_by("kind", "name")
        )
        field = cast(forms.ChoiceField, self.fields["compute"])
        field.choices = [("", "Choose a compute…")] + [
            (c.pk, self.compute_label(c)) for c in computes
        ]
        cast(QuickSelect, field.widget).disabled_values = {
            str(c.pk) for c in computes if c.job_refusal()
        }
        self.environments = {
            str(e.pk): e for e in environments_for(workspace).order_by("workspace_id", "name")
        }
        cast(forms.ChoiceField, self.fields["runs_in"]).choices = [
            ("", "The compute's own"),
            *((pk, environment_label(e)) for pk, e in self.environments.items()),
        ]

    @staticmethod
    def compute_label(compute: Compute) -> str:
        label = f"{compute.name} · {compute.get_kind_display().lower()}"
        refusal = compute.job_refusal()
        if refusal:  # "box is stopped; start it first." → "… · is stopped; start it first"
            return f"{label} · {refusal.removeprefix(compute.name).strip().rstrip('.')}"
        return f"{label} · {compute.state_label.lower()}"

    def clean_runs_in(self) -> Environment | None:
        chosen = self.cleaned_data["runs_in"]
        return self.environments[chosen] if chosen else None

    def clean_environment(self) -> dict[str, str]:
        return parse_variables(self.cleaned_data["environment"])

    def clean_secret_environment(self) -> dict[str, str]:
        return parse_variables(self.cleaned_data["secret_environment"], secret=True)

    def clean(self) -> dict:
        cleaned = super().clean()
        check_disjoint(
            self, cleaned.get("environment") or {}, cleaned.get("secret_environment") or {}
        )
        script, upload = cleaned.get("script"), cleaned.get("upload")
        if script and upload:
            raise forms.ValidationError("Give code as a script or as an upload, not both.")
        if script and not (cleaned.get("script_name") or "").strip():
            self.add_error("script_name", "Name the script file, e.g. train.py.")
        if self.upload_refused:
            self.add_error("upload", self.upload_refused)
        elif upload and upload.size > settings.HANGAR_CODE_LIMIT_MB * 1024 * 1024:
            limit = settings.HANGAR_CODE_LIMIT_MB
            self.add_error("upload", f"The upload is larger than {limit} MiB.")
        return cleaned

    @sensitive_variables()  # the secret variables pass through here in clear
    def submit(self, access: WorkspaceAccess) -> Job:
        """Submit the job this valid form describes (the page's and the API's one way)."""
        data = self.cleaned_data
        return submit_job(
            access,
            compute_id=data["compute"],
            name=data["name"],
            command=data["command"],
            node_count=data["node_count"],
            environment=data["environment"],
            secret_environment=data["secret_environment"],
            code=self.code(),
            runs_in=data["runs_in"],
        )

    def code(self) -> Code | None:
        data = self.cleaned_data
        if data.get("script"):
            return Code(CodeKind.SCRIPT, data["script_name"].strip(), data["script"].encode())
        upload = data.get("upload")
        if upload:
            kind = CodeKind.ZIP if upload.name.lower().endswith(".zip") else CodeKind.FILE
            return Code(kind, upload.name, upload)  # read in chunks while it is stored
        return None


class JobFilterForm(StyledForm, forms.Form):
    status = forms.ChoiceField(choices=[("", "Any status"), *JobStatus.choices], required=False)
    compute = forms.TypedChoiceField(
        coerce=int, required=False, empty_value=None, widget=QuickSelect
    )
    submitter = forms.TypedChoiceField(
        coerce=int, required=False, empty_value=None, widget=QuickSelect
    )

    def __init__(self, *args, workspace: Workspace, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["compute"]).choices = [
            ("", "Any compute"),
            *Compute.objects.of(workspace).order_by("name").values_list("pk", "name"),
        ]
        cast(forms.ChoiceField, self.fields["submitter"]).choices = [("", "Anyone")] + [
            (m.user_id, m.user.username)
            for m in workspace.memberships.select_related("user").order_by("user__username")
        ]
