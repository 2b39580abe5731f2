"""Where a serving replica's socket appears on this machine: the gateway's only way to a
replica (nodes stay off the network). One folder per replica container, under a folder
only Hangar may enter; the node's user makes its socket there."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from django.conf import settings

SOCKET_NAME = "replica.sock"


def sockets_root() -> Path:
    return Path(settings.HANGAR_SERVING_DIR) / "sockets"


def socket_folder(container_name: str) -> Path:
    return sockets_root() / container_name


def socket_path(container_name: str) -> Path:
    return socket_folder(container_name) / SOCKET_NAME


def prepare_socket_folder(folder: Path) -> None:
    """Made before the replica starts: its parent for Hangar alone (0700), the folder
    itself open to the node's user, who is not Hangar's (inside, only the socket)."""
    folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder.parent, 0o700)
    folder.mkdir(exist_ok=True)
    os.chmod(folder, 0o777)  # noqa: S103 (behind the 0700 parent: only the node and Hangar)


def remove_socket_folder(container_name: str) -> None:
    shutil.rmtree(socket_folder(container_name), ignore_errors=True)


class FolderHandle:
    """A socket however deep its folder: AF_UNIX paths stop at 108 bytes, and a replica's
    folder under a deep HANGAR_SERVING_DIR passes that. The folder is held open (O_PATH)
    and the socket reached as /proc/self/fd/<n>/<name>, a path of 30 bytes or so."""

    def __init__(self, socket: str | os.PathLike[str]) -> None:
        folder, self.name = os.path.split(os.fspath(socket))
        self.fd = os.open(folder or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    @property
    def path(self) -> str:
        return f"/proc/self/fd/{self.fd}/{self.name}"

    def close(self) -> None:
        os.close(self.fd)
