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
TINY_IMAGE = "hangar/node-tiny:latest"
DEFAULT_IMAGE = "hangar/node:latest"
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
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/work:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
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


def build_default(client: docker.DockerClient, tag: str = DEFAULT_IMAGE) -> str:
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError("mmdebstrap is missing: apt-get install mmdebstrap")
    with tempfile.TemporaryDirectory() as workdir:
        rootfs = Path(workdir) / "rootfs.tar"
        result = subprocess.run(
            [
                "mmdebstrap", "--variant=minbase", "--include=python3,ca-certificates",
                "--quiet", "--format=tar", DEBIAN_SUITE, str(rootfs),
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ImageBuildError(f"mmdebstrap failed: {result.stderr.strip()[-2000:]}")
        return import_rootfs(client, rootfs, tag)
