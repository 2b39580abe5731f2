"""The row factories make rows the pages and the scheduler accept."""

from __future__ import annotations

import pytest

from compute.controllers import jobs as job_steps
from compute.controllers import placement
from compute.drivers import build_driver
from compute.models import JobStatus
from tests.support.factories import ComputeFactory, JobFactory, NodeFactory


@pytest.mark.django_db
def test_a_factory_job_on_a_factory_node_is_placed(settings):
    cluster = ComputeFactory()
    NodeFactory(compute=cluster)
    job = JobFactory(compute=cluster)
    report = job_steps.JobReport()
    driver = build_driver("noop", settings.HANGAR_SITE)
    placement.place(cluster, driver, report, settings.HANGAR_NODE_IMAGE)
    job.refresh_from_db()
    assert report.placed == [job.pk] and job.status == JobStatus.RUNNING


@pytest.mark.django_db
def test_traits_make_the_other_kinds():
    assert ComputeFactory(instance=True).is_instance
    assert ComputeFactory(stopped=True).state == "stopped"
    assert NodeFactory(running=True).state == "running"
    assert JobFactory(two_nodes=True).node_count == 2
