from __future__ import annotations

from typing import Any

from django import forms

from compute.inference.actions.batch import BATCH_SCRIPT_EXAMPLE, Inputs, submit_batch
from compute.inference.forms.choices import ModelSizeEnvironmentChoices
from compute.inference.models.batch import MAX_ATTEMPTS, MAX_MINI_BATCH, BatchJob
from compute.inference.models.endpoints import NAME_RULE
from compute.lib.uploads import MAX_FILES
from compute.models import Tier
from compute.selectors import jobs_with_outputs
from workspace.access import WorkspaceAccess
from workspace.forms import QuickSelect, StyledForm
from workspace.models import Workspace

MAX_INPUT_FILES = MAX_FILES  # what one request may carry


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one field (Django's documented way: a widget that allows it and a
    field that cleans each file)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list:
        single = super().clean
        if isinstance(data, (list, tuple)):
            if len(data) > MAX_INPUT_FILES:
                raise forms.ValidationError(
                    f"{len(data)} files: upload at most {MAX_INPUT_FILES:,}, or a zip of a folder."
                )
            return [single(each, initial) for each in data]
        return [single(data, initial)]


class BatchForm(StyledForm, ModelSizeEnvironmentChoices):
    name = forms.CharField(
        max_length=32, validators=[NAME_RULE], help_text="e.g. nightly-2026-12-01."
    )
    model = forms.ChoiceField(widget=QuickSelect)
    inputs = MultipleFileField(
        label="Input files (several, or one .zip or .tar.gz of a folder)",
        help_text="Stored read-only, split into mini-batches in name order.",
        required=False,
    )
    # Any id is taken (the API names older jobs too); the submit checks it is a completed
    # job of this workspace that kept files. The page offers the newest ones.
    from_job = forms.IntegerField(
        label="Or the outputs of a job",
        required=False,
        widget=forms.Select,
        help_text="A completed job's output files (what it wrote to ./outputs), copied as "
        "this job's inputs instead of an upload.",
    )
    vm_size = forms.ChoiceField(label="VM size", widget=QuickSelect)
    tier = forms.ChoiceField(
        choices=Tier.choices,
        initial=Tier.DEDICATED,
        help_text="Low priority nodes cost less and may be preempted: their mini-batches "
        "run again.",
    )
    node_count = forms.IntegerField(
        label="Nodes", min_value=1, max_value=100, initial=2, help_text="At most this many at once."
    )
    mini_batch_size = forms.IntegerField(
        label="Files per mini-batch",
        min_value=1,
        max_value=MAX_MINI_BATCH,
        initial=10,
        help_text="Each mini-batch is one run(mini_batch) call on a node.",
    )
    max_attempts = forms.IntegerField(
        label="Attempts per mini-batch",
        min_value=1,
        max_value=MAX_ATTEMPTS,
        initial=3,
        help_text="Past this, a failing mini-batch is listed in errors.csv and the rest go on.",
    )
    environment = forms.ChoiceField(
        required=False, help_text="The packages its nodes run with (the model's framework)."
    )
    scoring_script = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 14, "class": "font-monospace", "spellcheck": "false"}),
        initial=BATCH_SCRIPT_EXAMPLE,
        max_length=200_000,
        help_text="init() once per node; run(mini_batch) gets its files' paths and "
        "returns one row per file (a list of fields).",
    )

    def __init__(self, *args: Any, workspace: Workspace, **kwargs: Any) -> None:
        super().__init__(*args, workspace=workspace, **kwargs)
        recent = jobs_with_outputs(workspace)
        self.fields["from_job"].widget.choices = [("", "None: upload files above")] + [
            (job.pk, f"{job.name} (#{job.pk}): {job.outputs_files} files") for job in recent
        ]

    def clean_inputs(self) -> list:
        return [upload for upload in self.cleaned_data["inputs"] if upload is not None]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        uploads, job = cleaned.get("inputs"), cleaned.get("from_job")
        if "inputs" in cleaned and "from_job" in cleaned:
            if uploads and job is not None:
                self.add_error("from_job", "Upload files or pick a job's outputs, not both.")
            elif not uploads and job is None:
                self.add_error(
                    "inputs", "Upload the input files, or pick a job whose outputs to score."
                )
        return cleaned

    def submit(self, access: WorkspaceAccess) -> BatchJob:
        """The valid form submitted (the page's and the API's one way in)."""
        data = self.cleaned_data
        return submit_batch(
            access,
            name=data["name"],
            model=data["model"],
            scoring_script=data["scoring_script"],
            environment=data["environment"],
            vm_size=data["vm_size"],
            tier=data["tier"],
            node_count=data["node_count"],
            mini_batch_size=data["mini_batch_size"],
            max_attempts=data["max_attempts"],
            inputs=Inputs(
                [(upload.name or "input", upload) for upload in data["inputs"]],
                job_id=data["from_job"],
            ),
        )
