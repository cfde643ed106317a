"""Live mode driven from music tools over OSC (python-osc), on a UDP port of 127.0.0.1.

``/driftwave/var/NAME value`` sets the control variable NAME (declared in ``[live] variables``),
read from the next frame in every schedule and prompt weight. The quick controls:
``/driftwave/prompt i`` (1-based; 0 follows the schedule), ``/driftwave/freeze`` (toggles, or 0/1),
``/driftwave/snapshot``, ``/driftwave/strength x`` and ``/driftwave/cfg x`` (absolute values).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from engine.errors import DriftwaveError


class OscControl:
    """An OSC server feeding one LiveSession; ``say`` reports what it did or could not do."""

    def __init__(self, session, port: int, snapshots: Path, say: Callable[[str], None]) -> None:
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import ThreadingOSCUDPServer

        self.session, self.snapshots, self.say = session, snapshots, say
        self._said: set[str] = set()
        dispatcher = Dispatcher()
        dispatcher.map("/driftwave/var/*", self._variable)
        for name in ("prompt", "freeze", "snapshot", "strength", "cfg"):
            dispatcher.map(f"/driftwave/{name}", self._control)
        dispatcher.set_default_handler(lambda address, *values: self._once(f"OSC: {address} is not one of ours"))
        try:
            self.server = ThreadingOSCUDPServer(("127.0.0.1", port), dispatcher)
        except OSError as error:
            message = f"OSC port {port} is not available ({error.strerror})"
            raise DriftwaveError(message, field="osc", hint="choose another with --osc PORT") from None
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="osc", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _variable(self, address: str, *values) -> None:
        name = address.rsplit("/", 1)[-1]
        if name not in self.session.settings.live.variables:
            return self._once(f"OSC sets {name!r}, which is not a live variable: add it to [live] variables")
        if len(values) != 1 or not isinstance(values[0], int | float):
            return self._once(f"OSC: {address} takes one number")
        self.session.set_variable(name, float(values[0]))

    def _control(self, address: str, *values) -> None:
        action, value = address.rsplit("/", 1)[-1], values[0] if values else None
        session = self.session
        if action == "prompt" and isinstance(value, int | float):
            session.control(prompt=int(value) - 1 if value >= 1 else None)
        elif action == "freeze":
            session.control(frozen=not session.controls.frozen if value is None else bool(value))
        elif action == "snapshot":
            self.say(f"snapshot: {session.snapshot(self.snapshots)}")
        elif action in ("strength", "cfg") and isinstance(value, int | float):
            session.control(**{action: min(max(float(value), 0.0), 1.0) if action == "strength" else float(value)})
        else:
            self._once(f"OSC: {address} {' '.join(map(str, values))} is not a usable control")

    def _once(self, line: str) -> None:
        if line not in self._said:
            self._said.add(line)
            self.say(line)
