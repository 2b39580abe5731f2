"""A Unix-socket relay in front of the real Docker engine, which a test can cut and restore:
"the engine is unreachable" without stopping the engine other tests use."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

ENGINE = "/var/run/docker.sock"


class DockerRelay:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.listener: socket.socket | None = None
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> None:
        self.path.unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        self.listener.listen(64)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def stop(self) -> None:
        if self.listener:
            self.listener.close()
            self.listener = None
        with self.lock:
            for connection in self.connections:
                connection.close()
            self.connections.clear()
        self.path.unlink(missing_ok=True)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(ENGINE)
            with self.lock:
                self.connections += [client, engine]
            for source, target in ((client, engine), (engine, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def exists() -> bool:
    return os.path.exists(ENGINE)
