"""Endpoints and their deployments: made by a workspace's contributors; keys regenerated
one at a time (a client moves to the other key meanwhile); traffic split by weights."""

from __future__ import annotations

import hashlib
import secrets as random
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from compute.inference.models import Deployment, Endpoint, KeySlot, RegisteredModel
from compute.inference.rules import Ask, Target, refusals
from compute.lib import secrets
from compute.models import Environment, VmSize
from workspace.access import WorkspaceAccess, require_role
from workspace.models import Role


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
            return Deployment.objects.create(
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
    except IntegrityError:
        raise ValidationError(
            {"name": f"{endpoint} already has a deployment named {name}."}
        ) from None


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
