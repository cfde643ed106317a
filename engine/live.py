"""Live mode: real-time audio-reactive rendering from a microphone, line-in or a playing track.

Each frame reads the newest audio envelopes, evaluates the schedules at ``t`` (frames since the
start) and ``s`` (wall-clock seconds) with the live path of the schedule compiler, warps the
previous picture, adds grain and runs img2img on it at the strength schedule. The audio side
never waits for the picture (its callback only queues blocks), so when rendering is slower than
the target the frames are fewer, never the audio; the loop then renders as fast as it can and
says so. Edits and quick controls apply from the next frame. When something fails mid-run (the
input unplugged, the GPU out of memory) the last good frame stays and the status says why.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from engine.backends import Backend
from engine.controlnet import control_images_for, uses_depth
from engine.errors import DriftwaveError, collecting_notices, notify
from engine.frame_step import FrameStep, load_init_and_mask
from engine.hybrid import hybrid_in_use
from engine.images import write_image
from engine.masks import FrameMasks
from engine.plan import Plan, compile_plan
from engine.prompts import PromptSchedule
from engine.settings import Settings

BEHIND = "rendering below the {:g} fps target: as fast as it can, dropping frames, never audio"


class AudioSource(Protocol):
    envelopes: object  # audio.live.LiveEnvelopes

    def values(self) -> dict[str, float]: ...

    def close(self) -> None: ...


@dataclass
class LiveControls:
    """The quick controls: overrides that hold until changed back (None: the schedule's value)."""

    strength: float | None = None
    cfg: float | None = None
    prompt: int | None = None  # the index of the keyed prompt held on screen
    frozen: bool = False  # keep the picture, skip rendering


@dataclass
class LiveStatus:
    """One frame of the live loop, as shown to the user."""

    frame: int
    seconds: float
    fps: float  # over the last second or so
    latency_ms: float  # audio arrival to frame ready
    audio: dict[str, float]
    audio_frame: int  # which frame of audio envelopes this picture read
    raw: list[float]  # those envelopes before normalisation, for comparisons with the offline analysis
    behind: bool  # slower than the target
    problem: str | None = None
    audio_stamp: float | None = None  # the sender's clock at the audio this frame read (a pushed source)


@dataclass
class LiveSummary:
    frames: int
    seconds: float
    mean_fps: float
    mean_latency_ms: float
    statuses: list[LiveStatus] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.frames} frames in {self.seconds:.1f} s: {self.mean_fps:.1f} fps, "
            f"audio to frame {self.mean_latency_ms:.0f} ms on average"
        )


class LiveSession:
    """The real-time loop over one audio source and one backend."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        source: AudioSource,
        *,
        frames_dir: Path | None = None,
        recorder=None,
        on_frame: Callable[[LiveStatus, torch.Tensor], None] | None = None,
        keep_statuses: bool = False,
    ) -> None:
        self.backend, self.source = backend, source
        self.frames_dir, self.recorder, self.on_frame = frames_dir, recorder, on_frame
        self.keep_statuses = keep_statuses
        self.controls = LiveControls()
        self.settings, self.plan = settings, compile_live(settings)
        self.frame_step = _frame_step(settings, self.plan, backend)
        self._pending: tuple[Settings, Plan, FrameStep] | None = None
        self._lock = threading.Lock()
        self.image: torch.Tensor | None = None
        self.reference: torch.Tensor | None = None  # the colour-coherence reference
        self.last_params = None  # the FrameParams of the newest frame
        self.variables: dict[str, float] = dict.fromkeys(settings.live.variables, 0.0)  # set over OSC
        self.frame = 0
        self.started = time.monotonic()
        self.memory_note: str | None = None  # what running out of GPU memory changed
        self._times: deque[float] = deque(maxlen=32)
        self._latencies: list[float] = []
        self.statuses: list[LiveStatus] = []

    # -- from the user, any thread ------------------------------------------------------------------

    def edit(self, settings: Settings) -> None:
        """New settings from the next frame on; a bad edit raises here and changes nothing."""
        plan = compile_live(settings)
        frame_step = _frame_step(settings, plan, self.backend)  # the init image, ControlNet units: checked here too
        with self._lock:
            self._pending = (settings, plan, frame_step)

    def control(self, **changes) -> None:
        """Quick controls: strength, cfg, prompt (index or None), frozen."""
        with self._lock:
            self.controls = dataclasses.replace(self.controls, **changes)

    def set_variable(self, name: str, value: float) -> None:
        """A control variable (``[live] variables``, set over OSC) from the next frame on."""
        with self._lock:
            self.variables = {**self.variables, name: value}

    def nudge(self, name: str, step: float) -> float:
        """Move the strength or cfg override by ``step`` from what the last frame used."""
        current = getattr(self.controls, name)
        if current is None:
            current = getattr(self.last_params, name) if self.last_params is not None else 0.5
        value = min(max(current + step, 0.0), 1.0) if name == "strength" else max(current + step, 0.0)
        self.control(**{name: value})
        return value

    def reconnect(self) -> str:
        """Open the audio input again once the user has plugged it back: the envelopes carry on
        where they stopped and the status stops saying it was lost. Raises ``AudioError`` (and
        the status says so) while it is still gone."""
        reconnect = getattr(self.source, "reconnect", None)
        if reconnect is None:
            raise DriftwaveError("only a microphone or line-in can be reconnected", field="control")
        reconnect()
        return f"reconnected the audio input {self.source.label}"

    def snapshot(self, folder: Path) -> Path:
        """The picture on screen as a PNG in ``folder``."""
        if self.image is None:
            raise DriftwaveError("there is no frame yet to snapshot")
        folder.mkdir(parents=True, exist_ok=True)
        return write_image(self.image, folder / f"snapshot-{time.strftime('%Y%m%d-%H%M%S')}-{self.frame:06d}.png")

    # -- the loop -------------------------------------------------------------------------------------

    def run(self, duration: float | None = None, should_stop: Callable[[], bool] | None = None) -> LiveSummary:
        """Render until ``duration`` seconds pass, ``should_stop`` says so or a file source ends."""
        self.started = time.monotonic()
        finished = getattr(self.source, "finished", None)
        while True:
            if duration is not None and time.monotonic() - self.started >= duration:
                break
            if (should_stop and should_stop()) or (finished is not None and finished.is_set()):
                break
            status = self.step()
            self._latencies.append(status.latency_ms)
            if self.keep_statuses:
                self.statuses.append(status)
            self._pace()
        return self.summary()

    def summary(self) -> LiveSummary:
        seconds = time.monotonic() - self.started
        latencies = self._latencies
        return LiveSummary(
            frames=self.frame,
            seconds=seconds,
            mean_fps=self.frame / seconds if seconds > 0 else 0.0,
            mean_latency_ms=sum(latencies) / len(latencies) if latencies else 0.0,
            statuses=list(self.statuses),
        )

    def step(self) -> LiveStatus:
        """One frame: newest audio in, picture out (unless frozen)."""
        with self._lock:
            if self._pending is not None:
                (self.settings, self.plan, self.frame_step), self._pending = self._pending, None
                self.variables = {name: self.variables.get(name, 0.0) for name in self.settings.live.variables}
            controls = self.controls
        envelopes = self.source.envelopes
        audio, audio_frame, raw, heard_at, stamp = (
            self.source.values(),
            envelopes.frames,
            [float(v) for v in envelopes.latest_raw],
            envelopes.latest_at,
            envelopes.latest_stamp,
        )
        seconds = time.monotonic() - self.started
        if not controls.frozen or self.image is None:
            try:
                self.image = self._render(self.frame, seconds, audio, controls)
            except torch.cuda.OutOfMemoryError:
                self._out_of_memory()
        done = time.monotonic()
        self._times.append(done)
        status = LiveStatus(
            frame=self.frame,
            seconds=seconds,
            fps=self._fps(),
            latency_ms=(done - heard_at) * 1000.0,
            audio=audio,
            audio_frame=audio_frame,
            raw=raw,
            behind=self._behind(),
            audio_stamp=stamp,
        )
        status.problem = (
            envelopes.error
            or (None if audio_frame else "no sound has arrived yet: the values hold at 0")
            or self.memory_note
            or (BEHIND.format(self.settings.live.target_fps) if status.behind else None)
        )
        if self.image is None:  # out of memory before the first picture: nothing to show yet
            return self._advance(status)
        if self.frames_dir is not None:
            write_image(self.image, self.frames_dir / "latest.png")  # atomic: readers never see half a frame
        if self.recorder is not None:
            self.recorder.add(self.image, seconds)
        if self.on_frame is not None:
            self.on_frame(status, self.image)
        return self._advance(status)

    def _advance(self, status: LiveStatus) -> LiveStatus:
        self.frame += 1
        return status

    def _render(self, frame: int, seconds: float, audio: dict[str, float], controls: LiveControls) -> torch.Tensor:
        """The frame step on the live clock's values, with the quick controls' overrides."""
        plan = self.plan
        scope = {**audio, **self.variables, "bpm": float(self.settings.audio.bpm)}
        held = None
        if controls.prompt is not None:
            held = held_prompt(plan.prompts, controls.prompt).at(frame, scope, seconds=seconds)
        params = plan.frame_at(frame, scope, seconds).overridden(
            strength=controls.strength, cfg=controls.cfg, prompt=held
        )
        self.last_params = params
        if self.image is None:
            image, self.reference = self.frame_step.first(params)
            return image
        image, self.reference, _ = self.frame_step.next(self.image, self.reference, params)
        return image

    def _out_of_memory(self) -> None:
        image = self.settings.image
        smaller = max(64, int(image.W * 0.75) // 64 * 64), max(64, int(image.H * 0.75) // 64 * 64)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if smaller == (image.W, image.H):
            self.memory_note = "the GPU is out of memory even at 64x64: close other GPU programs"
            return
        self.memory_note = (
            f"the GPU ran out of memory at {image.W}x{image.H}; continuing at {smaller[0]}x{smaller[1]} "
            f"(set image.W/H to {smaller[0]}/{smaller[1]} or lower, or model.tiny_vae, to start there)"
        )
        resized = self.settings.model_copy(
            update={"image": image.model_copy(update={"W": smaller[0], "H": smaller[1]})}
        )
        self.settings, self.image = resized, None  # the next frame starts fresh at the smaller size
        self.frame_step = _frame_step(resized, self.plan, self.backend)

    def _fps(self) -> float:
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-6)

    def _behind(self) -> bool:
        target = self.settings.live.target_fps
        return len(self._times) >= 8 and self._fps() < 0.95 * target

    def _pace(self) -> None:
        """Wait for the next slot when ahead; when behind, carry on at once (the status says so)."""
        delay = self.started + self.frame / self.settings.live.target_fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def live_limits(settings: Settings) -> list[str]:
    """What the render honours that live mode does not, each as the user should hear it."""
    limits = []
    if settings.animation.animation_mode not in ("2D", "3D"):
        limits.append(f"animation_mode {settings.animation.animation_mode}: live mode moves the picture in 2D")
    if settings.coherence.diffusion_cadence > 1:
        limits.append("diffusion_cadence: live mode diffuses every frame")
    if settings.animation.animation_mode == "3D" and settings.depth.use_depth_warping:
        limits.append("use_depth_warping: live mode warps 3D with flat depth (a depth model a frame is too slow)")
    if hybrid_in_use(settings):
        limits.append("hybrid video: live mode follows the audio, not a video")
    if uses_depth(settings):
        limits.append("ControlNet's depth preprocessor: live mode has no depth model; those units are left out")
    return limits


def _frame_step(settings: Settings, plan: Plan, backend: Backend) -> FrameStep:
    init, mask = load_init_and_mask(settings, backend.device)
    masks = FrameMasks(settings, plan.text_schedules, backend.device, mask)
    batch = Path(settings.batch.outdir).expanduser() / settings.batch.batch_name
    return FrameStep(settings, backend, init=init, masks=masks, controls=control_images_for(settings, backend, batch))


def compile_live(settings: Settings) -> Plan:
    """The plan of a live session: every schedule and prompt compiled, audio names as variables;
    what live mode leaves out is said."""
    with collecting_notices():  # no track: the audio names are live variables, not silent zeros
        plan = compile_plan(settings)
    for limit in live_limits(settings):
        notify(f"off in live mode: {limit}")
    return plan


def held_prompt(prompts: PromptSchedule, index: int) -> PromptSchedule:
    """Only the ``index``-th keyed prompt (wrapping), from frame 0 on."""
    key = prompts.keys[index % len(prompts.keys)]
    return PromptSchedule([dataclasses.replace(key, position=0.0)], prompts.timeline, prompts.blend, 0)


def open_audio_source(settings: Settings, *, audio_file: str | None = None, input_device: str | None = None):
    """The session's audio: ``audio_file`` played in real time, else the input device (the
    default one when none is named), else the preset's track when there is no input at all."""
    from audio.live import FileSource, MicrophoneSource
    from audio.load import AudioError, load_audio

    fps, filters, bpm = settings.live.target_fps, settings.audio.filters, settings.audio.bpm
    if audio_file is None and input_device is None:
        try:
            return MicrophoneSource(filters, fps, bpm=bpm)
        except AudioError as error:
            if not settings.audio.file:
                raise
            audio_file = settings.audio.file
            notify(f"{error.message}: playing the preset's track {Path(audio_file).name} in real time instead")
    if audio_file is not None:
        track = load_audio(audio_file)
        return FileSource(track, filters, fps, loop=settings.live.loop_audio, bpm=bpm)
    device = int(input_device) if input_device.isdigit() else input_device
    return MicrophoneSource(filters, fps, device=device, bpm=bpm)


def record_session(session: LiveSession, path: Path, run: Callable[[], LiveSummary]) -> LiveSummary:
    """Run the session while recording it to ``path`` with the audio it reacted to, in sync."""
    from engine.video import StreamRecorder

    settings = session.settings
    session.recorder = StreamRecorder(path, settings.live.target_fps, (settings.image.W, settings.image.H))
    sound = path.with_name(f".{path.stem}.sound.wav")
    envelopes = session.source.envelopes
    envelopes.record_to(sound)
    try:
        summary = run()
    finally:
        envelopes.stop_recording()
        started = envelopes.tap_started_at
        offset = session.started - started if started is not None else 0.0
        session.recorder.close(time.monotonic() - session.started, sound if started is not None else None, offset)
        sound.unlink(missing_ok=True)
    return summary
