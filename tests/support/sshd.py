"""A real OpenSSH server (Debian's openssh-server) on 127.0.0.1, for tests and the bench:
a free port, a throwaway host key and user key, the current user allowed by key only."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def all_pids() -> list[int]:
    return [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def keygen(path: Path) -> None:
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hangar-test", "-f", str(path)],
        check=True,
    )


class SSHServer:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hangar-sshd-"))
        self.port = free_port()
        self.user = getpass.getuser()
        self.host_key = self.dir / "host_key"
        self.user_key = self.dir / "user_key"
        self.other_key = self.dir / "other_key"  # a valid key the server does not accept
        keygen(self.host_key)
        keygen(self.user_key)
        keygen(self.other_key)
        shutil.copy(f"{self.user_key}.pub", self.dir / "authorized_keys")
        self.config = self.dir / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.host_key}\n"
            f"PidFile {self.dir}/sshd.pid\n"
            f"AuthorizedKeysFile {self.dir}/authorized_keys\n"
            "StrictModes no\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            "UsePAM no\n"
            f"AllowUsers {self.user}\n"
            "MaxSessions 200\n"
            "MaxStartups 200:30:400\n"
            "LogLevel ERROR\n"
        )
        self.process: subprocess.Popen | None = None

    @property
    def private_key(self) -> str:
        return self.user_key.read_text()

    @property
    def host_public_key(self) -> str:
        """ "type base64", as Hangar pins it."""
        return " ".join(Path(f"{self.host_key}.pub").read_text().split()[:2])

    def start(self) -> SSHServer:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "sshd.log", "a"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.dir / 'sshd.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("sshd did not answer within 10 s")

    def stop(self, sessions: bool = False) -> None:
        """Stop listening; with sessions=True also end every open connection (as if the
        machine went away), which plain sshd leaves running."""
        if self.process and self.process.poll() is None:
            if sessions:
                self.end_connections()
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def end_connections(self) -> None:
        """KILL the connection processes of this sshd: its own children, by pid, nobody
        else's. Each pid is pinned with a pidfd and checked to be this server's child
        after, so a pid reused meanwhile is never signalled."""
        assert self.process is not None
        server = self.process.pid
        for pid in [pid for pid in all_pids() if parent_of(pid) == server]:
            try:
                pinned = os.pidfd_open(pid)
            except OSError:
                continue  # already gone
            try:
                if parent_of(pid) == server:
                    signal.pidfd_send_signal(pinned, signal.SIGKILL)
            except ProcessLookupError:
                pass
            finally:
                os.close(pinned)

    def new_host_key(self) -> None:
        """The machine was rebuilt (or someone is in the middle): same address, new key."""
        self.stop()
        keygen(self.host_key)
        self.start()

    def connection(self, **overrides):
        """How Hangar signs in here: this user, the accepted key (fields may be overridden)."""
        from compute.actions.attached import Connection

        values = {
            "host": "127.0.0.1",
            "port": self.port,
            "username": self.user,
            "secret_kind": "key",
            "secret": self.private_key,
            **overrides,
        }
        return Connection(**values)

    def ssh_command(self, command: str) -> list[str]:
        """The same command through the `ssh` client: the floor the bench compares with."""
        return [
            "ssh",
            "-q",
            "-i",
            str(self.user_key),
            "-p",
            str(self.port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            f"{self.user}@127.0.0.1",
            command,
        ]

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
