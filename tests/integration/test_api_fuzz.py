"""The API's schema, checked against a live server by schemathesis: generated requests
for every operation (valid and invalid ones), as a contributor with a token. No answer may
be a server error, and every documented answer must match its schema.

The live-output stream (`/follow`) and the long poll (`/wait`) are left out: they answer
when their job ends, and the integration tests of jobs and of the CLI run them to the end."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from compute.models import Compute, ComputeState, VmSize
from tests.support.factories import ComputeFactory
from tests.support.teams import make_team
from workspace.tokens import create_token

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
EXAMPLES = 10  # per operation: ~40 operations, a few hundred requests


@pytest.fixture
def token(catalog) -> str:
    team = make_team("vision")
    size = VmSize.objects.get(name="Standard_DS3_v2")
    ComputeFactory(workspace=team.workspace, name="pool", vm_size=size)
    ComputeFactory(
        workspace=team.workspace, name="box", kind="instance", state=ComputeState.STOPPED,
        vm_size=size, max_nodes=1,
    )  # fmt: skip
    return create_token(team.contributor, name="fuzz", expires_in_days=1).secret


def test_no_server_error_and_every_answer_matches_the_schema(live_server, token):
    """Each operation's examples are drawn from its schema (schemathesis as a Hypothesis
    strategy: its pytest plugin does not run under this pytest)."""
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/v1/openapi.json")
    ids = list(Compute.objects.values_list("pk", flat=True))
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith(("/follow", "/wait")):
            continue

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(), real=st.booleans(), compute=st.sampled_from(ids))
        def check(case: schemathesis.Case, real: bool, compute: int) -> None:
            # Mostly the caller's workspace and real computes (random ones only find 404s).
            if "slug" in case.path_parameters and real:
                case.path_parameters["slug"] = "vision"
            if "compute_id" in case.path_parameters and real:
                case.path_parameters["compute_id"] = compute
            case.call_and_validate(
                headers={"Authorization": f"Bearer {token}"},
                checks=[not_a_server_error, response_schema_conformance],
            )

        check()
        checked += 1
    assert checked >= 30  # every operation but the stream
