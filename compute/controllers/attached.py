"""The reconcile pass of an attached compute: validate it, check its health, collect and
place its jobs, detach it. Run under the same per-compute lease as every reconcile.

States: creating = validating; steady = ready; failed = validation failed (retry moves it
back to creating); deleting = detaching. Health is separate from state: a ready target
that stops answering is unhealthy, its jobs wait with the reason, and it recovers alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.utils import timezone

from compute.controllers import jobs as job_steps
from compute.controllers import launches
from compute.drivers import runners
from compute.drivers.runners import LocalRunner, SSHRunner
from compute.lib import secrets, ssh
from compute.models import (
    Attachment,
    Compute,
    ComputeKind,
    ComputeState,
    Job,
    SecretKind,
    TargetKind,
)
from compute.models.events import EventVerb, record
from compute.models.states import JOB_ACTIVE, JOB_UNFINISHED

log = logging.getLogger(__name__)
S = ComputeState


class AttachedPass:
    def __init__(self, compute: Compute, outcome) -> None:
        self.compute = compute
        self.outcome = outcome
        self.attachment: Attachment = compute.attachment

    def run(self) -> bool:
        """True if the state moved and another pass should look again."""
        state = self.compute.state
        if state == S.CREATING:
            self.validate()
        elif state == S.DELETING:
            self.detach()
        elif state == S.STEADY:
            self.work()
        self.outcome.state = self.compute.state
        return self.compute.state != state

    # Validation --------------------------------------------------------------------

    def validate(self) -> None:
        compute, attachment = self.compute, self.attachment
        pinned_before = attachment.host_key
        try:
            if attachment.target_kind == TargetKind.LOCAL:
                facts, seen = runners.local_facts(), ""
            else:
                facts, seen = self.remote_facts()
        except (ssh.SSHError, secrets.SecretUnreadable) as exc:
            reason = str(exc)
            Attachment.objects.filter(pk=attachment.pk).update(
                healthy=False, health_reason=reason[:300], health_checked_at=timezone.now()
            )
            if compute.transition(S.CREATING, S.FAILED, last_error=reason):
                record(
                    compute,
                    EventVerb.VALIDATION_FAILED,
                    f"Validation failed: {reason}.",
                    level="error",
                )
            return
        now = timezone.now()
        Attachment.objects.filter(pk=attachment.pk).update(
            facts=facts,
            host_key=seen,
            healthy=True,
            health_reason="",
            health_checked_at=now,
            last_seen_at=now,
        )
        if compute.transition(S.CREATING, S.STEADY, last_error=""):
            pinned = ""
            if seen and not pinned_before:
                pinned = f" Host key {ssh.fingerprint(seen)} pinned (trust on first use)."
            record(compute, EventVerb.VALIDATED, f"Validated: {describe(facts)}.{pinned}")

    def remote_facts(self) -> tuple[dict, str]:
        endpoint = endpoint_for(self.attachment)
        ssh.forget(endpoint)  # validate on a fresh connection: credentials may have changed
        transport, seen = ssh.connect(endpoint)
        try:
            result = ssh.run_on(transport, endpoint, ssh.FACTS_SCRIPT)
        finally:
            transport.close()
        return ssh.parse_facts(result.text), seen

    # Ready: health, jobs -------------------------------------------------------------

    def work(self) -> None:
        compute, attachment = self.compute, self.attachment
        try:
            runner = runner_for(
                attachment,
                settings.HANGAR_SITE,
                on_finish=lambda: launches.collect_soon(compute.pk),
            )
        except secrets.SecretUnreadable as exc:
            self.set_health(False, str(exc))
            return
        tidy_now = health_due(attachment)  # finished jobs' folders go at each check
        try:
            if tidy_now:
                runner.probe()
                self.set_health(True, "")
            elif attachment.healthy is False:
                self.say_why_jobs_wait()
                return
            job_steps.collect(compute, runner, self.outcome.jobs)
            job_steps.place_on_target(
                compute, runner, attachment.max_concurrent_jobs, self.outcome.jobs
            )
            if tidy_now:
                runner.tidy(active_attached_jobs())
        except ssh.SSHError as exc:
            self.set_health(False, str(exc))
            self.say_why_jobs_wait()

    def set_health(self, healthy: bool, reason: str) -> None:
        attachment, compute = self.attachment, self.compute
        now = timezone.now()
        was = attachment.healthy
        fields = {"healthy": healthy, "health_reason": reason[:300], "health_checked_at": now}
        if healthy:
            fields["last_seen_at"] = now
        Attachment.objects.filter(pk=attachment.pk).update(**fields)
        for name, value in fields.items():
            setattr(attachment, name, value)
        if was is not False and not healthy:
            record(compute, EventVerb.WENT_UNREACHABLE, f"Unreachable: {reason}.", level="warning")
        elif was is False and healthy:
            record(compute, EventVerb.CAME_BACK, "Reachable again.")
            Compute.objects.filter(pk=compute.pk).update(autoscale_note="")

    def say_why_jobs_wait(self) -> None:
        seen = self.attachment.last_seen_at
        when = f"last seen {timezone.localtime(seen):%Y-%m-%d %H:%M:%S}" if seen else "never seen"
        note = f"{self.compute.name} is unreachable ({self.attachment.health_reason}); {when}."
        Compute.objects.filter(pk=self.compute.pk).update(autoscale_note=note[:300])

    # Detach ----------------------------------------------------------------------------

    def detach(self) -> None:
        """Stop Hangar's own jobs over there, forget the credentials; the machine stays."""
        compute, attachment = self.compute, self.attachment
        active = list(Job.objects.filter(compute=compute, status__in=JOB_ACTIVE))
        if active:
            try:
                runner = runner_for(attachment, settings.HANGAR_SITE)
                for runs in job_steps.current_runs(active).values():
                    for run in runs:
                        runner.cancel_job(run.container, run.key)
            except (ssh.SSHError, secrets.SecretUnreadable) as exc:
                log.warning("detach of %s could not stop its jobs: %s", compute.name, exc)
        job_steps.cancel_dropped(compute, "Canceled: the compute was detached.")
        if attachment.uses_ssh and attachment.secret:
            try:
                ssh.forget(endpoint_for(attachment))
            except secrets.SecretUnreadable:
                pass
        Attachment.objects.filter(pk=attachment.pk).update(secret="", healthy=None)
        if compute.transition(S.DELETING, S.DELETED):
            record(compute, EventVerb.DETACHED, "Detached. The machine itself was not touched.")


def active_attached_jobs() -> set[int]:
    """Jobs whose folders must stay on any target: every attached compute's active jobs,
    since several targets may share one account on one machine."""
    return set(
        Job.objects.filter(
            compute__kind=ComputeKind.ATTACHED, status__in=JOB_UNFINISHED
        ).values_list("pk", flat=True)
    )


def health_due(attachment: Attachment) -> bool:
    checked = attachment.health_checked_at
    if checked is None:
        return True
    age = (timezone.now() - checked).total_seconds()
    return age >= settings.HANGAR_ATTACHED_HEALTH_SECONDS


def describe(facts: dict) -> str:
    parts = []
    if facts.get("cpus"):
        parts.append(f"{facts['cpus']} CPUs")
    if facts.get("memory_gib"):
        parts.append(f"{facts['memory_gib']} GiB memory")
    gpus = facts.get("gpus") or []
    parts.append(f"{len(gpus)} GPU(s): {', '.join(gpus)}" if gpus else "no GPU")
    if facts.get("os"):
        parts.append(facts["os"])
    if facts.get("python"):
        parts.append(facts["python"])
    return ", ".join(parts)


# Which runner an attachment's jobs go through: read here, from its row, so the drivers
# never import a model.
def endpoint_for(attachment: Attachment) -> ssh.Endpoint:
    plaintext = secrets.decrypt(attachment.secret)
    is_key = attachment.secret_kind == SecretKind.KEY
    return ssh.Endpoint(
        host=attachment.host,
        port=attachment.port,
        username=attachment.username,
        private_key=plaintext if is_key else "",
        password="" if is_key else plaintext,
        pinned_host_key=attachment.host_key,
    )


def runner_for(
    attachment: Attachment, site: str, on_finish: Callable[[], None] | None = None
) -> LocalRunner | SSHRunner:
    if attachment.target_kind == TargetKind.LOCAL:
        return LocalRunner(on_finish)
    return SSHRunner(endpoint_for(attachment), site, on_finish)
