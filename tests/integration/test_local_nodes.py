"""Local nodes (host processes) on a busy machine: a node whose supervisor is slow to report
is still starting, not failed, and the next pass adopts it instead of starting a second."""

from __future__ import annotations

import json
import os
import time

import pytest
from django.conf import settings

from compute.drivers import NodeSpec
from compute.drivers import local as local_driver
from compute.drivers.base import DriverUnavailable

pytestmark = pytest.mark.integration


@pytest.fixture
def driver(tmp_path):
    driver = local_driver.LocalDriver(settings.HANGAR_SITE, tmp_path / "nodes")
    yield driver
    for node in driver.list_nodes():
        driver.remove_node(node.name)


def spec(node_id: int) -> NodeSpec:
    return NodeSpec(
        site=settings.HANGAR_SITE, workspace="busy", compute_id=990_001, node_id=node_id,
        node_name=f"node-{node_id}", image="", cpus=1, memory_bytes=2**30, network="none",
        command=tuple(settings.HANGAR_NODE_COMMAND),
    )  # fmt: skip


def test_a_node_slow_to_report_is_still_starting_and_never_launched_twice(driver, monkeypatch):
    # What a pass leaves when the supervisor it launched has not reported yet (CI installing
    # packages beside us): the node's folder and its launch time, no process, no exit code.
    monkeypatch.setattr(local_driver, "START_TIMEOUT", 0.2)
    slow = spec(1)
    folder = driver.root / slow.container_name
    folder.mkdir(parents=True)
    (folder / "labels.json").write_text(json.dumps(slow.labels))
    (folder / local_driver.LAUNCHED_FILE).write_text("")

    # The next pass: still starting, a retry later; not a failure, not a second supervisor.
    with pytest.raises(DriverUnavailable, match="is still starting"):
        driver.ensure_node(slow)
    assert not (folder / "process").exists()
    assert node_processes(slow.container_name) == []

    # Past the time any supervisor takes to report, the launch is taken for dead and made
    # again: the node runs, once.
    monkeypatch.undo()  # the relaunch waits as long as a pass does
    long_ago = time.time() - local_driver.STILL_STARTING - 1
    os.utime(folder / local_driver.LAUNCHED_FILE, (long_ago, long_ago))
    observation = driver.ensure_node(slow)
    assert observation.running
    assert len(node_processes(slow.container_name)) == 1


def node_processes(name: str) -> list[int]:
    """Host processes running in this node's working folder."""
    work = str(local_driver.hostproc.node_work_dir(name))
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.readlink(f"/proc/{entry.name}/cwd") == work:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
