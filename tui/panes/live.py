"""The Live tab: the live session's picture, audio meters, rate and latency, the keys that steer it,
and the switch that serves it to a browser page (``main.py live --serve``)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import var
from textual.widgets import Label, Static, Switch

from engine.protocol import LiveFrame
from tui.events import LiveEvent

METER_WIDTH = 20


def meter(name: str, value: float) -> str:
    """``name ▕██████░░░░▏ 0.62``: a bar of eighth blocks for a value in 0..1."""
    value = min(max(value, 0.0), 1.0)
    eighths = round(value * METER_WIDTH * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")
    return f"{name:>6} ▕{bar:<{METER_WIDTH}}▏ {value:4.2f}"


class LivePane(Vertical, can_focus=True):
    """What the live session shows. Keys (the tab in focus): 1-9 hold that keyed prompt, 0 back to
    the schedule, f freeze, p snapshot, + and - strength, ] and [ cfg, r back to the schedules,
    s serve the page (the session starts again with the page's sound, or without it)."""

    BINDINGS = [
        *(Binding(str(n), f"prompt({n - 1})", f"prompt {n}", show=False) for n in range(1, 10)),
        Binding("0", "prompt(None)", "scheduled prompts", show=False),
        Binding("f", "freeze", "Freeze"),
        Binding("p", "snapshot", "Snapshot"),
        Binding("c", "reconnect", "Reconnect input", show=False),
        Binding("plus,equals_sign", "strength(0.05)", "Strength +"),
        Binding("minus", "strength(-0.05)", "Strength -"),
        Binding("right_square_bracket", "cfg(0.5)", "CFG +", show=False),
        Binding("left_square_bracket", "cfg(-0.5)", "CFG -", show=False),
        Binding("r", "reset", "Reset", show=False),
        Binding("s", "serve", "Serve page"),
    ]

    latest: var[LiveFrame | None] = var(None, init=False)
    """The newest live frame's event."""
    strength: var[float | None] = var(None, init=False)
    """The strength held by the keys (None: the schedule's)."""
    cfg: var[float | None] = var(None, init=False)
    """The cfg held by the keys (None: the schedule's)."""
    frozen: var[bool] = var(False, init=False)

    class Serve(Message):
        """Serve the session to the browser page (``on``) or stop serving: the session starts again."""

        def __init__(self, on: bool) -> None:
            super().__init__()
            self.on = on

    class Control(Message):
        """A quick control for the engine (``changes``: fields of the ``control`` request)."""

        def __init__(self, changes: dict) -> None:
            super().__init__()
            self.changes = changes

    def __init__(self, image_class, strength: float, cfg: float, *, serving: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.image_class, self.serving = image_class, serving
        self.base_strength, self.base_cfg = strength, cfg  # the schedules' values at frame 0
        self.shown_frame = -1

    @classmethod
    def of_settings(cls, image_class, settings, **kwargs) -> LivePane:
        """The pane for a live session of ``settings``, its controls starting at frame 0's values."""
        from engine.errors import collecting_notices
        from engine.plan import compile_plan

        with collecting_notices():
            first = compile_plan(settings).frame(0)
        return cls(image_class, first.strength, first.cfg, **kwargs)

    def compose(self) -> ComposeResult:
        yield Label("live: waiting for the engine…", id="live-status", markup=False)
        yield Static("", id="live-page", markup=False)
        with Horizontal(id="live-body"):
            yield self.image_class(id="live-picture")
            with Vertical(id="live-side"):
                with Horizontal(id="live-serve-row"):
                    yield Switch(self.serving, id="live-serve")
                    yield Label("serve the page", id="live-serve-label")
                yield Static("", id="live-beat", markup=False)
                yield Static("", id="live-meters", markup=False)
                yield Static("", id="live-controls", markup=False)
                yield Static("", id="live-problem", classes="error", markup=False)
        keys = "1-9 prompt · 0 schedule · f freeze · p snapshot · +/- strength · [/] cfg · r reset · s serve"
        yield Label(keys, classes="help", markup=False)

    def on_mount(self) -> None:
        self.set_interval(0.1, self.show_frame)  # the pane's own timer: it stops when the pane goes
        self._show_controls()
        self.focus()  # the keys work at once

    @on(LiveEvent)
    def _live_frame(self, message: LiveEvent) -> None:
        self.latest = message.event

    def watch_latest(self, frame: LiveFrame) -> None:
        """One live frame's event: rate, latency, meters, beat, what went wrong."""
        status = f"frame {frame.frame}   {frame.fps:5.1f} fps   audio→frame {frame.latency_ms:4.0f} ms"
        if frame.shown_latency_ms is not None:  # served: as the browser page measured it
            status += f"   to the page {frame.shown_latency_ms:4.0f} ms"
        self.query_one("#live-status", Label).update(status)  # falling behind the target: the problem line
        audio = frame.audio or {}
        self.query_one("#live-meters", Static).update(
            "\n".join(meter(name, value) for name, value in audio.items() if name not in ("beat", "bpm"))
        )
        beat = self.query_one("#live-beat", Static)
        beat.update("● BEAT" if audio.get("beat", 0.0) > 0.7 else "○ beat")
        beat.set_class(audio.get("beat", 0.0) > 0.7, "flash")
        self.query_one("#live-problem", Static).update(frame.problem or "")
        self.query_one("#live-page", Static).update(f"page: {frame.page}" if frame.page else "")

    def show_frame(self) -> None:
        """The newest picture, if a newer one came (called on a timer: limited for SSH)."""
        if self.latest is None or self.latest.frame == self.shown_frame:
            return
        from PIL import Image

        try:
            with Image.open(self.latest.path) as image:
                small = image.convert("RGB")
        except OSError:
            return  # replaced while reading: the next tick shows it
        small.thumbnail((256, 256))
        self.query_one("#live-picture").image = small
        self.shown_frame = self.latest.frame

    # -- keys ------------------------------------------------------------------------------------------

    def action_serve(self) -> None:
        self.query_one("#live-serve", Switch).toggle()

    @on(Switch.Changed, "#live-serve")
    def _serve_switched(self, event: Switch.Changed) -> None:
        self.serving = event.value
        self.query_one("#live-page", Static).update("page: starting…" if event.value else "")
        self.post_message(self.Serve(event.value))
        self.focus()  # the keys keep working after a click on the switch

    def action_prompt(self, index: int | None) -> None:
        self.post_message(self.Control({"prompt": index}))
        self.notify(f"holding prompt {index + 1}" if index is not None else "prompts follow the schedule")

    def action_freeze(self) -> None:
        self.frozen = not self.frozen
        self.post_message(self.Control({"frozen": self.frozen}))

    def action_snapshot(self) -> None:
        self.post_message(self.Control({"snapshot": True}))

    def action_reconnect(self) -> None:
        """Open the audio input again after it was lost (plugged back in)."""
        self.post_message(self.Control({"reconnect": True}))

    def action_strength(self, step: float) -> None:
        current = self.base_strength if self.strength is None else self.strength
        self.strength = round(min(max(current + step, 0.0), 1.0), 3)
        self.post_message(self.Control({"strength": self.strength}))

    def action_cfg(self, step: float) -> None:
        current = self.base_cfg if self.cfg is None else self.cfg
        self.cfg = round(max(current + step, 0.0), 3)
        self.post_message(self.Control({"cfg": self.cfg}))

    def action_reset(self) -> None:
        self.strength = self.cfg = None
        self.post_message(self.Control({"strength": None, "cfg": None}))

    def _show_controls(self) -> None:
        strength = "schedule" if self.strength is None else f"{self.strength:.2f}"
        cfg = "schedule" if self.cfg is None else f"{self.cfg:.1f}"
        frozen = "   FROZEN" if self.frozen else ""
        self.query_one("#live-controls", Static).update(f"strength {strength}   cfg {cfg}{frozen}")

    watch_strength = watch_cfg = watch_frozen = _show_controls
