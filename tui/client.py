"""The TUI's side of the engine socket: connect (starting a detached engine if none runs),
send requests, and read events. Plain asyncio; no model library is imported here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from engine.protocol import MAX_LINE, decode, encode, socket_path


class EngineUnavailable(RuntimeError):
    """No engine could be reached or started."""


class EngineClient:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or socket_path()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.started_engine = False

    @property
    def connected(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    async def connect(self, *, start: bool = True, timeout: float = 20.0) -> None:
        """Attach to the running engine, or start one (detached) and attach to it."""
        try:
            await self._open()
            return
        except OSError:
            if not start:
                raise EngineUnavailable(f"no engine is running on {self.path}") from None
        from engine.server import spawn_engine  # plain subprocess: no model library

        spawn_engine(self.path)
        self.started_engine = True
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            await asyncio.sleep(0.1)
            try:
                await self._open()
                return
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    log = self.path.with_name("engine.log")
                    raise EngineUnavailable(f"the engine did not start within {timeout:g} s (see {log})") from None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_unix_connection(str(self.path), limit=MAX_LINE)

    async def send(self, kind: str, **fields: Any) -> None:
        if not self.connected:
            raise EngineUnavailable("not connected to the engine")
        self.writer.write(encode(kind, **fields))
        await self.writer.drain()

    async def receive(self) -> dict[str, Any] | None:
        """The next message, or None once the engine has closed the connection."""
        if self.reader is None:
            return None
        try:
            line = await self.reader.readline()
        except (ConnectionError, ValueError):
            line = b""
        if not line:
            self.reader = None
            return None
        return decode(line)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Messages from the engine until it closes the connection."""
        while (message := await self.receive()) is not None:
            yield message

    async def hello(self, timeout: float = 5.0) -> dict[str, Any]:
        """Greet the engine and return its state snapshot (events sent before it are stale)."""
        await self.send("hello")
        try:
            return await asyncio.wait_for(self._state(), timeout)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            raise EngineUnavailable(f"the engine did not answer within {timeout:g} s") from None

    async def _state(self) -> dict[str, Any]:
        while (message := await self.receive()) is not None:
            if message["type"] == "state":
                return message
        raise EngineUnavailable("the engine closed the connection before saying hello")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None
