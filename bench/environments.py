"""Environment figures: the scikit-learn environment built from nothing (mmdebstrap from
Debian's archive, `docker import`), an unchanged spec asked for again, and a job's cold start
on a cluster of a built environment against the Docker SDK floor with the same image.

The build is made under a tag of its own (removed after), so a `make run` on this engine
keeps its own scikit-learn image."""

from __future__ import annotations

import os
import statistics
import time
import uuid

import docker
from django.conf import settings

from bench.jobs import MARKER, ROUNDS, cancel_and_idle, floor_start, percentile, started, wait
from compute.actions import computes as actions
from compute.actions.environments import create_environment
from compute.actions.jobs import submit_job
from compute.lib import images
from compute.models import Compute, ComputeState, EnvironmentImage, ImageState, VmSize
from compute.rules.environments import image_spec
from config.celery import app
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from tests.support.worker import Worker
from workspace.access import get_access

SCIKIT_LEARN = "python3-numpy python3-scipy python3-pandas python3-sklearn python3-joblib"


def run() -> None:
    client = docker.from_env(timeout=900)
    tag = f"hangar/env-bench-{uuid.uuid4().hex[:8]}"
    try:
        lines: list[str] = []
        began = time.perf_counter()
        image_id, size = images.build_environment_image(
            client, tag, list(image_spec(SCIKIT_LEARN, "").packages_to_install), [],
            lines.append,
        )  # fmt: skip
        built = time.perf_counter() - began
        print(
            f"{'scikit-learn environment, built from nothing':<44} {built:6.1f} s  "
            f"image {size / 1e6:5.0f} MB, {len(lines)} log lines (goal ≤ 120 s on 2 cores)"
        )
        access = get_access(*team_admin())
        first = create_environment(access, name="sklearn", debian_packages=SCIKIT_LEARN)
        EnvironmentImage.objects.filter(pk=first.image_id).update(
            state=ImageState.READY, tag=tag, image_id=image_id, size_bytes=size
        )
        again = []
        for round_ in range(20):
            began = time.perf_counter()
            made = create_environment(
                access, name=f"sklearn-{round_}", debian_packages=SCIKIT_LEARN
            )
            assert made.image.state == ImageState.READY  # the same image, nothing to build
            again.append(time.perf_counter() - began)
        print(
            f"{'unchanged spec → ready':<44} p50={statistics.median(again) * 1000:6.1f} ms  "
            f"p95={percentile(again, 0.95) * 1000:6.1f} ms (goal ≤ 1 s)"
        )
        cold_start(client, access, first, tag)
    finally:
        remove_all_nodes()
        try:
            client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass


def team_admin():
    team = make_team(f"envbench{uuid.uuid4().hex[:4]}")
    return team.admin, team.workspace.slug


def cold_start(client, access, environment, tag: str) -> None:
    queue = f"hangar-bench-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    settings.HANGAR_DRIVER = "docker"
    worker = Worker(queue, "docker", {"HANGAR_SWEEP_SECONDS": os.environ.get("SWEEP", "1")})
    worker.start()
    size = VmSize.objects.get(name="Standard_DS3_v2")
    cold, floors = [], []
    try:
        for round_ in range(ROUNDS):
            floors.append(floor_start(client, size, tag))
            cluster = actions.create_cluster(
                access, name=f"env-cold-{round_}", vm_size=size, max_nodes=1,
                idle_seconds_before_scaledown=1, environment=environment,
            )  # fmt: skip
            wait(lambda c=cluster: Compute.objects.get(pk=c.pk).state == ComputeState.STEADY)
            began = time.perf_counter()
            job = submit_job(access, compute_id=cluster.pk, name="cold", command=MARKER)
            wait(lambda j=job: started(j))
            cold.append(time.perf_counter() - began)
            cancel_and_idle(access, job)
            actions.delete_compute(access, cluster.pk)
            wait(lambda c=cluster: Compute.objects.get(pk=c.pk).state == ComputeState.DELETED)
    finally:
        worker.stop()
        remove_all_nodes()
    cold_ms, floor_ms = statistics.median(cold) * 1000, statistics.median(floors) * 1000
    print(
        f"{'cold start on scikit-learn: submit → running':<44} hangar p50={cold_ms:6.0f} ms  "
        f"floor p50={floor_ms:6.0f} ms  over floor={cold_ms - floor_ms:+5.0f} ms "
        "(goal ≤ +150 ms, as on the node image)"
    )
