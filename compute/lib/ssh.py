"""SSH to attached computes with paramiko: connect with a pinned host key, authenticate,
run commands, copy code. Knows nothing of Django models: it is handed an `Endpoint`.

Connections are kept per worker process (one per endpoint) so a job's many small steps
(start, look, collect) cost a round trip each, not a handshake each.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import socket
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

import paramiko

from compute.drivers.base import DriverUnavailable
from compute.rules import netpolicy

# paramiko logs failed handshakes and auth at length; our messages say what matters.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 60.0


class SSHError(DriverUnavailable):
    """The target cannot be reached or refused us; the message says why, for users.
    Like any unavailable driver, work waits and is retried: a running job goes on there."""


class HostKeyChanged(SSHError):
    pass


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    username: str
    private_key: str = ""  # plaintext, only ever in memory
    password: str = ""
    pinned_host_key: str = ""  # "ssh-ed25519 AAAA…"; empty: trust on first use

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def cache_key(self) -> str:
        material = "\0".join(
            (self.host, str(self.port), self.username, self.private_key, self.password)
        )
        return hashlib.sha256(material.encode()).hexdigest() + self.pinned_host_key

    def __repr__(self) -> str:  # never print the secrets
        return f"Endpoint({self.username}@{self.where})"


def fingerprint(host_key: str) -> str:
    """OpenSSH's SHA256 fingerprint of "type base64" (what `ssh-keygen -lf` shows)."""
    blob = base64.b64decode(host_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


KEY_TYPES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


def parse_private_key(text: str) -> paramiko.PKey:
    """A private key from its text, or ValueError saying what is wrong with it."""
    text = text.strip() + "\n"
    for key_type in KEY_TYPES:
        try:
            return key_type.from_private_key(io.StringIO(text))
        except paramiko.PasswordRequiredException:
            raise ValueError(
                "This key is protected by a passphrase. Give Hangar a key of its own without "
                "one (ssh-keygen -t ed25519 -N '')."
            ) from None
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            continue
    raise ValueError(
        "This is not a private key Hangar can read: paste the whole OpenSSH or PEM private "
        "key (ed25519, ECDSA or RSA), from -----BEGIN to -----END."
    )


def open_socket(endpoint: Endpoint) -> socket.socket:
    """A TCP connection to the first of the host's addresses that answers, after every
    address was checked against HANGAR_ATTACH_DENY_NETWORKS: the addresses connected to
    are the ones checked (no second lookup between the check and the connect)."""
    try:
        addresses = netpolicy.check_host(endpoint.host, endpoint.port)
    except netpolicy.AddressDenied as exc:
        raise SSHError(f"refused to connect: {exc}") from None
    error: OSError = socket.gaierror(socket.EAI_NONAME, "no address")
    for address in addresses:
        try:
            return socket.create_connection((address, endpoint.port), timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            error = exc
    raise error


def connect(endpoint: Endpoint) -> tuple[paramiko.Transport, str]:
    """A fresh authenticated connection, and the host key the server offered."""
    try:
        sock = open_socket(endpoint)
    except ConnectionRefusedError:
        raise SSHError(
            f"connection refused on {endpoint.where}: is an SSH server listening there?"
        ) from None
    except TimeoutError:
        raise SSHError(f"no answer from {endpoint.where} within {CONNECT_TIMEOUT:.0f} s") from None
    except socket.gaierror:
        raise SSHError(f"cannot resolve the host name {endpoint.host}") from None
    except OSError as exc:
        raise SSHError(f"cannot connect to {endpoint.where}: {exc.strerror or exc}") from None
    # Commands are a few small packets each way: without this, Nagle's algorithm meets the
    # server's delayed ACK and every command waits ~40 ms per packet (140 ms measured).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    try:
        try:
            transport.start_client(timeout=CONNECT_TIMEOUT)
        except (paramiko.SSHException, EOFError, OSError):
            raise SSHError(f"{endpoint.where} did not complete an SSH handshake") from None
        offered = transport.get_remote_server_key()
        seen = f"{offered.get_name()} {offered.get_base64()}"
        if endpoint.pinned_host_key and endpoint.pinned_host_key != seen:
            raise HostKeyChanged(
                f"host key changed on {endpoint.where}: pinned "
                f"{fingerprint(endpoint.pinned_host_key)}, now offered {fingerprint(seen)}. "
                "Refused: if the machine was rebuilt, forget the pinned key on the edit page."
            )
        authenticate(transport, endpoint)
    except BaseException:
        transport.close()
        raise
    return transport, seen


def authenticate(transport: paramiko.Transport, endpoint: Endpoint) -> None:
    failed = f"authentication failed for user {endpoint.username} on {endpoint.where}"
    try:
        if endpoint.private_key:
            transport.auth_publickey(endpoint.username, parse_private_key(endpoint.private_key))
        else:
            transport.auth_password(endpoint.username, endpoint.password)
    except paramiko.AuthenticationException:
        raise SSHError(failed) from None
    except (paramiko.SSHException, EOFError, OSError):
        raise SSHError(f"{failed} (the server closed the connection)") from None
    if not transport.is_authenticated():
        raise SSHError(failed)


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")


_pool: dict[str, paramiko.Transport] = {}
_pool_lock = threading.Lock()


def transport_for(endpoint: Endpoint) -> paramiko.Transport:
    """This process's connection to the endpoint, opened on first use or after a drop."""
    with _pool_lock:
        transport = _pool.get(endpoint.cache_key)
        if transport is not None and transport.is_active():
            return transport
        transport, _ = connect(endpoint)
        transport.set_keepalive(15)
        _pool[endpoint.cache_key] = transport
        return transport


def forget(endpoint: Endpoint) -> None:
    with _pool_lock:
        transport = _pool.pop(endpoint.cache_key, None)
    if transport is not None:
        transport.close()


def open_command(endpoint: Endpoint, command: str, timeout: float = COMMAND_TIMEOUT):
    """Start a shell command on the target and hand back its channel (stdin still open);
    one reconnect if the kept connection had dropped."""
    for attempt in (1, 2):
        transport = transport_for(endpoint)
        try:
            channel = transport.open_session(timeout=timeout)
            channel.settimeout(timeout)
            channel.exec_command(command)
            return channel
        except (paramiko.SSHException, EOFError, OSError) as exc:
            forget(endpoint)
            if attempt == 2:
                raise SSHError(f"lost the connection to {endpoint.where}: {exc}") from None
    raise AssertionError("unreachable")


def send_input(channel, endpoint: Endpoint, data: bytes) -> None:
    """All of a started command's stdin, then its end (the command may read to it)."""
    try:
        channel.sendall(data)
        channel.shutdown_write()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        channel.close()
        forget(endpoint)
        raise SSHError(f"lost the connection to {endpoint.where}: {exc}") from None


def read_line(channel, limit: int = 4096) -> bytes:
    """One line of stdout (without its newline); b"" at the end of the output."""
    line = bytearray()
    while not line.endswith(b"\n") and len(line) < limit:
        byte = channel.recv(1)
        if not byte:
            break
        line += byte
    return bytes(line).rstrip(b"\n")


def finish(channel, endpoint: Endpoint, stdin: bytes = b"") -> Result:
    """Send stdin, read a started command to its end, close its channel."""
    try:
        if stdin:
            channel.sendall(stdin)
        channel.shutdown_write()
        stdout, stderr = bytearray(), bytearray()
        while chunk := channel.recv(65536):
            stdout += chunk
        while chunk := channel.recv_stderr(65536):  # buffered meanwhile: drain it too
            stderr += chunk
        return Result(channel.recv_exit_status(), bytes(stdout), bytes(stderr))
    except TimeoutError:
        raise SSHError(f"a command on {endpoint.where} did not finish in time") from None
    except (paramiko.SSHException, EOFError, OSError) as exc:
        forget(endpoint)
        raise SSHError(f"lost the connection to {endpoint.where}: {exc}") from None
    finally:
        close_quietly(channel)


def close_quietly(channel) -> None:
    """Close a channel whose connection may be gone already (a detach closes it under a
    watcher's feet): closing it then raises, and nothing is left to close anyway."""
    try:
        channel.close()
    except (paramiko.SSHException, EOFError, OSError):
        pass


def run(
    endpoint: Endpoint, command: str, stdin: bytes = b"", timeout: float = COMMAND_TIMEOUT
) -> Result:
    """Run a shell command on the target to its end."""
    return finish(open_command(endpoint, command, timeout), endpoint, stdin)


def run_on(transport: paramiko.Transport, endpoint: Endpoint, command: str) -> Result:
    """Run a command on a connection of the caller's own (validation uses a fresh one)."""
    channel = transport.open_session(timeout=CONNECT_TIMEOUT)
    channel.settimeout(COMMAND_TIMEOUT)
    channel.exec_command(command)
    return finish(channel, endpoint)


def upload_tree(endpoint: Endpoint, local: Path, remote: str) -> None:
    """Copy a folder (a job's code snapshot) into `remote` (a shell word, quoted by the
    caller) as a tar stream on a command's stdin: one round trip, and no need for the
    server to offer SFTP. Writable by the owner over there, so it can be cleaned up."""

    def owner_writable(member: tarfile.TarInfo) -> tarfile.TarInfo:
        executable = member.isdir() or member.mode & 0o111
        member.mode = 0o755 if executable else 0o644
        member.uid = member.gid = 0
        member.uname = member.gname = ""
        return member

    channel = open_command(endpoint, f"mkdir -p {remote} && tar -xf - -C {remote}")
    try:
        stream = channel.makefile("wb")
        with tarfile.open(fileobj=stream, mode="w|") as archive:
            archive.add(str(local), arcname=".", filter=owner_writable)
        stream.close()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        channel.close()
        forget(endpoint)
        raise SSHError(f"lost the connection to {endpoint.where}: {exc}") from None
    result = finish(channel, endpoint)
    if result.exit_code != 0:
        why = result.stderr.decode(errors="replace").strip() or f"exit {result.exit_code}"
        raise SSHError(f"could not copy the job's code to {endpoint.where}: {why}")


# Facts: one line each, key=value; gpu= once per GPU (nvidia-smi only where present).
FACTS_SCRIPT = r"""
echo "cpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
echo "memory_kb=$(awk '/^MemTotal/ {print $2}' /proc/meminfo 2>/dev/null)"
if [ -r /etc/os-release ]; then . /etc/os-release; fi
echo "os=${PRETTY_NAME:-$(uname -s)}"
echo "kernel=$(uname -r)"
echo "python=$( (python3 --version || python --version) 2>&1 | head -n 1)"
if command -v nvidia-smi > /dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu=/'
fi
"""


def parse_facts(text: str) -> dict:
    facts: dict = {"gpus": []}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if key == "gpu":
            facts["gpus"].append(value)
        elif key in ("cpus", "memory_kb"):
            facts[key] = int(value) if value.isdigit() else None
        elif key in ("os", "kernel", "python"):
            python_missing = key == "python" and "not found" in value
            facts[key] = "not installed" if python_missing else value
    if facts.get("memory_kb"):
        facts["memory_gib"] = round(facts["memory_kb"] / 1024**2, 1)
    return facts
