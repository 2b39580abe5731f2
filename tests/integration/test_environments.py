"""Environment images built here for real (mmdebstrap from Debian's archive, pip from the
index, `docker import`), never pulled: built once per spec, whoever asks and however many
at once; a bad package fails with the package manager's words; a worker killed mid-build
is taken over and the image built once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import docker
import pytest

from compute import enqueue
from compute.actions.computes import create_cluster, create_instance
from compute.actions.environments import create_environment
from compute.actions.jobs import submit_job
from compute.controllers import environments as builds
from compute.lib import jobfiles
from compute.lib.buildlogs import read_log
from compute.models import (
    Compute,
    ComputeState,
    Environment,
    EnvironmentImage,
    EventVerb,
    ImageState,
    Job,
    JobStatus,
    Node,
    VmSize,
)
from tests.integration.helpers import wait_for
from tests.support.factories import ComputeFactory, NodeFactory
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
# One Debian package and one pip package, each with a Python module to import.
SMALL = {"debian_packages": "python3-idna", "pip_requirements": "six==1.16.0"}


@pytest.fixture
def access():
    team = make_team("envs")
    return get_access(team.contributor, team.workspace.slug)


@pytest.fixture
def sent_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The images whose build task was sent, recorded instead of sent: here the test is
    the worker (test_a_worker_killed_mid_build... has a real one)."""
    sent: list[int] = []

    def send_task(name: str, args: list, **options: object) -> None:
        assert name == enqueue.BUILD_ENVIRONMENT, name
        sent.extend(args)

    monkeypatch.setattr(enqueue.app, "send_task", send_task)
    return sent


@pytest.fixture
def engine() -> Iterator[docker.DockerClient]:
    """The Docker engine; every image a test made is removed when it ends."""
    client = docker.from_env(timeout=600)
    made: list[str] = []
    yield client
    # The curated ones' images are not the tests' to remove (`make run` may use them).
    made_here = EnvironmentImage.objects.exclude(environments__workspace=None)
    for tag in {image.tag for image in made_here} | set(made):
        try:
            client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass


def fresh(engine: docker.DockerClient, tag: str) -> None:
    """No image of that tag before the test: the build is a real one, not an adoption."""
    try:
        engine.images.remove(tag, force=True)
    except docker.errors.ImageNotFound:
        pass


@pytest.mark.image_builds
def test_an_environment_is_built_once_and_its_node_imports_both_packages(
    access, engine, sent_builds
):
    environment = create_environment(access, name="small", **SMALL)
    image = environment.image
    assert sent_builds == [image.pk]  # its build, enqueued once committed
    assert image.state == ImageState.QUEUED
    fresh(engine, image.tag)

    # Two workers handed the same build at once: one builds, the other leaves it.
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(builds.build(image.pk))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert sorted(results) == ["built", "not claimed: built, being built, or gone"], results
    image.refresh_from_db()
    log, _ = read_log(image.spec_hash)
    assert (image.state, image.attempts) == (ImageState.READY, 1), (image.error, log)
    assert "Successfully installed six-1.16.0" in log
    assert image.size_bytes and image.size_bytes > 10_000_000

    # As a node runs it: not root, read-only, no network.
    printed = engine.containers.run(
        image.tag,
        ["python3", "-c", "import idna, six; print('both', six.__version__)"],
        user="1001",
        read_only=True,
        network_mode="none",
        remove=True,
    )
    assert printed.decode().strip() == "both 1.16.0"

    # The same packages, written another way: the same image, ready at once, no build.
    started = time.monotonic()
    again = create_environment(
        access,
        name="small-too",
        debian_packages="  python3-idna  # for URLs\n",
        pip_requirements="Six == 1.16.0",
    )
    assert time.monotonic() - started < 1.0
    assert (again.image_id, again.image.state) == (image.pk, ImageState.READY)
    assert sent_builds == [image.pk]  # no second build
    # A new version of "small" keeps the first one as it was.
    newer = create_environment(access, name="small", **SMALL)
    assert newer.version == 2
    assert list(Environment.objects.filter(name="small").values_list("version", flat=True)) == [
        2,
        1,
    ]


@pytest.mark.image_builds
def test_a_bad_package_fails_the_build_with_apts_words_and_tags_nothing(
    access, engine, sent_builds
):
    environment = create_environment(
        access, name="typo", debian_packages="python3-idna hangar-no-such-package"
    )
    image = environment.image
    fresh(engine, image.tag)
    assert builds.build(image.pk) == "failed"
    image.refresh_from_db()
    assert image.state == ImageState.FAILED
    assert "Unable to locate package hangar-no-such-package" in image.error
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get(image.tag)


@pytest.mark.image_builds
def test_a_worker_killed_mid_build_is_taken_over_and_builds_once(access, engine, workers):
    worker = workers.get("local")
    environment = create_environment(
        access, name="crash", debian_packages="python3-idna", pip_requirements="six"
    )
    image = environment.image
    fresh(engine, image.tag)
    wait_for(
        lambda: (
            EnvironmentImage.objects.get(pk=image.pk).state == ImageState.BUILDING
            and read_log(image.spec_hash)[1] > 0
        ),
        timeout=60,
        what="the build under way",
    )
    worker.kill()  # SIGKILL, mid-build
    workers.stop()
    workers.get("local")  # its task comes back (late ack); the dead builder is taken over
    wait_for(
        lambda: EnvironmentImage.objects.get(pk=image.pk).state == ImageState.READY,
        timeout=300,
        what="the build taken over and finished",
    )
    image.refresh_from_db()
    assert image.attempts == 2
    assert engine.images.get(image.tag).id == image.image_id


@pytest.mark.image_builds
def test_a_job_on_an_instance_of_a_built_environment_imports_both_packages(
    access, engine, workers, catalog, settings
):
    settings.HANGAR_DRIVER = "docker"
    workers.get("docker")
    environment = create_environment(access, name="small-job", **SMALL)
    # The instance is made while the image builds: its node waits, and says so.
    box = create_instance(
        access, name="trainer", vm_size=VmSize.objects.get(name="Standard_D2s_v3"),
        environment=environment,
    )  # fmt: skip
    job = submit_job(
        access, compute_id=box.pk, name="imports",
        command="python3 -c \"import idna, six; print('both', six.__version__)\"",
    )  # fmt: skip
    try:
        wait_for(lambda: Job.objects.get(pk=job.pk).is_terminal, timeout=300, what="the job's end")
        ended = Job.objects.get(pk=job.pk)
        assert ended.status == JobStatus.COMPLETED, (ended.error, box.events.all())
        output = jobfiles.read_output(ended.runs.get(attempt=ended.retries).key)
        assert output.strip() == "both 1.16.0"
        node = Node.objects.filter(compute=box).exclude(image="").get()
        assert node.image == environment.image.tag
        waited = box.events.filter(verb=EventVerb.ENVIRONMENT_WAIT)
        assert waited.exists() and "to build" in waited.first().message
    finally:
        remove_all_nodes()


def test_an_environment_that_did_not_build_fails_its_compute_and_its_jobs_with_why(
    access, workers, catalog, settings
):
    settings.HANGAR_DRIVER = "docker"
    environment = create_environment(access, name="typo2", debian_packages="hangar-nope")
    # As its build ends (its task, sent, finds it failed and leaves it).
    EnvironmentImage.objects.filter(pk=environment.image_id).update(
        state=ImageState.FAILED, error="E: Unable to locate package hangar-nope"
    )
    box = create_instance(
        access, name="doomed", vm_size=VmSize.objects.get(name="Standard_D2s_v3"),
        environment=environment,
    )  # fmt: skip
    job = submit_job(access, compute_id=box.pk, name="never", command="true")
    workers.get("docker")
    wait_for(lambda: Compute.objects.get(pk=box.pk).state == ComputeState.FAILED, what="failed")
    why = "Environment typo2:1 did not build: E: Unable to locate package hangar-nope"
    assert Compute.objects.get(pk=box.pk).last_error == why
    ended = Job.objects.get(pk=job.pk)
    assert (ended.status, ended.error) == (JobStatus.FAILED, why)


def test_unused_images_are_removed_and_one_a_live_node_runs_is_kept(
    access, engine, node_image, sent_builds
):
    made = {}
    for name in ("kept", "unused"):
        environment = create_environment(access, name=name, pip_requirements=f"hangar-{name}")
        image = environment.image
        engine.images.get(node_image).tag(image.tag)  # stands in for a built image
        EnvironmentImage.objects.filter(pk=image.pk).update(
            state=ImageState.READY, image_id=engine.images.get(image.tag).id, size_bytes=1
        )
        made[name] = image
    box = ComputeFactory(workspace=access.workspace, instance=True)
    NodeFactory(compute=box, running=True, image=made["kept"].tag)

    assert builds.prune() == [made["unused"].tag]
    unused = EnvironmentImage.objects.get(pk=made["unused"].pk)
    assert (unused.state, unused.image_id) == (ImageState.NOT_BUILT, "")
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get(made["unused"].tag)
    assert EnvironmentImage.objects.get(pk=made["kept"].pk).state == ImageState.READY
    assert engine.images.get(made["kept"].tag)


def test_a_job_in_its_own_environment_runs_on_a_cluster_node_of_that_image(
    access, engine, node_image, workers, catalog, settings
):
    """The cluster runs the site's node image; the job chose another environment: a node
    of that image starts for it (a real container), and the job sees its variables."""
    settings.HANGAR_DRIVER = "docker"
    workers.get("docker")
    environment = create_environment(access, name="tabular", pip_requirements="hangar-stand-in")
    image = environment.image
    engine.images.get(node_image).tag(image.tag)  # stands in for a built image
    EnvironmentImage.objects.filter(pk=image.pk).update(
        state=ImageState.READY, image_id=engine.images.get(image.tag).id
    )
    Environment.objects.filter(pk=environment.pk).update(variables={"FLAVOUR": "tabular"})
    environment.refresh_from_db()
    pool = create_cluster(
        access, name="pool", vm_size=VmSize.objects.get(name="Standard_D2s_v3"), max_nodes=2
    )
    own = submit_job(access, compute_id=pool.pk, name="own", command='echo "own:$FLAVOUR"')
    other = submit_job(
        access, compute_id=pool.pk, name="other", command='echo "other:$FLAVOUR"',
        runs_in=environment,
    )  # fmt: skip
    try:
        for job in (own, other):
            wait_for(lambda j=job: Job.objects.get(pk=j.pk).is_terminal, timeout=60, what="end")
        outputs = {}
        for job in (own, other):
            ended = Job.objects.get(pk=job.pk)
            assert ended.status == JobStatus.COMPLETED, (ended.error, list(pool.events.all()))
            outputs[ended.name] = jobfiles.read_output(ended.runs.get().key).strip()
            node = ended.runs.get().node
            container = engine.containers.get(node.container_ref)
            assert ended.image == node.image
            assert container.attrs["Config"]["Image"] == node.image  # what it was made from
        assert outputs == {"own": "own:", "other": "other:tabular"}
        assert Job.objects.get(pk=other.pk).image == image.tag
        assert Job.objects.get(pk=own.pk).image == node_image
    finally:
        remove_all_nodes()


def test_python_minimal_takes_the_node_image_make_run_built(engine, node_image, workers):
    """`make run` builds the Debian node image once; python-minimal (the same packages)
    takes it as its own in a second instead of a second build. One with packages of its
    own cannot take an image that lacks them."""
    from django.core.management import CommandError, call_command

    from compute.actions.environments import sync_curated

    curated = {environment.name: environment for environment in sync_curated()}
    minimal = curated["python-minimal"]
    tag = minimal.image.tag
    had = engine.images.list(name=tag.split(":")[0])
    workers.get("local")
    try:
        call_command("environments", "adopt", "python-minimal", image=node_image)
        wait_for(
            lambda: EnvironmentImage.objects.get(pk=minimal.image_id).state == ImageState.READY,
            timeout=30,
            what="python-minimal adopted",
        )
        adopted = EnvironmentImage.objects.get(pk=minimal.image_id)
        assert adopted.image_id == engine.images.get(node_image).id
        assert adopted.attempts == 1 and adopted.size_bytes
        with pytest.raises(CommandError, match="adds packages"):
            call_command("environments", "adopt", "scikit-learn", image=node_image)
    finally:
        if not had:  # the stand-in is not make run's: the real one is built when asked
            engine.images.remove(tag)


@pytest.mark.image_builds
def test_the_classifier_template_trains_on_the_scikit_learn_environment(
    access, engine, workers, catalog, settings
):
    """The demo's job template on a plain cluster: its node of scikit-learn starts once
    the curated image is built (once per machine: the image is kept for the next run,
    which adopts it in a second), and the classifier prints its accuracy."""
    from compute.actions.environments import sync_curated
    from compute.job_templates import job_templates

    settings.HANGAR_DRIVER = "docker"
    workers.get("docker")
    sync_curated()
    template = job_templates()["train-classifier"]
    sklearn = Environment.objects.get(workspace=None, name=template.environment)
    pool = create_cluster(
        access, name="pool", vm_size=VmSize.objects.get(name="Standard_D2s_v3"), max_nodes=1
    )
    from compute.actions.jobs import Code
    from compute.models import CodeKind

    job = submit_job(
        access, compute_id=pool.pk, name=template.title, command=template.command,
        code=Code(CodeKind.SCRIPT, template.script_name, template.script.encode()),
        runs_in=sklearn,
    )  # fmt: skip
    try:
        wait_for(lambda: Job.objects.get(pk=job.pk).is_terminal, timeout=600, what="trained")
        ended = Job.objects.get(pk=job.pk)
        output = jobfiles.read_output(ended.runs.get(attempt=ended.retries).key)
        assert ended.status == JobStatus.COMPLETED, (ended.error, output)
        accuracy = float(output.split("test accuracy ")[1].split()[0])
        assert accuracy >= 0.9, output
        assert ended.image == sklearn.image.tag
    finally:
        remove_all_nodes()


def test_a_job_image_missing_from_the_engine_fails_that_job_not_the_cluster(
    access, engine, node_image, workers, catalog, settings
):
    """An image the database calls built but Docker no longer has (removed by hand): the
    node for it cannot start, the jobs that need it fail with Docker's reason, and the
    cluster and its other jobs go on."""
    settings.HANGAR_DRIVER = "docker"
    workers.get("docker")
    environment = create_environment(access, name="gone", pip_requirements="hangar-gone")
    EnvironmentImage.objects.filter(pk=environment.image_id).update(
        state=ImageState.READY, image_id="sha256:gone"
    )
    fresh(engine, environment.image.tag)
    pool = create_cluster(
        access, name="pool", vm_size=VmSize.objects.get(name="Standard_D2s_v3"), max_nodes=2
    )
    doomed = submit_job(
        access, compute_id=pool.pk, name="doomed", command="true", runs_in=environment
    )
    fine = submit_job(access, compute_id=pool.pk, name="fine", command="echo fine")
    try:
        for job in (doomed, fine):
            wait_for(lambda j=job: Job.objects.get(pk=j.pk).is_terminal, timeout=60, what="end")
        doomed, fine = Job.objects.get(pk=doomed.pk), Job.objects.get(pk=fine.pk)
        assert doomed.status == JobStatus.FAILED
        assert "is not on this Docker engine" in doomed.error
        assert fine.status == JobStatus.COMPLETED, fine.error
        assert Compute.objects.get(pk=pool.pk).state != ComputeState.FAILED
    finally:
        remove_all_nodes()
