"""Nodes on several machines: two extra Docker engines on this machine as two node hosts
(each its own dockerd, socket, data and exec roots; no bridge, no iptables), a real worker
with its sweep. Placement by capacity, an image copied to the host that lacks it, a host
that goes away (its job requeued and finished elsewhere, nothing left when it returns),
draining, a node that fits nowhere waiting with the reason."""

from __future__ import annotations

import pytest

from compute.actions import computes as actions
from compute.actions.jobs import submit_job
from compute.models import (
    Compute,
    ComputeState,
    Event,
    HostState,
    Job,
    JobStatus,
    Node,
    NodeHost,
    NodeState,
    VmSize,
)
from tests.integration.helpers import wait_for
from tests.support.engines import copy_image, start_engines
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Standard_DS3_v2: 4 vCPUs, scaled by the tests' HANGAR_CPU_SCALE (0.05) to 0.2 cores a node.
NODE_CORES = 0.2


@pytest.fixture
def hosts(workers, catalog, node_image, settings):
    settings.HANGAR_DRIVER = "docker"
    engines = start_engines(2)
    try:
        copy_image(node_image, engines[0])  # the node image is on host-a only
        rows = [
            NodeHost.objects.create(
                name=engine.name, docker_url=engine.url, cpus_override=2 * NODE_CORES
            )
            for engine in engines
        ]
        worker = workers.get("docker", HANGAR_HOST_GRACE_SECONDS="3")
        # The sweep reads each new host's capacity from its engine within a second or two.
        wait_for(
            lambda: all(h.memory_bytes for h in NodeHost.objects.all()),
            timeout=30,
            what="the hosts' capacity read",
        )
        team = make_team("hosts")
        yield {
            "engines": dict(zip(("a", "b"), engines, strict=True)),
            "rows": dict(zip(("a", "b"), rows, strict=True)),
            "access": get_access(team.admin, team.workspace.slug),
            "worker": worker,
            "node_image": node_image,
        }
    finally:
        remove_all_nodes()
        for engine in engines:
            engine.wipe()


def cluster(access, name: str, **bounds) -> Compute:
    values = {"min_nodes": 0, "max_nodes": 4, "idle_seconds_before_scaledown": 600, **bounds}
    return actions.create_cluster(
        access, name=name, vm_size=VmSize.objects.get(name="Standard_DS3_v2"), **values
    )


def on_host(compute: Compute) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in Node.objects.filter(
        compute=compute, state__in=("idle", "running"), ended_at__isnull=True
    ).values_list("host__name", flat=True):
        counts[name] = counts.get(name, 0) + 1
    return counts


def test_nodes_fill_hosts_by_capacity_the_image_is_copied_and_the_fifth_waits(hosts):
    pool = cluster(hosts["access"], "pool", min_nodes=4, max_nodes=5)
    wait_for(lambda: sum(on_host(pool).values()) == 4, timeout=90, what="4 nodes up")
    # Two hosts of room for two nodes each: binpack fills one, then the other.
    assert on_host(pool) == {"host-a": 2, "host-b": 2}
    for key in ("a", "b"):
        assert len(hosts["engines"][key].site_containers()) == 2
    # host-b had no node image: it was copied there (save → load) before its first node.
    tags = [tag for image in hosts["engines"]["b"].client().images.list() for tag in image.tags]
    assert tags == [hosts["node_image"]]
    placed = list(
        Event.objects.filter(compute=pool, message__startswith="Placed").values_list(
            "message", flat=True
        )
    )
    assert len(placed) == 4 and any("on host-b" in message for message in placed)
    assert any("cores free (binpack)" in message for message in placed)
    # A fifth node fits nowhere: it waits with the reason, like a quota shortfall.
    actions.update_cluster(
        hosts["access"], pool.pk, min_nodes=5, max_nodes=5, idle_seconds_before_scaledown=600
    )
    wait_for(
        lambda: "n-5 waits: no host has room" in Compute.objects.get(pk=pool.pk).autoscale_note,
        timeout=30,
        what="the fifth node waiting",
    )
    note = Compute.objects.get(pk=pool.pk).autoscale_note
    assert "host-a 0 of 0.4 cores free" in note and "host-b 0 of 0.4 cores free" in note
    assert Node.objects.filter(compute=pool, state=NodeState.PREPARING, host=None).count() == 1


def test_a_host_that_goes_away_has_its_job_requeued_elsewhere_and_leaves_nothing_when_back(
    hosts,
):
    access = hosts["access"]
    NodeHost.objects.filter(name="host-a").update(state=HostState.DISABLED)
    pool = cluster(access, "pool", min_nodes=1, max_nodes=1)
    wait_for(lambda: on_host(pool) == {"host-b": 1}, timeout=90, what="a node on host-b")
    b_node = Node.objects.get(compute=pool, host__name="host-b")
    job = submit_job(access, compute_id=pool.pk, name="moved", command="sleep 4; echo done")
    wait_for(lambda: Job.objects.get(pk=job.pk).status == JobStatus.RUNNING, what="job runs")
    NodeHost.objects.filter(name="host-a").update(state=HostState.READY)

    hosts["engines"]["b"].stop()  # the machine goes away
    wait_for(
        lambda: NodeHost.objects.get(name="host-b").state == HostState.UNREACHABLE,
        timeout=10,
        what="host-b marked unreachable within 10 s",
    )
    # Past the grace (3 s here) its node is written off, the job requeued, a node placed
    # on host-a in its stead, and the job completes there.
    wait_for(
        lambda: Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED,
        timeout=90,
        what="the job completed on host-a",
    )
    job.refresh_from_db()
    assert job.retries == 1
    assert job.runs.get(attempt=1).node.host.name == "host-a"
    assert Node.objects.get(pk=b_node.pk).state == NodeState.UNUSABLE
    shown = Event.objects.filter(compute=pool).values_list("message", flat=True)
    assert any("Node host host-b is unreachable" in message for message in shown)

    # host-b comes back: ready again, and the written-off node's container goes.
    hosts["engines"]["b"].start()
    wait_for(
        lambda: NodeHost.objects.get(name="host-b").state == HostState.READY,
        timeout=15,
        what="host-b ready again",
    )
    wait_for(
        lambda: not hosts["engines"]["b"].site_containers(),
        timeout=30,
        what="nothing of the site left on host-b",
    )


def test_a_draining_host_loses_its_idle_nodes_and_takes_no_new_one(hosts):
    pool = cluster(hosts["access"], "pool", min_nodes=2, max_nodes=2)
    wait_for(lambda: sum(on_host(pool).values()) == 2, timeout=90, what="2 nodes up")
    assert on_host(pool) == {"host-a": 2}
    NodeHost.objects.filter(name="host-a").update(state=HostState.DRAINING)
    wait_for(lambda: on_host(pool) == {"host-b": 2}, timeout=60, what="both nodes on host-b")
    assert not hosts["engines"]["a"].site_containers()
    left = Event.objects.filter(compute=pool, message__contains="host host-a is draining")
    assert left.count() == 2
    assert Compute.objects.get(pk=pool.pk).state == ComputeState.STEADY


def test_a_host_over_tcp_with_tls_client_certificates_runs_nodes_and_jobs(
    workers, catalog, node_image, settings
):
    """The admin refuses tcp:// without TLS; with it, the worker connects with the host's
    client certificate (stored encrypted, decrypted into a private folder), copies the
    node image there, and a job runs on it."""
    from compute.lib import secrets
    from tests.support.engines import start_tls_engine

    settings.HANGAR_DRIVER = "docker"
    engine = start_tls_engine("tls-box")
    try:
        NodeHost.objects.create(
            name="tls-box", docker_url=engine.url, cpus_override=2 * NODE_CORES,
            tls_ca=secrets.encrypt(engine.pem("ca")), tls_cert=secrets.encrypt(engine.pem("cert")),
            tls_key=secrets.encrypt(engine.pem("key")),
        )  # fmt: skip
        workers.get("docker")
        wait_for(
            lambda: NodeHost.objects.get(name="tls-box").memory_bytes > 0,
            timeout=30,
            what="the host's capacity read over TLS",
        )
        team = make_team("tls")
        access = get_access(team.admin, team.workspace.slug)
        pool = cluster(access, "pool", min_nodes=1, max_nodes=1)
        wait_for(lambda: on_host(pool) == {"tls-box": 1}, timeout=90, what="a node on tls-box")
        job = submit_job(access, compute_id=pool.pk, name="hello", command="echo over-tls")
        wait_for(
            lambda: Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED,
            timeout=60,
            what="the job done",
        )
        assert len(engine.site_containers()) == 1
        # A client without the certificate is refused by the engine.
        import docker

        with pytest.raises(docker.errors.DockerException):
            docker.DockerClient(base_url=f"https://127.0.0.1:{engine.tls_port}", timeout=5).ping()
    finally:
        remove_all_nodes()
        engine.wipe()


def test_an_image_copy_cut_halfway_leaves_no_image_and_the_next_copy_completes(
    catalog, node_image, settings
):
    """`docker load` tags an image only once all of it is in: a copy that breaks off (the
    source engine or the network gone mid-stream) leaves nothing that counts as present,
    and the next node start copies it whole."""
    from compute.drivers import DriverUnavailable, get_driver
    from compute.drivers.hosts import Engine as HostEngine
    from compute.drivers.hosts import MultiHostDriver

    settings.HANGAR_DRIVER = "docker"
    (engine,) = start_engines(1)
    try:
        cut = {"after": 1}

        def progress(host: str, image: str, copied: int, done: bool) -> None:
            if cut["after"] and copied >= cut["after"] and not done:
                raise ConnectionResetError("the copy broke off")

        driver = MultiHostDriver(
            settings.HANGAR_SITE, get_driver(), [HostEngine(name="host-a", url=engine.url)],
            locate=lambda name: "host-a", on_copy=progress,
        )  # fmt: skip
        with pytest.raises(DriverUnavailable, match="Copying image"):
            driver.copy_image(node_image, "host-a")
        assert not engine.client().images.list(name=node_image)
        cut["after"] = 0
        driver.copy_image(node_image, "host-a")
        assert [t for i in engine.client().images.list() for t in i.tags] == [node_image]
    finally:
        engine.wipe()


def test_a_host_over_ssh_runs_nodes_and_jobs(workers, catalog, node_image, settings, tmp_path):
    """ssh:// as the Docker CLI does it: the worker's SSH configuration (its HOME's
    ~/.ssh: the key, the pinned host key) and `docker system dial-stdio` on the host —
    here a real sshd on 127.0.0.1 in front of this machine's engine."""
    from tests.support.sshd import SSHServer

    settings.HANGAR_DRIVER = "docker"
    server = SSHServer().start()
    try:
        ssh = tmp_path / "home" / ".ssh"
        ssh.mkdir(parents=True, mode=0o700)
        (ssh / "known_hosts").write_text(f"[127.0.0.1]:{server.port} {server.host_public_key}\n")
        (ssh / "config").write_text(f"Host 127.0.0.1\n  IdentityFile {server.user_key}\n")
        NodeHost.objects.create(
            name="ssh-box",
            docker_url=f"ssh://{server.user}@127.0.0.1:{server.port}",
            cpus_override=2 * NODE_CORES,
        )
        workers.get("docker", HOME=str(tmp_path / "home"))
        wait_for(
            lambda: NodeHost.objects.get(name="ssh-box").memory_bytes > 0,
            timeout=30,
            what="the host's capacity read over ssh",
        )
        team = make_team("sshhost")
        access = get_access(team.admin, team.workspace.slug)
        pool = cluster(access, "pool", min_nodes=1, max_nodes=1)
        wait_for(lambda: on_host(pool) == {"ssh-box": 1}, timeout=90, what="a node on ssh-box")
        job = submit_job(access, compute_id=pool.pk, name="hello", command="echo over-ssh")
        wait_for(
            lambda: Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED,
            timeout=60,
            what="the job done",
        )
        assert NodeHost.objects.get(name="ssh-box").state == HostState.READY
    finally:
        remove_all_nodes()
        server.stop(sessions=True)
        server.close()
