"""What a node's container is made of: its limits (scaled from the VM size), its
environment (an instance's secret variables decrypted here, in the worker), its command."""

from __future__ import annotations

from django.conf import settings

from compute.drivers import HostFolder, NodeSpec, NodeStartError
from compute.drivers.base import container_name
from compute.lib import replicas, secrets, snapshots
from compute.models import Compute, Node

GIB = 1024**3


def node_spec(
    compute: Compute, node: Node, with_secrets: bool = False, image: str = ""
) -> NodeSpec:
    """`with_secrets`: the instance's secret variables too, decrypted here in the worker
    for the node's environment (its setup script and its jobs read them); only the
    start of a node needs them, a removal needs the name alone."""
    size = compute.vm_size
    assert size is not None  # only attached computes have no size, and they have no nodes
    chosen = compute.environment
    # A cluster's node of a job's own environment gets that job its variables at launch.
    own_image = chosen is not None and image in ("", chosen.image.tag)
    environment = {
        **(chosen.variables if chosen is not None and own_image else {}),
        "HANGAR_COMPUTE": compute.name,
        "HANGAR_NODE": node.name,
        "HANGAR_VM_SIZE": size.name,
    }
    if with_secrets and compute.is_instance and compute.secret_environment:
        try:
            hidden = secrets.decrypt_variables(compute.secret_environment)
        except secrets.SecretUnreadable as exc:
            raise NodeStartError(str(exc)) from None
        environment = {**hidden, **environment}
    if compute.setup_script:
        environment["HANGAR_SETUP_SCRIPT"] = compute.setup_script
    command = node_command(compute.setup_script)
    folders: tuple[HostFolder, ...] = ()
    if compute.is_serving:
        command, folders = serving_command(compute, node)
        environment["HANGAR_MODEL_DIR"] = MODEL_IN_NODE
    elif compute.is_batch:
        folders = batch_folders(compute)
        environment["HANGAR_MODEL_DIR"] = MODEL_IN_NODE
        # Its jobs (which inherit the node's environment) find its batch worker there.
        environment["HANGAR_BATCH_SOCKET"] = BATCH_SOCKET_IN_NODE
        command = batch_command()
    return NodeSpec(
        site=settings.HANGAR_SITE,
        workspace=compute.workspace.slug,
        compute_id=compute.pk,
        node_id=node.pk,
        node_name=node.name,
        image=image or node.image or settings.HANGAR_NODE_IMAGE,
        cpus=size.vcpus * settings.HANGAR_CPU_SCALE,
        memory_bytes=int(float(size.memory_gib) * settings.HANGAR_MEMORY_SCALE * GIB),
        network=settings.HANGAR_NODE_NETWORK,
        command=command,
        environment=environment,
        pids_limit=settings.HANGAR_NODE_PIDS_LIMIT,
        tmp_mb=settings.HANGAR_NODE_TMP_MB,
        folders=folders,
        host=node.host.name if node.host_id and node.host else "",
        # GPUs are asked of the engine only on a node host that has them (placement
        # counted them free); the default engine runs GPU sizes without, as before.
        gpus=size.gpus if node.host_id and node.host and node.host.capacity_gpus else 0,
    )


# Where a replica finds what it serves, and where its socket appears (compute/inference).
SERVE_IN_NODE = "/hangar/serve"
MODEL_IN_NODE = "/hangar/model"
SOCKET_FOLDER_IN_NODE = "/run/hangar"


def serving_command(compute: Compute, node: Node) -> tuple[tuple[str, ...], tuple[HostFolder, ...]]:
    """The scoring server over the deployment's script, its model and its socket folder."""
    deployment, model = int(compute.serving["deployment"]), int(compute.serving["model"])
    container = container_name(settings.HANGAR_SITE, compute.pk, node.pk)
    folders = (
        HostFolder(str(snapshots.serving_store().folder(deployment)), SERVE_IN_NODE),
        HostFolder(str(snapshots.model_store().folder(model)), MODEL_IN_NODE),
        HostFolder(str(replicas.socket_folder(container)), SOCKET_FOLDER_IN_NODE, read_only=False),
    )
    command = (
        "python3", f"{SERVE_IN_NODE}/score_server.py",
        "--socket", f"{SOCKET_FOLDER_IN_NODE}/{replicas.SOCKET_NAME}",
        "--script", f"{SERVE_IN_NODE}/score.py",
    )  # fmt: skip
    return command, folders


# A batch job's nodes: its runner, script and mini-batch list, and its inputs (compute/inference).
BATCH_IN_NODE = "/hangar/batch"
INPUTS_IN_NODE = "/hangar/inputs"


# A batch node's own process is its batch worker's supervisor (the runner's --serve): it
# keeps one worker that calls the script's init() once and run(mini_batch) for each of the
# node's mini-batch jobs, over a socket in the node's own /tmp (a tmpfs no other node, nor
# this machine, sees). Should it not run, or end, the node waits as any node does and its
# jobs run the script in their own process.
BATCH_SOCKET_IN_NODE = "/tmp/hangar-batch/worker.sock"  # noqa: S108 (the node's own tmpfs)
BATCH_WORKER_THEN_WAIT = 'python3 "$0" --serve "$HANGAR_BATCH_SOCKET"; exec "$@"'


def batch_command() -> tuple[str, ...]:
    runner = f"{BATCH_IN_NODE}/batch_runner.py"
    return ("sh", "-c", BATCH_WORKER_THEN_WAIT, runner, *settings.HANGAR_NODE_COMMAND)


def batch_folders(compute: Compute) -> tuple[HostFolder, ...]:
    """What every node of a batch job sees, all read-only; its jobs run the runner."""
    batch, model = int(compute.serving["batch"]), int(compute.serving["model"])
    return (
        HostFolder(str(snapshots.batch_code_store().folder(batch)), BATCH_IN_NODE),
        HostFolder(str(snapshots.batch_input_store().folder(batch)), INPUTS_IN_NODE),
        HostFolder(str(snapshots.model_store().folder(model)), MODEL_IN_NODE),
    )


# The setup script arrives in an environment variable (never interpolated into the shell
# line), runs once in the node's working folder, and leaves setup.log and setup.exit there.
SETUP_THEN_WAIT = (
    'printf "%s\\n" "$HANGAR_SETUP_SCRIPT" > setup.sh; sh setup.sh > setup.log 2>&1; '
    'echo $? > setup.exit; exec "$@"'
)


def node_command(setup_script: str) -> tuple[str, ...]:
    wait = tuple(settings.HANGAR_NODE_COMMAND)
    if not setup_script:
        return wait
    return ("sh", "-c", SETUP_THEN_WAIT, "hangar-setup", *wait)
