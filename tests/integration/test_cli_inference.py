"""`hangar model`, `endpoint`, `deployment` and `score` as a user runs them: a subprocess
talking HTTP to a live server (pytest-django's `live_server` on the test database), and
for `score` the scoring gateway as a real process (uvicorn) in front of a real scoring
server on its socket. What is asserted is what the user sees: the tables, the JSON, the
one-line refusals on stderr and the exit statuses."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator

import pytest

from compute.inference.models import Deployment, Endpoint
from compute.lib import secrets
from compute.models import NodeState
from tests.integration.test_cli import Hangar, one_line_error
from tests.support.factories import NodeFactory
from tests.support.gateway import Processes
from tests.support.teams import Team, make_team
from workspace.tokens import create_token

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
SLUG = "cliserve"
SCRIPT = """
import json, os


def init():
    pass


def run(request_json):
    request = json.loads(request_json)
    if request.get("fail"):
        raise ValueError("no petals given")
    return {"deployment": os.environ.get("WHO", "?"), "echo": request.get("x")}
"""


@pytest.fixture
def team(live_server, transactional_db) -> Team:
    return make_team(SLUG)


def as_user(url: str, user: object, home) -> Hangar:
    secret = create_token(user, name="cli test", expires_in_days=1).secret
    return Hangar(url, secret, home)


@pytest.fixture
def hangar(live_server, team, tmp_path) -> Hangar:
    """The workspace's contributor, with the workspace as its default."""
    return as_user(live_server.url, team.contributor, tmp_path)


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    started.stop()


def run(hangar: Hangar, *args: str, **kwargs):
    return hangar(*args, "-w", SLUG, **kwargs)


def ok(hangar: Hangar, *args: str, **kwargs):
    return hangar.ok(*args, "-w", SLUG, **kwargs)


def as_json(hangar: Hangar, *args: str, **kwargs):
    return hangar.json(*args, "-w", SLUG, **kwargs)


def test_models_are_registered_listed_and_shown_with_their_size(hangar, tmp_path):
    empty = ok(hangar, "model", "list")
    assert empty.stdout == "" and empty.stderr == f"No models in {SLUG}.\n"

    weights = tmp_path / "model.pkl"
    weights.write_bytes(b"w" * 2048)
    first = ok(hangar, "model", "register", "iris", str(weights), "--description", "flowers")
    assert "iris:1" in first.stdout and "flowers" in first.stdout
    assert "2.0 KiB (2,048 bytes)" in first.stdout and "a file" in first.stdout
    # The same name again is its next version; a .zip is a folder, unpacked.
    folder = io.BytesIO()
    with zipfile.ZipFile(folder, "w") as archive:
        archive.writestr("model/weights.bin", b"x" * 10)
        archive.writestr("model/labels.txt", b"setosa\n")
    (tmp_path / "iris.zip").write_bytes(folder.getvalue())
    second = as_json(hangar, "model", "register", "iris", str(tmp_path / "iris.zip"))
    assert (second["name"], second["version"], second["kind"]) == ("iris", 2, "zip")

    table = ok(hangar, "model", "list").stdout
    assert table.index("zip") < table.index("2.0 KiB")  # newest first
    assert "model.pkl" in table and "iris.zip" in table
    listed = as_json(hangar, "model", "list", "--name", "iris")
    assert [(m["version"], m["size_bytes"]) for m in listed] == [
        (2, second["size_bytes"]),
        (1, 2048),
    ]
    # By name (its newest version), name:version, or id.
    assert as_json(hangar, "model", "show", "iris")["version"] == 2
    assert as_json(hangar, "model", "show", "iris:1")["size_bytes"] == 2048
    assert as_json(hangar, "model", "show", str(second["id"]))["file_name"] == "iris.zip"

    line = one_line_error(run(hangar, "model", "show", "iris:7"))
    assert line == f"hangar: Not found: no version 7 of model 'iris' in '{SLUG}'. (404)"
    line = one_line_error(run(hangar, "model", "register", "iris", str(tmp_path)), 2)
    assert "is a folder: zip it first" in line
    line = one_line_error(run(hangar, "model", "register", "iris", "nope.pkl"), 2)
    assert line == "hangar: nope.pkl: no such file"
    # The API's own words: an empty zip holds no model.
    empty_zip = io.BytesIO()
    zipfile.ZipFile(empty_zip, "w").close()
    (tmp_path / "empty.zip").write_bytes(empty_zip.getvalue())
    line = one_line_error(run(hangar, "model", "register", "iris", str(tmp_path / "empty.zip")))
    assert "no model in it" in line and line.endswith("(422)")


def test_endpoints_deployments_traffic_and_keys(hangar, team, tmp_path):
    weights = tmp_path / "model.pkl"
    weights.write_bytes(b"w" * 100)
    ok(hangar, "model", "register", "iris", str(weights))
    ok(hangar, "model", "register", "iris", str(weights))
    script = tmp_path / "score.py"
    script.write_text(SCRIPT)

    assert ok(hangar, "endpoint", "list").stderr == f"No endpoints in {SLUG}.\n"
    made = ok(hangar, "endpoint", "create", "flowers", "--description", "iris species")
    assert "POST http://127.0.0.1:" in made.stdout and f"/score/{SLUG}/flowers" in made.stdout
    assert "none: no deployment yet" in made.stdout
    line = one_line_error(run(hangar, "endpoint", "create", "flowers"))
    assert "name" in line and line.endswith("(422)")

    deploy = ("deployment", "create", "flowers")
    blue = ok(hangar, *deploy, "blue", "--model", "iris:1", "--script", str(script),
              "--size", "Standard_DS3_v2", "--min", "0", "--max", "2")  # fmt: skip
    assert "iris:1" in blue.stdout and "100%" in blue.stdout and "0–2" in blue.stdout
    green = as_json(hangar, *deploy, "green", "-m", "iris", "--script", str(script),
                    "--size", "Standard_DS3_v2", "--timeout-ms", "2000")  # fmt: skip
    assert (green["model"], green["traffic"], green["request_timeout_ms"]) == ("iris:2", 0, 2000)
    # The seed's rules, in their words; a script that is no file; a model that is none.
    gpu = run(hangar, *deploy, "red", "--model", "iris", "--script", str(script),
              "--size", "Standard_NC6s_v3", "--target", "container_instance")  # fmt: skip
    assert "CPU only" in one_line_error(gpu) and "(422)" in gpu.stderr
    missing = run(hangar, *deploy, "red", "--model", "iris", "--script", "nope.py", "--size", "x")
    assert one_line_error(missing, 2) == "hangar: --script nope.py: no such file"
    nomodel = run(hangar, *deploy, "red", "--model", "tulip", "--script", str(script),
                  "--size", "Standard_DS3_v2")  # fmt: skip
    assert one_line_error(nomodel).startswith("hangar: model: ")

    shown = ok(hangar, "endpoint", "show", "flowers").stdout
    for word in ("DEPLOYMENT", "blue", "green", "iris:1", "iris:2", "blue 100%", "0–2"):
        assert word in shown, (word, shown)
    assert "blue 100%" in ok(hangar, "endpoint", "list").stdout

    # The traffic split: by name, whole percents adding up to 100.
    split = ok(hangar, "endpoint", "traffic", "flowers", "blue=80", "green=20").stdout
    assert "blue 80%, green 20%" in split
    line = one_line_error(run(hangar, "endpoint", "traffic", "flowers", "blue=70", "green=20"))
    assert "100" in line and line.endswith("(422)")
    line = one_line_error(run(hangar, "endpoint", "traffic", "flowers", "blue=70", "red=30"))
    assert "no deployment named red" in line
    line = one_line_error(run(hangar, "endpoint", "traffic", "flowers", "blue"), 2)
    assert "DEPLOYMENT=PERCENT" in line
    shares = {d["name"]: d["traffic"] for d in Endpoint.objects.get().deployments.values()}
    assert shares == {"blue": 80, "green": 20}

    # Removing asks first; one taking traffic beside others is refused by the API.
    asked = run(hangar, "deployment", "delete", "flowers", "green", input="n\n")
    assert asked.returncode == 1 and asked.stderr == (
        f"Remove deployment 'green' of endpoint 'flowers' of {SLUG}? Its replicas stop. [y/N]: "
        "hangar: not removed (pass --yes to remove without being asked)\n"
    )
    line = one_line_error(run(hangar, "deployment", "delete", "flowers", "green", "--yes"))
    assert line == (
        "hangar: green takes 20% of the traffic: give it to the other deployments first. (422)"
    )
    ok(hangar, "endpoint", "traffic", "flowers", "blue=100", "green=0")
    gone = ok(hangar, "deployment", "delete", "flowers", "green", "--yes")
    assert gone.stdout == "Removed deployment green of flowers; its replicas stop.\n"
    assert list(Deployment.objects.values_list("name", flat=True)) == ["blue"]
    line = one_line_error(run(hangar, "deployment", "show", "flowers", "green"))
    assert line == "hangar: Not found: endpoint 'flowers' has no deployment 'green'. (404)"

    # Keys: shown to contributors; regenerating one asks first and leaves the other.
    keys = as_json(hangar, "endpoint", "keys", "flowers")
    stored = Endpoint.objects.get()
    assert keys == {
        "primary": secrets.decrypt(stored.primary_key),
        "secondary": secrets.decrypt(stored.secondary_key),
    }
    asked = run(hangar, "endpoint", "regenerate-key", "flowers", "primary", input="\n")
    assert asked.returncode == 1 and "Clients sending it are refused" in asked.stderr
    assert asked.stderr.endswith(
        "hangar: not regenerated (pass --yes to regenerate without being asked)\n"
    )
    assert as_json(hangar, "endpoint", "keys", "flowers") == keys
    fresh = as_json(hangar, "endpoint", "regenerate-key", "flowers", "primary", "--yes")
    assert fresh["primary"] != keys["primary"] and fresh["secondary"] == keys["secondary"]
    line = one_line_error(run(hangar, "endpoint", "regenerate-key", "flowers", "tertiary"), 2)
    assert "invalid choice: 'tertiary'" in line

    # A reader sees the endpoint but not its keys, and so cannot score through the CLI.
    reader = as_user(hangar.url, team.reader, tmp_path)
    assert "blue 100%" in reader.ok("endpoint", "show", "flowers", "-w", SLUG).stdout
    shown = reader.ok("endpoint", "show", "flowers", "-w", SLUG).stdout
    assert fresh["primary"] not in shown
    for args in (("endpoint", "keys", "flowers"), ("score", "flowers", "--json", "{}")):
        line = one_line_error(reader(*args, "-w", SLUG))
        assert "reading endpoint keys" in line and line.endswith("(403)"), line
        assert fresh["primary"] not in line
    line = one_line_error(reader("endpoint", "create", "tulips", "-w", SLUG))
    assert line.endswith("(403)")


def test_score_sends_requests_through_the_gateway_with_the_endpoints_key(
    hangar, processes, settings, tmp_path
):
    settings.HANGAR_SCORE_URL = gateway = processes.gateway()
    weights = tmp_path / "model.pkl"
    weights.write_bytes(b"w" * 100)
    ok(hangar, "model", "register", "iris", str(weights))
    script = tmp_path / "score.py"
    script.write_text(SCRIPT)
    ok(hangar, "endpoint", "create", "flowers")
    for name in ("blue", "green"):
        ok(hangar, "deployment", "create", "flowers", name, "--model", "iris",
           "--script", str(script), "--size", "Standard_DS3_v2")  # fmt: skip
        # Its replica: a node row of the deployment's cluster, and Hangar's scoring server
        # at the socket the gateway looks for (no worker or container in this test).
        node = NodeFactory(compute=Deployment.objects.get(name=name).compute, state=NodeState.IDLE)
        processes.replica(node, script, WHO=name)
    assert as_json(hangar, "endpoint", "show", "flowers")["scoring_url"] == (
        f"{gateway}/score/{SLUG}/flowers"
    )

    # The traffic split sends it to blue (100 %); a named deployment gets it instead.
    answer = ok(hangar, "score", "flowers", "--json", '{"x": 3}')
    assert json.loads(answer.stdout) == {"deployment": "blue", "echo": 3}
    named = as_json(hangar, "score", "flowers", "--json", '{"x": 4}', "--deployment", "green")
    assert named == {"deployment": "green", "echo": 4}
    request = tmp_path / "request.json"
    request.write_text('{"x": [5.1, 3.5, 1.4, 0.2]}')
    from_file = as_json(hangar, "score", "flowers", "--file", str(request))
    assert from_file["echo"] == [5.1, 3.5, 1.4, 0.2]
    from_stdin = as_json(hangar, "score", "flowers", "--file", "-", input='{"x": "in"}')
    assert from_stdin["echo"] == "in"

    # What goes wrong, one line each: the gateway's and the replica's words.
    line = one_line_error(run(hangar, "score", "flowers", "--json", '{"fail": true}'))
    assert line.startswith("hangar: the gateway answered 500: run() failed: ")
    assert "ValueError" in line and "no petals given" in line
    line = one_line_error(run(hangar, "score", "flowers", "--json", "{}", "-d", "red"))
    assert line.startswith("hangar: the gateway answered 404: ") and "red" in line
    line = one_line_error(
        run(hangar, "score", "flowers", "--json", "{}", HANGAR_ENDPOINT_KEY="not-the-key")
    )
    assert line.startswith("hangar: the gateway answered 401: ")
    assert "the server refused the token" not in line  # not the API token's fault
    line = one_line_error(
        run(hangar, "score", "flowers", "--json", "{}", HANGAR_SCORE_URL="http://127.0.0.1:9")
    )
    assert line == "hangar: cannot reach the gateway at http://127.0.0.1:9: connection refused"
    line = one_line_error(run(hangar, "score", "flowers", "--json", "{x: 1}"), 2)
    assert line.startswith("hangar: --json is not JSON: ")
    one_line_error(run(hangar, "score", "flowers"), 2)  # neither --json nor --file
    line = one_line_error(run(hangar, "score", "tulips", "--json", "{}"))
    assert line == f"hangar: Not found: no endpoint named 'tulips' in '{SLUG}'. (404)"
