"""scripts/lib.sh, the steps `make run` and `make test` share (issue 15): the Docker engine
and the node image. Each test sources lib.sh in bash and replaces what it must not do for
real (install packages, start a second engine, build an image) with stand-ins on PATH or
shell functions; the machine's own dockerd is only ever asked whether it answers."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "scripts" / "lib.sh"


# What the tests' stand-ins replace, kept off PATH even when this machine has it installed
# (`make test` installs mmdebstrap for the environment builds).
HIDDEN = {"mmdebstrap"}


def system_bin_without_stand_ins(folder: Path) -> Path:
    """/usr/bin and /bin as links in `folder`, except the programs the stand-ins replace."""
    folder.mkdir(exist_ok=True)
    for directory in ("/usr/bin", "/bin"):
        for entry in os.scandir(directory):
            link = folder / entry.name
            if entry.name not in HIDDEN and not link.exists():
                link.symlink_to(entry.path)
    return folder


def bash(script: str, path_first: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ}
    if path_first is not None:
        system = system_bin_without_stand_ins(path_first.parent / "system-bin")
        env["PATH"] = f"{path_first}:{system}"
    return subprocess.run(
        ["bash", "-c", f'source "{LIB}"\n{script}'],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def test_ensure_dockerd_does_nothing_when_an_engine_answers():
    if subprocess.run(["docker", "version"], capture_output=True, check=False).returncode:
        pytest.skip("no Docker engine answers on this machine")
    result = bash("ensure_dockerd && echo rc=0")
    assert result.stdout == "rc=0\n" and result.stderr == "", result


def test_ensure_dockerd_starts_one_in_a_session_of_its_own_as_root(tmp_path):
    """No engine answers: dockerd (a stand-in here) starts without bridge or iptables, in
    its own session, so a Ctrl-C of `make run` does not reach it."""
    started = tmp_path / "started"
    stub(tmp_path, "dockerd", f'echo "$* sid=$(ps -o sid= -p $$ | tr -d " ") pid=$$" > {started}')
    result = bash(
        f'LOCAL={tmp_path}; is_root() {{ true; }}; docker_up() {{ [ -s "{started}" ]; }}\n'
        "ensure_dockerd && echo rc=0",
        path_first=tmp_path,
    )
    assert result.stdout.endswith("rc=0\n"), result
    assert "starting dockerd" in result.stdout
    found = re.fullmatch(r"(.*) sid=(\d+) pid=(\d+)\n", started.read_text())
    assert found, started.read_text()
    arguments, sid, pid = found.groups()
    assert arguments == "--bridge=none --iptables=false --ip6tables=false"
    assert sid == pid  # a session leader: setsid


def test_ensure_dockerd_without_root_says_why_and_returns_1(tmp_path):
    """make run then falls back to the local driver; make test dies with the reason."""
    stub(tmp_path, "dockerd", f"touch {tmp_path / 'ran'}")
    result = bash(
        "is_root() { false; }; docker_up() { false; }\nensure_dockerd || echo rc=$?",
        path_first=tmp_path,
    )
    assert result.stdout.rstrip().endswith("rc=1"), result
    assert "only root can start dockerd" in result.stdout
    assert not (tmp_path / "ran").exists()


def node_image_run(tmp_path: Path, root: bool, debian_build_works: bool = True) -> tuple:
    """ensure_node_image with no image built: `docker` says it is missing, `python`
    records the build commands, apt_install records what it was asked and "installs"
    mmdebstrap as a stand-in on PATH."""
    log = tmp_path / "log"
    stub(tmp_path, "docker", "exit 1")  # docker image inspect: not there
    stub(tmp_path, "busybox", "exit 0")  # installed (busybox-static), as on CI
    stub(
        tmp_path,
        "python",
        f'echo "python $*" >> {log}\n'
        f'case "$*" in *--tiny*) exit 0 ;; *) exit {0 if debian_build_works else 1} ;; esac',
    )
    apt = (
        f'apt_install() {{ echo "apt_install $*" >> {log}; '
        f'[ "$1" = mmdebstrap ] && printf "#!/bin/sh\\n" > {tmp_path}/mmdebstrap '
        f"&& chmod +x {tmp_path}/mmdebstrap; true; }}"
    )
    result = bash(
        f"is_root() {{ {'true' if root else 'false'}; }}\n{apt}\nunset HANGAR_NODE_IMAGE\n"
        # Called as run.sh calls it, errexit on: a failed last resort stops there.
        'ensure_node_image; echo "rc=$? image=${HANGAR_NODE_IMAGE:-}"',
        path_first=tmp_path,
    )
    steps = log.read_text().splitlines() if log.exists() else []
    return result, steps


def no_error_line(result: subprocess.CompletedProcess) -> None:
    output = result.stdout + result.stderr
    assert not re.search(r"error|traceback", output, re.I), output


def test_as_root_mmdebstrap_is_installed_before_the_build_not_after_it_failed(tmp_path):
    result, steps = node_image_run(tmp_path, root=True)
    assert steps == ["apt_install mmdebstrap", "python manage.py build_node_image --if-missing"]
    assert result.stdout.endswith("rc=0 image=\n"), result  # the default image, built
    no_error_line(result)


def test_without_root_or_mmdebstrap_the_busybox_image_is_used_and_said(tmp_path):
    result, steps = node_image_run(tmp_path, root=False)
    assert steps == ["python manage.py build_node_image --tiny --if-missing"]
    assert "mmdebstrap is not installed" in result.stdout
    assert result.stdout.endswith("rc=0 image=hangar/node-tiny:v2\n"), result
    no_error_line(result)


def test_a_failed_debian_build_falls_back_to_the_busybox_image(tmp_path):
    result, steps = node_image_run(tmp_path, root=True, debian_build_works=False)
    assert steps == [
        "apt_install mmdebstrap",
        "python manage.py build_node_image --if-missing",
        "python manage.py build_node_image --tiny --if-missing",
    ]
    assert "did not build" in result.stdout
    assert result.stdout.endswith("rc=0 image=hangar/node-tiny:v2\n"), result
