"""The app's link to the engine: attach to a running one, follow its events, send it requests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tui.client import EngineClient, EngineUnavailable
from tui.events import EngineGone

if TYPE_CHECKING:
    from textual.worker import Worker

    from tui.app import DriftwaveApp


class EngineLink:
    """The engine's messages go to ``app.on_engine_message``, its going to the app as ``EngineGone``;
    a request no engine takes is a warning."""

    def __init__(self, app: DriftwaveApp, client: EngineClient) -> None:
        self.app, self.client = app, client
        self._follower: Worker | None = None

    async def attach(self) -> dict | None:
        """The snapshot of an engine that runs already (none is started); None when none runs."""
        try:
            await self.client.connect(start=False)
            return await self.client.hello(timeout=2.0)
        except (EngineUnavailable, OSError):
            await self.client.close()
            return None

    def follow(self) -> None:
        """Follow the engine in a worker, unless one does already (it may be starting an engine)."""
        if self._follower is None or self._follower.is_finished:
            self._follower = self.app.run_worker(self._follow(), exclusive=True, group="engine", exit_on_error=False)

    async def _follow(self) -> None:
        """Connect (starting an engine if none runs, unless connected) and pass its messages on
        until it goes."""
        try:
            if not self.client.connected:
                await self.client.connect()
                self.app.on_engine_message(await self.client.hello())
        except (EngineUnavailable, OSError) as error:
            await self.client.close()
            self._gone(str(error))
            return
        try:
            async for message in self.client.events():
                self.app.on_engine_message(message)
        finally:
            await self.client.close()  # whatever ends the loop (the app exiting too) lets the socket go
        self._gone("the engine closed the connection (it stopped or crashed); your edits are kept")

    def _gone(self, reason: str) -> None:
        if self.app.is_running:
            self.app.post_message(EngineGone(reason))

    async def request(self, kind: str, **fields) -> bool:
        """Send a request; False (and a warning) when no engine takes it."""
        if not self.client.connected:
            self.app.notify("not connected to the engine", severity="warning")
            return False
        try:
            await self.client.send(kind, **fields)
        except (EngineUnavailable, OSError) as error:  # it died just now: the follower says so
            self.app.notify(f"the engine did not take the {kind} request ({error})", severity="warning")
            return False
        return True
