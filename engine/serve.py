"""Live mode served to a browser: the picture goes out to a page, the page's sound comes back.

One aiohttp application in its own thread, on 127.0.0.1 only (reach it from a laptop with
``ssh -L 8765:localhost:8765 host``): ``GET /`` is the page (engine/web/live.html), ``/ws`` its
WebSocket. Every request must carry the session's random token (``?token=``) and, when the
browser sends an Origin, come from this server's own; anything else gets 403 and nothing more.

Over the WebSocket the page sends JSON (``hello`` with its sample rate, ``control`` for the quick
controls, ``latency`` as it measured it) and binary audio blocks (a float64 capture time in the
page's clock, then float32 mono PCM) into a :class:`audio.live.PushedSource`; the engine sends
each new frame as one binary message (a 4-byte header length, a JSON header, a JPEG), newest
only: a viewer on a slow link skips frames, nothing queues. Several viewers may watch; one page
sends audio at a time (the first to ask, until it leaves).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import json
import secrets
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import DriftwaveError, notify

PAGE = Path(__file__).with_name("web") / "live.html"
if TYPE_CHECKING:
    import numpy as np

MAX_MESSAGE = 1 << 20  # an audio block is 8 KB; a control a few bytes
DEFAULT_PORT = 8765


class LiveServer:
    """The page server of one live session. ``on_control(message)`` applies a quick control and
    returns what to say about it; ``say`` reports problems (one line each)."""

    def __init__(
        self,
        source,
        *,
        port: int = DEFAULT_PORT,
        on_control: Callable[[dict], str | None] = lambda message: None,
        say: Callable[[str], None] = notify,
    ) -> None:
        self.source, self.port, self.on_control, self.say = source, port, on_control, say
        self.token = secrets.token_urlsafe(18)
        self.latency_ms: float | None = None  # audio capture to picture shown, as the page measured it
        self.viewers: dict[object, asyncio.Event] = {}  # WebSocket -> "a newer frame is waiting"
        self.sender = None  # the WebSocket whose audio is used
        self._latest: bytes | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._said: set[str] = set()

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}/?token={self.token}"

    # -- lifetime, from the session's thread ------------------------------------------------------

    def start(self) -> None:
        """Listen (raises a DriftwaveError naming the port when it is taken)."""
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="live-server", daemon=True)
        self._thread.start()
        ready.result(timeout=30)

    def close(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def publish(self, frame: np.ndarray, header: dict) -> None:
        """A new picture ((H, W, 3) uint8 RGB) for every viewer; cheap when there is none."""
        if not self.viewers or self._loop is None:
            return
        import cv2

        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            return
        meta = json.dumps({**header, "latency_ms": self.latency_ms}).encode()
        self._loop.call_soon_threadsafe(self._offer, struct.pack(">I", len(meta)) + meta + jpeg.tobytes())

    # -- the server's thread -----------------------------------------------------------------------

    def _serve(self, ready: concurrent.futures.Future) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._run(ready))
        finally:
            self._loop.close()

    async def _run(self, ready: concurrent.futures.Future) -> None:
        from aiohttp import web

        self._stopped = asyncio.Event()

        @web.middleware
        async def guard(request, handler):
            return await self._guard(request, handler)

        app = web.Application(middlewares=[guard], client_max_size=MAX_MESSAGE)
        app.router.add_get("/", self._page)
        app.router.add_get("/ws", self._socket)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
        except OSError as error:
            await runner.cleanup()
            taken = error.errno == errno.EADDRINUSE
            ready.set_exception(
                DriftwaveError(
                    f"port {self.port} is {'already in use' if taken else 'not available'} ({error.strerror})",
                    field="serve",
                    hint="choose another with --serve PORT (and the same in ssh -L PORT:localhost:PORT)",
                )
            )
            return
        ready.set_result(None)
        try:
            await self._stopped.wait()
        finally:
            for socket in list(self.viewers):
                with contextlib.suppress(Exception):
                    await socket.close()
            await runner.cleanup()

    async def _guard(self, request, handler):
        """Refuse any request without the session's token or from another page's origin."""
        from aiohttp import web

        origin = request.headers.get("Origin")
        allowed = {f"http://localhost:{self.port}", f"http://127.0.0.1:{self.port}"}
        if request.query.get("token") != self.token or (origin is not None and origin not in allowed):
            return web.Response(status=403)
        return await handler(request)

    async def _page(self, request):
        from aiohttp import web

        return web.Response(text=PAGE.read_text(), content_type="text/html", headers={"Cache-Control": "no-store"})

    async def _socket(self, request):
        from aiohttp import WSMsgType, web

        socket = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=10)
        await socket.prepare(request)
        fresh = self.viewers[socket] = asyncio.Event()
        sending = asyncio.ensure_future(self._send_newest(socket, fresh))
        try:
            async for message in socket:
                if message.type == WSMsgType.BINARY:
                    self._audio(socket, message.data)
                elif message.type == WSMsgType.TEXT:
                    self._text(socket, message.data)
        finally:
            sending.cancel()
            del self.viewers[socket]
            if self.sender is socket:
                self.sender = None
                self.say("the page sending audio has gone: keeping the last values until one sends again")
        return socket

    async def _send_newest(self, socket, fresh: asyncio.Event) -> None:
        while not socket.closed:
            await fresh.wait()
            fresh.clear()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await socket.send_bytes(self._latest)

    def _offer(self, data: bytes) -> None:
        self._latest = data
        for fresh in self.viewers.values():
            fresh.set()

    def _text(self, socket, data: str) -> None:
        try:
            message = json.loads(data)
            kind = message["type"]
        except (ValueError, KeyError, TypeError):
            return self._drop("a malformed message")
        if kind == "hello" and message.get("audio"):
            if self.sender is not None and self.sender is not socket and not self.sender.closed:
                return self._drop("audio from a second page (one page sends at a time)")
            rate = message.get("rate")
            if not isinstance(rate, int | float) or not 8000 <= rate <= 192000:
                return self._drop("a hello without a usable sample rate")
            self.sender = socket
            self.source.start(int(rate))
            self.say(f"audio from the page at {int(rate)} Hz")
        elif kind == "latency" and isinstance(message.get("ms"), int | float):
            self.latency_ms = float(message["ms"])
        elif kind == "control":
            said = self.on_control(message)
            if said:
                self.say(said)
        else:
            self._drop(f"a message of type {kind!r}")

    def _audio(self, socket, data: bytes) -> None:
        import numpy as np

        if socket is not self.sender:
            return self._drop("audio from a page that did not say hello first")
        if len(data) < 12 or (len(data) - 8) % 4:
            return self._drop("an audio block of the wrong size")
        (stamp,) = struct.unpack("<d", data[:8])
        self.source.push(np.frombuffer(data, dtype="<f4", offset=8), stamp)

    def _drop(self, what: str) -> None:
        """One log line per kind of bad message, then silence."""
        if what not in self._said:
            self._said.add(what)
            self.say(f"live page: dropped {what}")


def quick_control(session, message: dict, snapshots: Path) -> str | None:
    """The page's quick controls on a LiveSession: ``prompt`` (an index, or null for the
    schedule), ``freeze`` (toggles), ``snapshot``, ``strength`` and ``cfg`` (a step up or down
    from what is on screen). Returns what to say."""
    action = message.get("action")
    if action == "prompt":
        index = message.get("index")
        session.control(prompt=index if isinstance(index, int) and index >= 0 else None)
        return f"live: prompt {index + 1 if isinstance(index, int) and index >= 0 else 'from the schedule'}"
    if action == "freeze":
        session.control(frozen=not session.controls.frozen)
        return f"live: {'frozen' if session.controls.frozen else 'running'}"
    if action == "snapshot":
        return f"snapshot: {session.snapshot(snapshots)}"
    if action in ("strength", "cfg") and isinstance(message.get("step"), int | float):
        value = session.nudge(action, float(message["step"]))
        return f"live: {action} {value:.2f}"
    return None
