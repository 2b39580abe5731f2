"""Endpoints and their deployments: made by a workspace's contributors; keys regenerated
one at a time (a client moves to the other key meanwhile); traffic split by weights."""

from __future__ import annotations

import hashlib
import math
import secrets as random
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from compute.actions.computes import create_cluster, delete_replicas
from compute.inference.models import Deployment, Endpoint, KeySlot, RegisteredModel
from compute.inference.rules import Ask, Target, refusals
from compute.inference.runtime import score_server
from compute.lib import secrets, serving_load, snapshots
from compute.models import ComputeVerb, Environment, VmSize
from workspace.access import WorkspaceAccess, require_role
from workspace.models import Role

SERVER = Path(score_server.__file__)
# Ray Serve's default downscale delay: a replica idle this long may go (above min).
REPLICA_SCALEDOWN_SECONDS = 600


def new_key() -> tuple[str, str]:
    """A key as stored (encrypted) and the SHA-256 the gateway checks against."""
    key = random.token_urlsafe(32)
    return secrets.encrypt(key), key_hash(key)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_endpoint(access: WorkspaceAccess, *, name: str, description: str = "") -> Endpoint:
    require_role(access, Role.CONTRIBUTOR, "making endpoints")
    primary, primary_hash = new_key()
    secondary, secondary_hash = new_key()
    try:
        with transaction.atomic():
            return Endpoint.objects.create(
                workspace=access.workspace,
                name=name,
                description=description,
                primary_key=primary,
                primary_key_hash=primary_hash,
                secondary_key=secondary,
                secondary_key_hash=secondary_hash,
                created_by=access.membership.user,
            )
    except IntegrityError:
        raise ValidationError(
            {"name": f"{access.workspace.name} already has an endpoint named {name}."}
        ) from None


@dataclass(frozen=True)
class Keys:
    primary: str
    secondary: str


def endpoint_keys(access: WorkspaceAccess, endpoint: Endpoint) -> Keys:
    """The plain keys, for contributors (readers see neither)."""
    require_role(access, Role.CONTRIBUTOR, "reading endpoint keys")
    return Keys(secrets.decrypt(endpoint.primary_key), secrets.decrypt(endpoint.secondary_key))


def regenerate_key(access: WorkspaceAccess, endpoint: Endpoint, slot: str) -> None:
    """A new key in one slot; the other keeps working, so clients move over without a gap."""
    require_role(access, Role.CONTRIBUTOR, "regenerating endpoint keys")
    if slot not in KeySlot.values:
        raise ValidationError("Choose the primary or the secondary key.")
    token, digest = new_key()
    Endpoint.objects.filter(pk=endpoint.pk).update(
        **{f"{slot}_key": token, f"{slot}_key_hash": digest, "keys_changed_at": timezone.now()}
    )


def add_deployment(
    access: WorkspaceAccess,
    endpoint: Endpoint,
    *,
    name: str,
    model: RegisteredModel,
    scoring_script: str,
    target: str,
    vm_size: VmSize,
    environment: Environment | None = None,
    min_replicas: int = 1,
    max_replicas: int = 1,
    target_in_flight: int = 4,
    request_timeout_ms: int = 5000,
) -> Deployment:
    """A deployment of a model version on a target, checked against the seed's rules. The
    endpoint's first deployment takes all its traffic; later ones start with none."""
    require_role(access, Role.CONTRIBUTOR, "deploying models")
    if model.workspace_id != access.workspace.pk:
        raise ValidationError({"model": "Choose a model of this workspace."})
    if environment is not None and environment.workspace_id not in (None, access.workspace.pk):
        raise ValidationError({"environment": "Choose an environment from the list."})
    broken = refusals(
        Ask(
            target=Target(target),
            gpus=vm_size.gpus,
            memory_gib=float(vm_size.memory_gib),
            model_bytes=model.size_bytes,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
        )
    )
    if broken:
        raise ValidationError(broken)
    if "def init" not in scoring_script or "def run" not in scoring_script:
        raise ValidationError(
            {"scoring_script": "A scoring script defines init() and run(request_json)."}
        )
    try:
        with transaction.atomic():
            Endpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
            first = not endpoint.deployments.exists()
            deployment = Deployment.objects.create(
                endpoint=endpoint,
                name=name,
                model=model,
                scoring_script=scoring_script,
                environment=environment,
                target=target,
                vm_size=vm_size,
                min_replicas=min_replicas,
                max_replicas=max_replicas,
                target_in_flight=target_in_flight,
                request_timeout_ms=request_timeout_ms,
                traffic=100 if first else 0,
                created_by=access.membership.user,
            )
            start_replicas(access, deployment)
            return deployment
    except IntegrityError:
        raise ValidationError(
            {"name": f"{endpoint} already has a deployment named {name}."}
        ) from None


def start_replicas(access: WorkspaceAccess, deployment: Deployment) -> None:
    """The deployment's scripts stored read-only, and its replicas: a cluster of its own
    (quota, driver, hardening, reconcile and sweep as for any node) that starts at min
    replicas, each running Hangar's scoring server over the deployment's script."""
    store = snapshots.serving_store()
    try:
        snapshots.store_files(
            deployment.pk,
            {
                "score.py": deployment.scoring_script.encode(),
                "score_server.py": SERVER.read_bytes(),
            },
            store,
        )
        deployment.compute = create_cluster(
            access,
            name=f"replicas-{deployment.pk}",
            vm_size=deployment.vm_size,
            min_nodes=deployment.min_replicas,
            max_nodes=deployment.max_replicas,
            idle_seconds_before_scaledown=REPLICA_SCALEDOWN_SECONDS,
            environment=deployment.environment,
            serving={
                "deployment": deployment.pk,
                "model": deployment.model_id,
                # A replica leaving drains this long: the longest a request may take.
                "drain_seconds": math.ceil(deployment.request_timeout_ms / 1000) + 1,
            },
        )
        deployment.save(update_fields=["compute"])
    except snapshots.CodeError as exc:
        raise ValidationError({"scoring_script": str(exc)}) from None
    except BaseException:
        snapshots.remove_tree(store.folder(deployment.pk))  # rolled back: its id may return
        raise


def delete_deployment(access: WorkspaceAccess, deployment: Deployment) -> None:
    """The deployment and its replicas go (their containers removed by the worker). One
    that still takes traffic beside others is refused: move its share first."""
    require_role(access, Role.CONTRIBUTOR, "removing deployments")
    with transaction.atomic():
        Endpoint.objects.select_for_update().filter(pk=deployment.endpoint_id).first()
        others = Deployment.objects.filter(endpoint_id=deployment.endpoint_id).exclude(
            pk=deployment.pk
        )
        if deployment.traffic and others.exists():
            raise ValidationError(
                f"{deployment.name} takes {deployment.traffic}% of the traffic: give it to "
                "the other deployments first."
            )
        compute = deployment.compute
        Deployment.objects.filter(pk=deployment.pk).update(compute=None)
        Deployment.objects.filter(pk=deployment.pk).delete()
        if compute is not None and ComputeVerb.DELETE in compute.state_verbs():
            delete_replicas(access, compute.pk)
        folder, gone = snapshots.serving_store().folder(deployment.pk), deployment.pk
        transaction.on_commit(lambda: snapshots.remove_tree(folder))
        transaction.on_commit(lambda: serving_load.forget(gone))


def set_traffic(access: WorkspaceAccess, endpoint: Endpoint, weights: dict[int, int]) -> None:
    """Every deployment's share of the endpoint's requests (blue/green): whole percents
    summing to 100, each deployment of the endpoint given one."""
    require_role(access, Role.CONTRIBUTOR, "splitting endpoint traffic")
    with transaction.atomic():
        deployments = list(endpoint.deployments.select_for_update())
        if {d.pk for d in deployments} != set(weights):
            raise ValidationError("Give every deployment of the endpoint a share.")
        if any(not 0 <= weight <= 100 for weight in weights.values()):
            raise ValidationError("Each share is a whole percent from 0 to 100.")
        if sum(weights.values()) != 100:
            raise ValidationError(f"The shares add up to {sum(weights.values())}%, not 100%.")
        for deployment in deployments:
            Deployment.objects.filter(pk=deployment.pk).update(traffic=weights[deployment.pk])
