"""Scoped reads of the inference pages: a workspace's models and endpoints only."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from django.db.models import Count, QuerySet

from compute.inference.models import BatchJob, Endpoint, MiniBatchState, RegisteredModel
from compute.lib.downloads import text_cell
from workspace.models import Workspace


def models_of(workspace: Workspace) -> QuerySet[RegisteredModel]:
    return RegisteredModel.objects.filter(workspace=workspace).select_related("created_by")


def endpoints_of(workspace: Workspace) -> QuerySet[Endpoint]:
    return Endpoint.objects.filter(workspace=workspace).annotate(
        deployment_count=Count("deployments")
    )


def batch_jobs_of(workspace: Workspace) -> QuerySet[BatchJob]:
    return BatchJob.objects.filter(workspace=workspace).select_related("model", "created_by")


def predictions_csv(batch: BatchJob) -> Iterator[str]:
    """predictions.csv: the rows of each mini-batch done, in input order, each once (the
    ledger keeps one attempt's rows). Read a few mini-batches at a time, never all."""
    done = batch.mini_batches.filter(state=MiniBatchState.DONE).order_by("index")
    for rows in done.values_list("rows", flat=True).iterator(chunk_size=20):
        if rows:
            yield rows


def errors_csv(batch: BatchJob) -> Iterator[str]:
    """errors.csv: each mini-batch that failed past its attempts, its files and why."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["mini_batch", "attempts", "error", "files"])
    failed = batch.mini_batches.filter(state=MiniBatchState.FAILED).order_by("index")
    for mini_batch in failed.iterator(chunk_size=100):
        files = " ".join(mini_batch.files)
        why = text_cell(mini_batch.error)
        writer.writerow([mini_batch.index + 1, mini_batch.attempts, why, text_cell(files)])
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    yield out.getvalue()
