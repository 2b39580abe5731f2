"""Node images built on this machine, without any registry.

- tiny: a static busybox in an empty image (FROM scratch, in spirit): built in a second,
  used by the tests and wherever nodes need no Python.
- default: a minimal Debian with Python 3, made by mmdebstrap from Debian's packages and
  handed to `docker import`.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import ssl
import subprocess
import tarfile
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path

import docker

from compute.rules.environments import DEBIAN_SUITE

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
# v2: the sandbox layout (users 1000 and 1001, /work writable by both with the sticky bit).
TINY_IMAGE = "hangar/node-tiny:v2"
DEFAULT_IMAGE = "hangar/node:v2"
# The node's own process runs as 1000, every job process as 1001 (drivers/node_scripts.py).
PASSWD = (
    b"root:x:0:0:root:/root:/bin/sh\n"
    b"hangar-node:x:1000:1000::/work:/bin/sh\n"
    b"hangar-job:x:1001:1001::/tmp:/bin/sh\n"
)
GROUP = b"root:x:0:\nhangar-node:x:1000:\nhangar-job:x:1001:\n"


class ImageBuildError(Exception):
    pass


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def static_busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if (
            path.exists()
            and b"statically linked"
            in subprocess.run(["file", "-L", str(path)], capture_output=True, check=False).stdout
        ):
            return path
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        # Without `file`, trust a busybox that has no interpreter (PT_INTERP) section.
        if path.exists() and b"/lib64/ld-linux" not in path.read_bytes()[:4096]:
            return path
    raise ImageBuildError(
        "No static busybox found: install Debian's busybox-static package "
        "(apt-get install busybox-static)."
    )


def tiny_rootfs(busybox: Path) -> bytes:
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "tmp", "etc", "work"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory in ("tmp", "work") else 0o755
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        for name, text in (("etc/passwd", PASSWD), ("etc/group", GROUP)):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    return buffer.getvalue()


def import_rootfs(client: docker.DockerClient, data_path: Path, tag: str) -> str:
    repository, _, version = tag.partition(":")
    client.api.import_image_from_file(
        str(data_path),
        repository=repository,
        tag=version or "latest",
        changes=["ENV PATH=/usr/local/bin:/usr/bin:/bin", "WORKDIR /work", 'CMD ["/bin/sh"]'],
    )
    return client.images.get(tag).id


def build_tiny(client: docker.DockerClient, tag: str = TINY_IMAGE) -> str:
    with tempfile.NamedTemporaryFile(suffix=".tar") as rootfs:
        rootfs.write(tiny_rootfs(static_busybox()))
        rootfs.flush()
        return import_rootfs(client, Path(rootfs.name), tag)


# The same sandbox layout in the Debian image: the two users, and /work for both.
SANDBOX_HOOK = (
    'chroot "$1" groupadd -g 1000 hangar-node && chroot "$1" useradd -u 1000 -g 1000 -M '
    '-d /work -s /bin/sh hangar-node && chroot "$1" groupadd -g 1001 hangar-job && '
    'chroot "$1" useradd -u 1001 -g 1001 -M -d /tmp -s /bin/sh hangar-job && '
    'mkdir -p "$1/work" && chmod 1777 "$1/work"'
)


def build_default(client: docker.DockerClient, tag: str = DEFAULT_IMAGE) -> str:
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError("mmdebstrap is missing: apt-get install mmdebstrap")
    with tempfile.TemporaryDirectory() as workdir:
        rootfs = Path(workdir) / "rootfs.tar"
        result = subprocess.run(
            [
                "mmdebstrap", "--variant=minbase", "--include=python3,ca-certificates",
                "--quiet", "--format=tar", f"--customize-hook={SANDBOX_HOOK}",
                DEBIAN_SUITE, str(rootfs),
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ImageBuildError(f"mmdebstrap failed: {result.stderr.strip()[-2000:]}")
        return import_rootfs(client, rootfs, tag)


# Environments (compute/controllers/environments.py): Debian packages by mmdebstrap, then
# pip inside the new root, then `docker import`. Only names checked by
# compute/rules/environments.py reach here: the packages as one argument, the
# requirements in a file; no user text is ever part of a hook's shell command.
PIP_STEP = (
    'cp {requirements} "$1/tmp/hangar-requirements.txt" && {copy_ca}'
    'chroot "$1" env -i {environment} python3 -m pip install --no-cache-dir '
    "--break-system-packages --root-user-action=ignore --disable-pip-version-check "
    "--no-input --only-binary=:all: -r /tmp/hangar-requirements.txt && "
    'rm -f "$1/tmp/hangar-requirements.txt" "$1/tmp/hangar-ca.crt"'
)
# What pip in the new root takes from this machine: how it reaches an index (a proxy, a
# site's own mirror), set by the operator, never by a workspace member.
PIP_PASSED_ON = (
    "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy",
    "PIP_INDEX_URL", "PIP_TIMEOUT",
)  # fmt: skip


# A build is background work: at the lowest CPU and disk priority, so the worker's node
# starts and reconciles (and everything else on this machine) keep their pace while it
# unpacks hundreds of packages. Seen: a local node's start on the other core took 20 s
# beside a build at normal priority.
def background() -> list[str]:
    prefix = ["nice", "-n", "19"] if shutil.which("nice") else []
    return prefix + (["ionice", "-c", "2", "-n", "7"] if shutil.which("ionice") else [])


def host_ca_bundle() -> Path | None:
    """This machine's CA bundle: a site whose egress goes through its own TLS proxy trusts
    that proxy here, and pip in the new root (with Debian's bundle) would not."""
    cafile = ssl.get_default_verify_paths().cafile
    return Path(cafile) if cafile and Path(cafile).is_file() else None


def pip_step(requirements: Path) -> str:
    environment = [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/root",
        "LANG=C.UTF-8",
        *(f"{name}={os.environ[name]}" for name in PIP_PASSED_ON if os.environ.get(name)),
    ]
    copy_ca = ""
    bundle = host_ca_bundle()
    if bundle is not None:
        copy_ca = f'cp {shlex.quote(str(bundle))} "$1/tmp/hangar-ca.crt" && '
        environment += ["SSL_CERT_FILE=/tmp/hangar-ca.crt", "PIP_CERT=/tmp/hangar-ca.crt"]
    return PIP_STEP.format(
        requirements=shlex.quote(str(requirements)),
        copy_ca=copy_ca,
        environment=" ".join(shlex.quote(item) for item in environment),
    )


def build_environment_image(
    client: docker.DockerClient,
    tag: str,
    packages: list[str],
    pip_requirements: list[str],
    say: Callable[[str], None],
) -> tuple[str, int]:
    """Build `tag` from Debian `packages` and `pip_requirements`, telling each line of the
    build to `say`. Returns Docker's image id and its size in bytes; ImageBuildError with
    the package manager's last lines when it fails (nothing is tagged then)."""
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError("mmdebstrap is missing on the worker: apt-get install mmdebstrap")
    with tempfile.TemporaryDirectory(prefix="hangar-env-") as workdir:
        rootfs = Path(workdir) / "rootfs.tar"
        command = [
            "mmdebstrap", "--variant=minbase", f"--include={','.join(packages)}",
            "--format=tar", f"--customize-hook={SANDBOX_HOOK}",
            # No fsync per file: a quarter of the build here, and a build that dies is
            # thrown away whole anyway.
            "--dpkgopt=force-unsafe-io",
        ]  # fmt: skip
        if pip_requirements:
            requirements = Path(workdir) / "requirements.txt"
            requirements.write_text("\n".join(pip_requirements) + "\n")
            command.append(f"--customize-hook={pip_step(requirements)}")
        command += [DEBIAN_SUITE, str(rootfs)]
        say(f"$ mmdebstrap {DEBIAN_SUITE} with {len(packages)} Debian package(s)")
        last = run_telling([*background(), *command], say)
        if last is not None:
            raise ImageBuildError("\n".join(last))
        say(f"$ docker import as {tag}")
        image_id = import_rootfs(client, rootfs, tag)
    size = int(client.images.get(image_id).attrs.get("Size") or 0)
    return image_id, size


def run_telling(command: list[str], say: Callable[[str], None]) -> list[str] | None:
    """Run `command`, telling each output line as it comes. None when it succeeded, else
    the lines that say why (errors first, else the last ones)."""
    last: deque[str] = deque(maxlen=30)
    errors: list[str] = []
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.rstrip("\n")
        say(line)
        last.append(line)
        if line.startswith(("E: ", "ERROR: ")) and len(errors) < 30:
            errors.append(line)
    if process.wait() == 0:
        return None
    return errors or list(last)
