"""factory_boy factories for the models tests create most."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from workspace.models import Membership, Role, Workspace

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password(PASSWORD)


class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace

    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")
    created_by = factory.SubFactory(UserFactory)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    workspace = factory.SubFactory(WorkspaceFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.READER


def _size(name: str = "Standard_DS3_v2"):
    from compute.models import VmSize

    return VmSize.objects.get(name=name)  # the catalog comes from migrations


class ComputeFactory(factory.django.DjangoModelFactory):
    """A cluster row, steady, with no node; traits for the other kinds and states. Rows
    only: nothing is enqueued (tests that need the lifecycle go through the actions)."""

    class Meta:
        model = "compute.Compute"

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"c{n}")
    kind = "cluster"
    state = "steady"
    vm_size = factory.LazyFunction(_size)
    min_nodes = 0
    max_nodes = 2

    class Params:
        instance = factory.Trait(kind="instance", state="running", min_nodes=0, max_nodes=1)
        stopped = factory.Trait(kind="instance", state="stopped", min_nodes=0, max_nodes=1)
        attached = factory.Trait(kind="attached", state="steady", vm_size=None)


class NodeFactory(factory.django.DjangoModelFactory):
    """An idle node of a cluster, numbered like the autoscaler numbers them."""

    class Meta:
        model = "compute.Node"

    compute = factory.SubFactory(ComputeFactory)
    index = factory.Sequence(lambda n: n + 1)
    state = "idle"
    container_ref = factory.Sequence(lambda n: f"ref{n}")

    class Params:
        running = factory.Trait(state="running")
        preparing = factory.Trait(state="preparing", container_ref="")


class JobFactory(factory.django.DjangoModelFactory):
    """A queued one-node job on a cluster of the same workspace."""

    class Meta:
        model = "compute.Job"

    compute = factory.SubFactory(ComputeFactory)
    workspace = factory.SelfAttribute("compute.workspace")
    name = factory.Sequence(lambda n: f"job{n}")
    command = "true"
    status = "queued"

    class Params:
        two_nodes = factory.Trait(node_count=2)
        canceled = factory.Trait(status="canceled", finished_at=factory.Faker("date_time"))
