"""uvicorn's httptools protocol, with each answer sent in one write.

uvicorn writes an answer's head and its body separately: two sends on the caller's TCP
connection, two wake-ups of the caller, for every scoring request. On loopback a send is
most of the gateway's time per request (a profile of `bench inference` put the two at
55 % of it), so the gateway hands uvicorn a transport that gathers what is written in one
turn of the event loop and sends it at the end of that turn. Selected with uvicorn's own
option: `uvicorn --http compute.inference.gateway.protocol:OneSendPerAnswer`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class OneSendPerAnswer(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(GatheringTransport(transport))  # type: ignore[arg-type]


class GatheringTransport:
    """Writes gathered until the end of the loop's turn, then sent as one; everything else
    is the real transport's. Closing sends what is gathered first, as a transport's close
    sends what it buffered."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.gathered: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self.gathered:
            asyncio.get_running_loop().call_soon(self.send)
        self.gathered.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def send(self) -> None:
        if self.gathered:
            data = b"".join(self.gathered)
            self.gathered.clear()
            if not self.transport.is_closing():
                self.transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + sum(map(len, self.gathered))

    def close(self) -> None:
        self.send()
        self.transport.close()

    def write_eof(self) -> None:
        self.send()
        self.transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
