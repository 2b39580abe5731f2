"""Batch scoring jobs: submitted by a workspace's contributors (inputs uploaded as files or
a zip of a folder), canceled by them. The worker's side (placing mini-batches, reading their
rows, retrying, ending) is compute/controllers/batch_scoring.py."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from compute.actions.computes import create_cluster, validate_cluster_bounds
from compute.actions.errors import StateConflict
from compute.actions.jobs import check_queue_room
from compute.inference.actions.models import folder_size
from compute.inference.models import BatchJob, BatchState, MiniBatch, RegisteredModel
from compute.inference.models.batch import MAX_ATTEMPTS, MAX_MINI_BATCH, start_attempts
from compute.inference.rules import Ask, Target, refusals
from compute.inference.runtime import batch_runner
from compute.lib import output_store, snapshots
from compute.models import Environment, Job, Tier, VmSize
from compute.models.events import EventVerb, record
from compute.selectors import job_outputs
from workspace.access import WorkspaceAccess, require_role
from workspace.models import Role

RUNNER = Path(batch_runner.__file__)
# A batch job's nodes go this soon once they have nothing left to run (its cluster is
# removed anyway when the last mini-batch ends).
IDLE_SECONDS = 60
BATCH_SCRIPT_EXAMPLE = '''import json
import os
from pathlib import Path

model = None


def init():
    """Once per node worker: load the model (HANGAR_MODEL_DIR holds its files)."""
    global model
    model = json.loads(Path(os.environ["HANGAR_MODEL_DIR"], "model.json").read_text())


def run(mini_batch):
    """mini_batch: the paths of N input files. Return one row per file."""
    rows = []
    for path in mini_batch:
        text = Path(path).read_text()
        rows.append([os.path.basename(path), len(text)])
    return rows
'''


@dataclass(frozen=True)
class Inputs:
    """The uploaded inputs: several files side by side, or one zip or tar of a folder; or
    (`job_id`) the output files of a completed job of the workspace."""

    files: list[tuple[str, IO[bytes]]]
    job_id: int | None = None

    @property
    def is_zip(self) -> bool:
        return len(self.files) == 1 and self.files[0][0].lower().endswith(".zip")

    @property
    def is_tar(self) -> bool:
        return len(self.files) == 1 and snapshots.is_tar_name(self.files[0][0])

    @property
    def name(self) -> str:
        if self.job_id is not None:
            return f"outputs of job #{self.job_id}"
        if len(self.files) == 1:
            return self.files[0][0][:200]
        return f"{len(self.files)} files"


def submit_batch(
    access: WorkspaceAccess,
    *,
    name: str,
    model: RegisteredModel,
    scoring_script: str,
    vm_size: VmSize,
    inputs: Inputs,
    environment: Environment | None = None,
    tier: str = Tier.DEDICATED,
    node_count: int = 2,
    mini_batch_size: int = 10,
    max_attempts: int = 3,
) -> BatchJob:
    """A batch job: its inputs stored read-only and split into mini-batches, a cluster of
    its own (quota, driver, hardening as for any node; normal or low priority) and a job
    per mini-batch queued on it. Nothing is kept when anything is refused."""
    require_role(access, Role.CONTRIBUTOR, "submitting batch scoring jobs")
    check_batch(access, model, scoring_script, vm_size, environment, tier)
    errors = {}
    if not 1 <= mini_batch_size <= MAX_MINI_BATCH:
        errors["mini_batch_size"] = f"A mini-batch has 1 to {MAX_MINI_BATCH} files."
    if not 1 <= max_attempts <= MAX_ATTEMPTS:
        errors["max_attempts"] = f"Give each mini-batch 1 to {MAX_ATTEMPTS} attempts."
    source: Job | None = None
    if inputs.job_id is not None:
        try:
            source = job_for_inputs(access, inputs.job_id)
        except ValidationError as error:
            errors["from_job"] = error.messages[0]
    elif not inputs.files:
        errors["inputs"] = "Upload the input files (several files, or a zip of a folder)."
    if errors:
        raise ValidationError(errors)
    validate_node_count(node_count)
    code, stored = snapshots.batch_code_store(), snapshots.batch_input_store()
    batch: BatchJob | None = None
    try:
        with transaction.atomic():
            # Its first mini-batches are queued jobs: the workspace's cap holds for them too.
            check_queue_room(access.workspace)
            batch = BatchJob.objects.create(
                workspace=access.workspace,
                name=name,
                model=model,
                scoring_script=scoring_script,
                environment=environment,
                vm_size=vm_size,
                tier=tier,
                node_count=node_count,
                mini_batch_size=mini_batch_size,
                max_attempts=max_attempts,
                input_name=(
                    f"outputs of job {source.name} (#{source.pk})" if source else inputs.name
                )[:200],
                created_by=access.membership.user,
            )
            files = (
                store_job_outputs(batch.pk, source) if source else store_inputs(batch.pk, inputs)
            )
            chunks = [
                files[at : at + mini_batch_size] for at in range(0, len(files), mini_batch_size)
            ]
            snapshots.store_files(
                batch.pk,
                {
                    "score.py": scoring_script.encode(),
                    "batch_runner.py": RUNNER.read_bytes(),
                    "mini_batches.json": json.dumps(chunks).encode(),
                },
                code,
            )
            batch.file_count, batch.batches_total = len(files), len(chunks)
            batch.input_bytes = folder_size(stored.folder(batch.pk))
            batch.compute = create_cluster(
                access,
                name=f"batch-{batch.pk}",
                vm_size=vm_size,
                tier=tier,
                min_nodes=0,
                max_nodes=node_count,
                idle_seconds_before_scaledown=IDLE_SECONDS,
                environment=environment,
                serving={"batch": batch.pk, "model": model.pk},
            )
            batch.save()
            MiniBatch.objects.bulk_create(
                MiniBatch(batch=batch, index=index, files=chunk)
                for index, chunk in enumerate(chunks)
            )
            start_attempts(batch)
            record(
                batch.compute,
                EventVerb.BATCH_SUBMITTED,
                f"{access.membership.user} submitted batch scoring {name}: {len(files)} files "
                f"in {len(chunks)} mini-batches of up to {mini_batch_size}, on up to "
                f"{node_count} {Tier(tier).label.lower()} node(s).",
                actor=access.membership.user,
            )
            return batch
    except snapshots.CodeError as exc:
        raise ValidationError({"inputs": str(exc)}) from None
    except IntegrityError:
        raise ValidationError(
            {"name": f"{access.workspace.name} already has a batch job named {name}."}
        ) from None
    finally:
        # Rolled back (its id may come again, with SQLite): no folder of it may stay.
        if batch is not None and not BatchJob.objects.filter(pk=batch.pk).exists():
            snapshots.remove_tree(code.folder(batch.pk))
            snapshots.remove_tree(stored.folder(batch.pk))


def check_batch(
    access: WorkspaceAccess,
    model: RegisteredModel,
    scoring_script: str,
    vm_size: VmSize,
    environment: Environment | None,
    tier: str,
) -> None:
    if model.workspace_id != access.workspace.pk:
        raise ValidationError({"model": "Choose a model of this workspace."})
    if environment is not None and environment.workspace_id not in (None, access.workspace.pk):
        raise ValidationError({"environment": "Choose an environment from the list."})
    if tier not in Tier.values:
        raise ValidationError({"tier": "Choose dedicated or low priority nodes."})
    broken = refusals(
        Ask(
            target=Target.MANAGED_CLUSTER,
            gpus=vm_size.gpus,
            memory_gib=float(vm_size.memory_gib),
            model_bytes=model.size_bytes,
            min_replicas=0,
            max_replicas=1,
        )
    )
    if broken:
        raise ValidationError(broken)
    if "def init" not in scoring_script or "def run" not in scoring_script:
        raise ValidationError(
            {"scoring_script": "A batch scoring script defines init() and run(mini_batch)."}
        )


def validate_node_count(node_count: int) -> None:
    try:
        validate_cluster_bounds(0, node_count)
    except ValidationError as error:
        raise ValidationError({"node_count": error.message_dict["max_nodes"]}) from None


def store_inputs(key: int, inputs: Inputs) -> list[str]:
    store = snapshots.batch_input_store()
    if inputs.is_zip:
        snapshots.store_zip(key, inputs.files[0][1], store)
    elif inputs.is_tar:
        snapshots.store_tar(key, inputs.files[0][1], store)
    else:
        snapshots.store_uploads(key, inputs.files, store)
    files = snapshots.files_in(store.folder(key))
    if not files:
        raise snapshots.CodeError("The upload holds no file to score.")
    return files


def job_for_inputs(access: WorkspaceAccess, job_id: int) -> Job:
    """A completed job of this workspace that kept output files; another workspace's job
    is answered as one that does not exist."""
    job = Job.objects.filter(workspace=access.workspace, pk=job_id).first()
    if job is None:
        raise ValidationError(f"Job #{job_id} does not exist in {access.workspace.name}.")
    if not job.is_completed:
        raise ValidationError(
            f"Job {job.name} (#{job.pk}) is {job.get_status_display().lower()}: only the "
            "outputs of a completed job can be scored."
        )
    if not job.outputs_files:
        why = f" ({job.outputs_note})" if job.outputs_note else ""
        raise ValidationError(
            f"Job {job.name} (#{job.pk}) kept no output files: it wrote nothing to ./outputs{why}."
        )
    return job


def store_job_outputs(key: int, job: Job) -> list[str]:
    """The job's output files copied (never linked: the job's may go first) into the
    batch's read-only inputs, at their paths, under the upload's caps and order."""
    store = snapshots.batch_input_store()
    found = job_outputs(job).files
    snapshots.store_copies(
        key, [(item.path, functools.partial(output_store.open_file, item)) for item in found], store
    )
    files = snapshots.files_in(store.folder(key))
    if not files:
        raise snapshots.CodeError(f"Job {job.name} (#{job.pk}) has no output files left.")
    return files


def cancel_batch(access: WorkspaceAccess, batch: BatchJob) -> None:
    """Ends it now: its queued and running mini-batches are canceled, the rows of those
    done stay downloadable, and its nodes go."""
    require_role(access, Role.CONTRIBUTOR, "canceling batch scoring jobs")
    actor = access.membership.user
    now = timezone.now()
    with transaction.atomic():
        if not BatchJob.objects.filter(pk=batch.pk, state=BatchState.RUNNING).update(
            state=BatchState.CANCELED, finished_at=now, error=f"Canceled by {actor}."
        ):
            batch.refresh_from_db()
            raise StateConflict(f"{batch.name} is already {batch.get_state_display().lower()}.")
        if batch.compute is not None:
            message = f"{actor} canceled batch scoring {batch.name}."
            record(batch.compute, EventVerb.BATCH_CANCELED, message, actor=actor)
        # The sweep's next pass removes its cluster, which cancels what still runs there.
