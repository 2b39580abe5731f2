"""Extra Docker engines on this machine, as node hosts for tests and benchmarks: each a
`dockerd` of its own (its own socket, data root, exec root and pidfile; no bridge, no
iptables, so it touches none of this machine's networking), stopped and wiped after."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
from django.conf import settings

from compute.drivers.base import LABEL_SITE


@dataclass
class Engine:
    name: str
    root: Path
    process: subprocess.Popen | None = None
    # tcp:// on 127.0.0.1 with TLS both ways (make_tls): its port; 0 for a unix socket.
    tls_port: int = 0

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        if self.tls_port:
            return f"tcp://127.0.0.1:{self.tls_port}"
        return f"unix://{self.socket}"

    def pem(self, name: str) -> str:
        return (self.root / "tls" / f"{name}.pem").read_text()

    def client(self) -> docker.DockerClient:
        if self.tls_port:
            tls = docker.tls.TLSConfig(
                client_cert=(str(self.root / "tls/cert.pem"), str(self.root / "tls/key.pem")),
                ca_cert=str(self.root / "tls/ca.pem"),
                verify=True,
            )
            from compute.drivers.docker import tls_client

            return tls_client(self.url, 30, tls)
        return docker.DockerClient(base_url=self.url, timeout=30)

    def start(self) -> Engine:
        data = Path("/var/lib") / f"hangar-test-engine-{self.root.name}"
        log = open(self.root / "dockerd.log", "ab")
        listen = ["-H", self.url]
        if self.tls_port:
            tls = self.root / "tls"
            listen += [
                "--tlsverify", "--tlscacert", str(tls / "ca.pem"),
                "--tlscert", str(tls / "server-cert.pem"), "--tlskey", str(tls / "server-key.pem"),
            ]  # fmt: skip
        self.process = subprocess.Popen(
            [
                "dockerd",
                *listen,
                "--data-root",
                str(data),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "docker.pid"),
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client().ping()
                return self
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    said = (self.root / "dockerd.log").read_text()[-2000:]
                    self.stop()  # an engine that did not answer is not left running
                    raise RuntimeError(f"dockerd {self.name} did not start: {said}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        """The engine gone (as a machine that went away): its containers die with it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def site_containers(self) -> list:
        site = settings.HANGAR_SITE
        # sparse: as listed, not each inspected after (one removed meanwhile is a 404).
        return self.client().containers.list(
            all=True, sparse=True, filters={"label": f"{LABEL_SITE}={site}"}
        )

    def wipe(self) -> None:
        """Every container of the test site removed, the engine stopped, its files gone."""
        if self.process is not None and self.process.poll() is None:
            for container in self.site_containers():
                container.remove(force=True, v=True)
        self.stop()
        data = Path("/var/lib") / f"hangar-test-engine-{self.root.name}"
        # dockerd mounts its data root on itself; one that did not stop cleanly leaves it.
        subprocess.run(["umount", "-R", str(data)], capture_output=True, check=False)
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)


def make_tls(folder: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl."""
    folder.mkdir(mode=0o700)

    def run(*arguments: str) -> None:
        subprocess.run(["openssl", *arguments], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=hangar-test-ca", "-keyout", "ca-key.pem", "-out", "ca.pem")  # fmt: skip
    for name, usage in (("server", "serverAuth"), ("client", "clientAuth")):
        san = "subjectAltName=IP:127.0.0.1\n" if name == "server" else ""
        (folder / f"{name}.ext").write_text(f"extendedKeyUsage={usage}\n{san}")
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}-key.pem", "-out", f"{name}.csr")  # fmt: skip
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
            "-out", f"{name}-cert.pem")  # fmt: skip
    (folder / "cert.pem").write_text((folder / "client-cert.pem").read_text())
    (folder / "key.pem").write_text((folder / "client-key.pem").read_text())


def start_tls_engine(name: str) -> Engine:
    """An engine that answers only TLS clients holding a certificate of its CA."""
    from tests.support.gateway import free_port

    root = Path(tempfile.mkdtemp(prefix=f"hangar-engine-{name}-", dir="/run"))
    try:
        make_tls(root / "tls")
        return Engine(name, root, tls_port=free_port()).start()
    except BaseException:
        Engine(name, root).wipe()
        raise


def start_engines(count: int) -> list[Engine]:
    engines = []
    try:
        for index in range(count):
            root = Path(tempfile.mkdtemp(prefix=f"hangar-engine-{index}-", dir="/run"))
            engines.append(Engine(f"host-{chr(ord('a') + index)}", root).start())
    except BaseException:
        for engine in engines:
            engine.wipe()
        raise
    return engines


def copy_image(image: str, to: Engine) -> None:
    """An image of this machine's engine loaded into `to` (save → load, no registry)."""
    to.client().api.load_image(docker.from_env().api.get_image(image))
