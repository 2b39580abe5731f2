"""Node images built on this machine, without any registry.

- tiny: a static busybox in an empty image (FROM scratch, in spirit): built in a second,
  used by the tests and wherever nodes need no Python.
- default: a minimal Debian with Python 3, made by mmdebstrap from Debian's packages and
  handed to `docker import`.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import docker

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
DEBIAN_SUITE = "bookworm"


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
