"""The `hangar` command as a user runs it: a subprocess talking HTTP to a live server (the
test database behind pytest-django's `live_server`), jobs run by a real Celery worker on
Docker nodes. Login writes a private profile; a cluster is made, a code folder's job runs
without its .gitignore'd file, its output is followed to the end, `job wait` exits with
the job's exit code, a long job is canceled; every refusal is one line on stderr."""

from __future__ import annotations

import json
import os
import pty
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from compute.api import jobs as jobs_api
from hangar.client import ApiError, Client
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from workspace.tokens import create_token

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
SLUG = "clitest"


class Hangar:
    """Runs `python -m hangar.cli ...` with its own config folder and environment."""

    def __init__(self, url: str, token: str, home: Path) -> None:
        self.url, self.token, self.home = url, token, home
        self.config = home / "xdg" / "hangar" / "config.toml"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HANGAR_")}
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / "xdg"),
            HANGAR_URL=self.url,
            HANGAR_TOKEN=self.token,
            PYTHONPATH=str(ROOT),
        )
        env.update(extra)
        return {k: v for k, v in env.items() if v != ""}

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "hangar.cli", *args],
            capture_output=True,
            text=True,
            input=input,
            env=self.env(**env),
            cwd=self.home,
            timeout=timeout,
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def on_a_terminal(self, *args: str) -> tuple[subprocess.CompletedProcess, str]:
        """Run with stderr on a pseudo-terminal (as in a shell): the stdout, and what the
        terminal showed."""
        controller, terminal = pty.openpty()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "hangar.cli", *args],
                stdout=subprocess.PIPE,
                stderr=terminal,
                text=True,
                env=self.env(),
                cwd=self.home,
                timeout=120,
                check=False,
            )
        finally:
            os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            shown += chunk
        os.close(controller)
        return done, shown.decode(errors="replace")

    def ok(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        done = self(*args, **kwargs)
        assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
        return done

    def json(self, *args: str, **kwargs) -> Any:
        """The command's stdout as JSON (`--output json` goes before any `--`)."""
        cut = args.index("--") if "--" in args else len(args)
        done = self.ok(*args[:cut], "--output", "json", *args[cut:], **kwargs)
        return json.loads(done.stdout)


def one_line_error(done: subprocess.CompletedProcess, code: int = 1) -> str:
    """The single `hangar: ...` line a refusal prints, with its exit status."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hangar: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture
def hangar(live_server, transactional_db, tmp_path) -> Hangar:
    team = make_team(SLUG)
    secret = create_token(team.admin, name="cli test", expires_in_days=1).secret
    return Hangar(live_server.url, secret, tmp_path)


@pytest.fixture
def nodes(workers, catalog, node_image, settings):
    settings.HANGAR_DRIVER = "docker"
    settings.HANGAR_NODE_NETWORK = "host"
    workers.get("docker", HANGAR_NODE_NETWORK="host")
    yield
    remove_all_nodes()


def test_login_writes_a_private_profile_that_later_commands_use(hangar):
    assert not hangar.config.exists()
    done = hangar.ok("login", "--url", hangar.url, "--token", hangar.token, HANGAR_TOKEN="")
    assert "Logged in" in done.stdout and hangar.token not in done.stdout + done.stderr
    mode = stat.S_IMODE(hangar.config.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert stat.S_IMODE(hangar.config.parent.stat().st_mode) == 0o700
    text = hangar.config.read_text()
    # The token sees one workspace: it becomes the profile's.
    assert hangar.token in text and f'url = "{hangar.url}"' in text
    assert f'workspace = "{SLUG}"' in text

    # With no HANGAR_URL/HANGAR_TOKEN, the profile is used, workspace included.
    listed = hangar.json("workspace", "list", HANGAR_URL="", HANGAR_TOKEN="")
    assert [(w["slug"], w["role"]) for w in listed] == [(SLUG, "admin")]
    assert hangar.json("compute", "list", HANGAR_URL="", HANGAR_TOKEN="") == []

    # A second profile (the token read from stdin); --profile selects it, the first stays
    # the default.
    hangar.ok("login", "--url", hangar.url, "--token", "-", "--profile", "ci",
              input=hangar.token + "\n", HANGAR_TOKEN="")  # fmt: skip
    assert stat.S_IMODE(hangar.config.stat().st_mode) == 0o600
    text = hangar.config.read_text()
    assert '[profiles."ci"]' in text and 'default = "default"' in text
    assert hangar.json("compute", "list", "--profile", "ci", HANGAR_URL="", HANGAR_TOKEN="") == []
    line = one_line_error(hangar("compute", "list", "--profile", "nope", HANGAR_URL=""))
    assert "no profile 'nope'" in line

    # The environment without a profile: no workspace, so the command asks for one.
    hangar.config.unlink()
    line = one_line_error(hangar("compute", "list"), 2)
    assert "--workspace" in line
    line = one_line_error(hangar("workspace", "list", HANGAR_URL="", HANGAR_TOKEN=""))
    assert line.startswith("hangar: not logged in")


def test_refusals_are_one_line_on_stderr(hangar):
    # A bad token: refused by the server, and login writes nothing.
    bad = hangar("login", "--url", hangar.url, "--token", "hgr_00000000_nope", HANGAR_TOKEN="")
    line = one_line_error(bad)
    assert line.startswith("hangar: the server refused the token (401): ")
    assert not hangar.config.exists()
    line = one_line_error(hangar("workspace", "list", HANGAR_TOKEN="hgr_12345678_wrong"))
    assert line.startswith("hangar: the server refused the token (401): ")

    # Nothing listening.
    line = one_line_error(hangar("workspace", "list", HANGAR_URL="http://127.0.0.1:9"))
    assert line == "hangar: cannot reach http://127.0.0.1:9: connection refused"

    # Unknown compute: by name (the client looks it up), by id (the API's 404), and to
    # a job (the API's 422, in its own words).
    line = one_line_error(hangar("compute", "show", "nosuch", "-w", SLUG))
    assert "no compute named 'nosuch'" in line
    line = one_line_error(hangar("compute", "show", "99999", "-w", SLUG))
    assert line == "hangar: Not found. (404)"
    line = one_line_error(hangar("job", "submit", "-w", SLUG, "-c", "nosuch", "--", "true"))
    assert line.startswith("hangar: compute: ") and line.endswith("(422)")
    # An unknown workspace, and an invalid size.
    assert one_line_error(hangar("job", "list", "-w", "elsewhere")) == "hangar: Not found. (404)"
    made = hangar("compute", "create", "-w", SLUG, "--name", "x", "--size", "Nope", "--cluster")
    assert "vm_size" in one_line_error(made) and "(422)" in made.stderr

    # Usage errors exit 2.
    one_line_error(hangar("compute", "create", "-w", SLUG, "--name", "x", "--size", "y"), 2)
    one_line_error(hangar("job", "submit", "-w", SLUG, "-c", "x", "-e", "NOEQUALS", "--", "a"), 2)
    one_line_error(hangar("job", "list", "-w", SLUG, "--output", "xml"), 2)
    one_line_error(hangar("no-such-command"), 2)
    # The token never shows, whatever went wrong.
    for args in (("workspace", "list"), ("job", "show", "1", "-w", SLUG)):
        done = hangar(*args, HANGAR_URL="http://127.0.0.1:9")
        assert hangar.token not in done.stdout + done.stderr


def wait_for_status(hangar: Hangar, job_id: int, statuses: tuple[str, ...]) -> dict:
    deadline = time.monotonic() + 60
    while True:
        job = hangar.json("job", "show", str(job_id), "-w", SLUG)
        if job["status"] in statuses or time.monotonic() > deadline:
            return job
        time.sleep(0.5)


def test_a_cluster_runs_code_folder_jobs_to_their_exit_codes(hangar, nodes, tmp_path, monkeypatch):
    # The server ends each follow stream after 0.3 s with a `timeout` event (an hour in
    # production): following a job then means reconnecting from the offset, many times.
    monkeypatch.setattr(jobs_api, "FOLLOW_LIMIT_SECONDS", 0.3)
    made = hangar.json(
        "compute", "create", "-w", SLUG, "--name", "trainers", "--size", "Standard_DS3_v2",
        "--cluster", "--min", "0", "--max", "2", "--wait",
    )  # fmt: skip
    assert (made["kind"], made["state"], made["max_nodes"]) == ("cluster", "steady", 2)
    table = hangar.ok("compute", "list", "-w", SLUG).stdout
    assert "trainers" in table and "steady" in table

    code = tmp_path / "project"
    (code / "data").mkdir(parents=True)
    (code / ".gitignore").write_text("secret.txt\ndata/\n")
    (code / "secret.txt").write_text("never uploaded\n")
    (code / "data" / "big.csv").write_text("1,2\n")
    (code / "train.sh").write_text(
        'test ! -e secret.txt || { echo "secret.txt was uploaded"; exit 9; }\n'
        "test ! -e data || exit 8\n"
        'for i in 1 2 3; do echo "epoch $i of $RUN"; sleep "${PAUSE:-0.2}"; done\n'
        'exit "${CODE:-0}"\n'
    )

    # An exit-0 job: `job logs -f` prints its output to the end, `job wait` exits 0.
    job = hangar.json(
        "job", "submit", "-w", SLUG, "-c", "trainers", "--code", str(code),
        "--env", "RUN=first", "-e", "PAUSE=1", "--name", "first", "--", "sh train.sh",
    )  # fmt: skip
    assert (job["status"], job["code"], job["name"]) == ("queued", "project.zip", "first")
    logs = hangar.ok("job", "logs", "-f", str(job["id"]), "-w", SLUG)
    # Every line once, in order, across the reconnections.
    assert logs.stdout == "epoch 1 of first\nepoch 2 of first\nepoch 3 of first\n"
    waited = hangar("job", "wait", str(job["id"]), "-w", SLUG)
    assert waited.returncode == 0 and f"job {job['id']} completed" in waited.stdout
    assert hangar.ok("job", "logs", str(job["id"]), "-w", SLUG).stdout == logs.stdout

    # From a terminal, the upload shows a progress bar (on stderr; stdout stays JSON).
    done, shown = hangar.on_a_terminal(
        "job", "submit", "-w", SLUG, "-c", "trainers", "--code", str(code), "-o", "json",
        "--", "sh train.sh",
    )  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in shown, shown
    assert "uploading" in shown and "bytes" in shown
    quick = json.loads(done.stdout)
    assert hangar("job", "wait", str(quick["id"]), "-w", SLUG).returncode == 0

    # An exit-3 job, submitted with --follow: its output, then the job's exit code.
    followed = hangar(
        "job", "submit", "-w", SLUG, "-c", "trainers", "--code", str(code),
        "-e", "RUN=second", "--secret-env", "CODE=3", "--follow", "--", "sh", "train.sh",
    )  # fmt: skip
    assert followed.returncode == 3, followed.stderr
    assert followed.stdout == "epoch 1 of second\nepoch 2 of second\nepoch 3 of second\n"
    assert "failed (exit code 3)" in followed.stderr
    second = hangar.json("job", "list", "-w", SLUG, "--status", "failed")
    assert [j["exit_code"] for j in second] == [3]
    waited = hangar("job", "wait", str(second[0]["id"]), "-w", SLUG, "-o", "json")
    assert waited.returncode == 3
    assert json.loads(waited.stdout) == {
        "status": "failed",
        "exit_code": 3,
        "error": "Rank 0 exited with code 3.",
    }

    # A long job, canceled while it runs: `job wait` exits 130.
    long = hangar.json("job", "submit", "-w", SLUG, "-c", "trainers", "--", "sleep 300")
    assert wait_for_status(hangar, long["id"], ("running",))["status"] == "running"
    canceled = hangar.json("job", "cancel", str(long["id"]), "-w", SLUG)
    assert canceled["cancel_requested_at"]
    waited = hangar("job", "wait", str(long["id"]), "-w", SLUG, timeout=90)
    assert waited.returncode == 130, (waited.stdout, waited.stderr)

    # Every list as JSON: nothing else on stdout.
    jobs = hangar.json("job", "list", "-w", SLUG)
    assert [j["status"] for j in jobs] == ["canceled", "failed", "completed", "completed"]
    assert [c["name"] for c in hangar.json("compute", "list", "-w", SLUG)] == ["trainers"]
    shown = hangar.json("compute", "show", "trainers", "-w", SLUG)
    resized = hangar.json("compute", "resize", "trainers", "-w", SLUG, "--max", "3")
    assert (resized["id"], resized["max_nodes"], resized["min_nodes"]) == (shown["id"], 3, 0)

    # The same from Python, as a notebook would: submit, follow, wait.
    client = Client(hangar.url, hangar.token)
    job = client.submit(SLUG, "trainers", "echo hi from python; exit 4", env={"A": "1"})
    follow = client.follow(SLUG, job["id"])
    assert "".join(follow) == "hi from python\n"
    assert follow.end == {"status": "failed", "exit_code": 4, "error": "Rank 0 exited with code 4."}
    assert client.wait(SLUG, job["id"]) == follow.end
    with pytest.raises(ApiError) as refused:
        client.submit(SLUG, "nosuch", "true")
    assert refused.value.status == 422 and list(refused.value.errors) == ["compute"]
    assert hangar.token not in str(refused.value) + repr(refused.value) + repr(client)
    client.close()

    # Delete asks first; --yes does not.
    refused = hangar("compute", "delete", "trainers", "-w", SLUG, input="n\n")
    assert refused.returncode == 1 and "not deleted" in refused.stderr
    deleted = hangar.json("compute", "delete", "trainers", "-w", SLUG, "--yes", "--wait")
    assert deleted["state"] == "deleted"


def test_quota_is_shown_asked_about_and_requested(hangar):
    """`hangar quota show|what-if|request` against the live server (no worker needed)."""
    shown = hangar.json("quota", "show", "-w", SLUG)
    assert {"families", "low_priority_limit", "low_priority_used"} <= set(shown)
    fits = hangar("quota", "what-if", "-w", SLUG, "--size", "Standard_DS3_v2", "--count", "1")
    assert fits.returncode == 0 and fits.stdout.startswith("Uses 4 of your")
    short = hangar("quota", "what-if", "-w", SLUG, "--size", "Standard_DS3_v2", "--count", "9000")
    assert short.returncode == 1 and short.stdout.startswith("Short ")
    made = hangar.ok("quota", "request", "-w", SLUG, "--cores", "5000", "--why", "a week of sweeps")
    assert (
        made.stdout.strip() == "Requested 5000 cores for the low-priority pool; site staff decide."
    )
    refused = hangar("quota", "request", "-w", SLUG, "--cores", "5000", "--why", " ")
    assert "justification" in one_line_error(refused) and "(422)" in refused.stderr
