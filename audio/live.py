"""Live audio: a microphone/line-in (sounddevice) or a file played in real time, as envelopes.

The audio callback only copies the block (with its arrival time) into a bounded queue; a worker
thread runs the streaming filters, the live onset/beat follower and an optional recording tap,
and keeps the newest values, which the render loop reads without waiting. When the input is
lost the last values stay and ``error`` says what happened.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from audio.jitter import JitterBuffer
from audio.load import AudioError, Track
from audio.stream import StreamingEnvelopes
from engine.settings import AudioFilter


class LiveRhythm:
    """Onset strength and a beat ramp from the amplitude envelope, as they happen.

    Onset is the rise of the amplitude since the previous frame over its recent peak; a beat is
    an onset above half that peak at least a quarter second after the previous one, and ``beat``
    falls from 1 to 0 over the beat period (from ``bpm`` when given, else the spacing of beats).
    """

    def __init__(self, fps: float, bpm: float = 0.0) -> None:
        self.fps, self.fixed = fps, bpm > 0
        self.period = fps * 60.0 / (bpm or 120.0)  # frames between beats
        self.previous, self.peak = 0.0, 0.0
        self.since = math.inf

    def update(self, amplitude: float) -> dict[str, float]:
        rise = max(amplitude - self.previous, 0.0)
        self.previous = amplitude
        self.peak = max(self.peak * 0.995, rise)
        onset = rise / self.peak if self.peak > 0 else 0.0
        self.since += 1
        if onset > 0.5 and self.since >= 0.25 * self.fps:
            if not self.fixed and self.since < 2.0 * self.fps:
                self.period = 0.7 * self.period + 0.3 * self.since
            self.since = 0
        return {"onset": onset, "beat": max(1.0 - self.since / self.period, 0.0)}


class LiveEnvelopes:
    """The consumer side: blocks in, newest normalised envelope values out.

    ``latest_at`` is when the block that completed the newest frame of audio arrived (for the
    audio-to-frame latency); ``latest_raw`` that frame's raw RMS per name (for comparisons
    with the offline analysis); ``record_to`` starts a tap that writes every block to a WAV.
    """

    def __init__(self, filters: list[AudioFilter], rate: int, fps: float, bpm: float = 0.0) -> None:
        self.filters = filters
        self.stream = StreamingEnvelopes(filters, rate, fps)
        self.rate = rate
        self.rhythm = LiveRhythm(fps, bpm)
        self.blocks: deque[tuple[np.ndarray, float, float | None]] = deque(maxlen=256)  # absorbs bursts
        self.latest: dict[str, float] = dict.fromkeys([*self.stream.names, "onset", "beat"], 0.0)
        self.latest_raw = np.zeros(len(self.stream.names))
        self.latest_at = time.monotonic()
        self.latest_stamp: float | None = None  # the sender's clock at the newest frame's block
        self.frames = 0
        self.error: str | None = None
        self._tap: soundfile.SoundFile | None = None
        self.tap_started_at: float | None = None  # arrival time of the first recorded block's start
        self._wake = threading.Event()
        self._lock = threading.Lock()  # the worker and stop_recording both drain
        self._running = True
        self._worker = threading.Thread(target=self._run, name="audio-envelopes", daemon=True)
        self._worker.start()

    def push(self, block: np.ndarray, stamp: float | None = None) -> None:
        """Called from the audio callback: copy and return at once (``stamp``: the sender's
        clock at the block, see :class:`PushedSource`)."""
        copied = np.array(block, dtype=np.float32, copy=True).reshape(-1)
        self.blocks.append((copied, time.monotonic(), stamp))
        self._wake.set()

    def fail(self, message: str) -> None:
        """The input is gone (unplugged, stream error): the last values stay, ``error`` says why."""
        self.error = message

    def values(self) -> dict[str, float]:
        return dict(self.latest)

    def set_rate(self, rate: int) -> None:
        """The sender's audio comes at ``rate`` from now on: the filters start afresh for it, and a
        recording restarts at that rate (what came before was the silence before the sender)."""
        with self._lock:
            if rate == self.rate:
                return
            self.stream, self.rate = StreamingEnvelopes(self.filters, rate, self.stream.fps), rate
            if self._tap is not None:
                path = self._tap.name
                self._tap.close()
                self._tap, self.tap_started_at = None, None
                self.record_to(Path(path))

    def record_to(self, path: Path) -> None:
        """Write every block from now on to ``path`` (a WAV), on the worker thread."""
        self._tap = soundfile.SoundFile(path, "w", samplerate=self.rate, channels=1, subtype="FLOAT")

    def stop_recording(self) -> None:
        """Take what has arrived into the recording, then close it."""
        self._drain()
        tap, self._tap = self._tap, None
        if tap is not None:
            tap.close()

    def close(self) -> None:
        self._running = False
        self._wake.set()
        self._worker.join(timeout=2)
        if self._tap is not None:
            self._tap.close()

    def _run(self) -> None:
        while self._running:
            self._wake.wait(0.1)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        with self._lock:
            while self.blocks:
                self._consume(*self.blocks.popleft())

    def _consume(self, block: np.ndarray, arrived: float, stamp: float | None) -> None:
        tap = self._tap
        if tap is not None:
            if self.tap_started_at is None:
                self.tap_started_at = arrived - len(block) / self.rate
            tap.write(block)
        for row in self.stream.feed(block):
            values = self.stream.normalised(row)
            values.update(self.rhythm.update(float(row[-1])))
            self.latest, self.latest_raw, self.latest_at, self.latest_stamp = values, row, arrived, stamp
            self.frames += 1


@dataclass
class InputDevice:
    index: int
    name: str
    channels: int
    rate: float


def input_devices() -> list[InputDevice]:
    """Audio inputs sounddevice can open (empty on a machine without a sound card)."""
    sounddevice = _sounddevice()
    return [
        InputDevice(index, device["name"], device["max_input_channels"], device["default_samplerate"])
        for index, device in enumerate(sounddevice.query_devices())
        if device["max_input_channels"] > 0
    ]


PULSE_PREFIX = "pulse:"
_environment = threading.Lock()  # PULSE_SOURCE is process-wide: one stream opens at a time


class MicrophoneSource:
    """A sounddevice input stream feeding :class:`LiveEnvelopes`.

    ``device`` is a PortAudio input (number or name, as ``main.py audio devices`` lists them) or
    a PulseAudio source (``pactl list short sources``): ``"pulse:NAME"``, or a bare name
    PortAudio does not know while PortAudio has its ``pulse`` device. A PulseAudio source is
    opened through that device with ``PULSE_SOURCE`` set while the stream opens (libpulse reads
    it when the ALSA plugin connects), so nothing changes for other programs.

    When the input goes away (unplugged, its PulseAudio source unloaded, the sound server
    gone) PortAudio ends the stream: the envelopes keep their last values and their ``error``
    names the input. :meth:`reconnect` opens it again when the user says it is back.
    """

    def __init__(
        self,
        filters: list[AudioFilter],
        fps: float,
        device: int | str | None = None,
        rate: int | None = None,
        block: int = 512,
        bpm: float = 0.0,
    ) -> None:
        sounddevice = _sounddevice()
        self.device, self.pulse_source, info = _choose_input(sounddevice, device)
        self.name = self.pulse_source or info["name"]
        self.label = f"{self.name!r} (PulseAudio source)" if self.pulse_source else repr(self.name)
        self.rate = int(rate or info["default_samplerate"])
        self.block = block
        self.envelopes = LiveEnvelopes(filters, self.rate, fps, bpm)
        self.stream = None
        self._generation = 0  # the stream a finished callback belongs to
        try:
            self._open()
        except AudioError:
            self.envelopes.close()
            raise

    def _open(self) -> None:
        sounddevice = _sounddevice()
        self._generation += 1
        generation = self._generation

        def callback(data, frames, timing, status) -> None:
            self.envelopes.push(data[:, 0])

        def finished() -> None:  # PortAudio ended the stream: its device failed, or close()
            if generation == self._generation:
                self.envelopes.fail(
                    f"lost the audio input {self.label}: it stopped (unplugged?); "
                    "keeping the last values until it is reconnected"
                )

        try:
            with _pulse_source(self.pulse_source):
                stream = sounddevice.InputStream(
                    device=self.device,
                    channels=1,
                    samplerate=self.rate,
                    blocksize=self.block,
                    dtype="float32",
                    callback=callback,
                    finished_callback=finished,
                )
                stream.start()
        except (sounddevice.PortAudioError, ValueError) as error:
            where = " (check `pactl list short sources`)" if self.pulse_source else ""
            raise AudioError(
                f"the audio input {self.label} cannot be opened{where} ({error})",
                field="input_device",
                hint="check the device, or use --audio-file",
            ) from None
        self.stream = stream

    def reconnect(self) -> None:
        """Open the input again (re-plugged): the envelopes carry on; raises :class:`AudioError`
        (and says so in ``envelopes.error``) while it is still gone."""
        stream, self.stream = self.stream, None
        self._generation += 1  # the old stream's end is not a loss
        if stream is not None:
            stream.close()
        try:
            self._open()
        except AudioError as error:
            self.envelopes.fail(f"the audio input {self.label} is still gone: {error.message}")
            raise
        self.envelopes.error = None

    def values(self) -> dict[str, float]:
        return self.envelopes.values()

    def close(self) -> None:
        self._generation += 1
        if self.stream is not None:
            self.stream.close()
        self.envelopes.close()


def _choose_input(sounddevice, device: int | str | None) -> tuple[int | str | None, str | None, dict]:
    """(the PortAudio device to open, the PulseAudio source to ask for or None, its info)."""
    pulse = None
    if isinstance(device, str) and device.startswith(PULSE_PREFIX):
        pulse = device[len(PULSE_PREFIX) :]
    elif isinstance(device, str) and _portaudio_pulse(sounddevice) is not None:
        try:
            sounddevice.query_devices(device, "input")
        except (ValueError, sounddevice.PortAudioError):
            pulse = device  # not PortAudio's: a PulseAudio source name
    if pulse is not None:
        index = _portaudio_pulse(sounddevice)
        if index is None:
            raise AudioError(
                f"no PulseAudio input for the source {pulse!r}: PortAudio has no 'pulse' device",
                field="input_device",
                hint="start PulseAudio (pulseaudio --start) or PipeWire's pulse server, or choose an input "
                "from `main.py audio devices`",
            )
        return index, pulse, sounddevice.query_devices(index)
    try:
        return device, None, sounddevice.query_devices(device, "input")
    except (ValueError, sounddevice.PortAudioError) as error:
        raise AudioError(
            f"no audio input {'named ' + repr(device) if device is not None else 'is available'} ({error})",
            field="input_device",
            hint="run `main.py audio devices` to list inputs, or use --audio-file",
        ) from None


def _portaudio_pulse(sounddevice) -> int | None:
    """PortAudio's device for the PulseAudio server (ALSA's ``pulse`` plugin), if it has one."""
    for index, device in enumerate(sounddevice.query_devices()):
        if device["name"] == "pulse" and device["max_input_channels"] > 0:
            return index
    return None


@contextmanager
def _pulse_source(name: str | None):
    """``PULSE_SOURCE=name`` while a stream opens (nothing when ``name`` is None)."""
    if name is None:
        yield
        return
    with _environment:
        before = os.environ.get("PULSE_SOURCE")
        os.environ["PULSE_SOURCE"] = name
        try:
            yield
        finally:
            if before is None:
                del os.environ["PULSE_SOURCE"]
            else:
                os.environ["PULSE_SOURCE"] = before


class PushedSource:
    """Live audio pushed in by another program (the browser page of ``main.py live --serve``):
    PCM blocks in, the same streaming filters with carried state as the microphone's, so the
    envelopes are the offline analysis's of the same signal.

    The sender says its sample rate first (:meth:`start`); a new rate starts the filters afresh.
    ``stamp`` with a block is the sender's clock in milliseconds when it was captured: blocks
    pass a :class:`~audio.jitter.JitterBuffer` of ``jitter`` seconds on it, so they reach the
    filters at the pace they were captured; the stamp comes back with the frame that read it
    (``envelopes.latest_stamp``), so the sender measures audio-to-picture latency on its own
    clock. Until the first block, and after the sender goes, the values hold.
    """

    label = "the browser page's audio"

    def __init__(
        self, filters: list[AudioFilter], fps: float, rate: int = 48000, bpm: float = 0.0, jitter: float = 0.04
    ) -> None:
        self.envelopes = LiveEnvelopes(filters, rate, fps, bpm)
        self.buffer = JitterBuffer(jitter)
        self._ready = threading.Condition()
        self._running = True
        self._release = threading.Thread(target=self._run, name="audio-jitter", daemon=True)
        self._release.start()

    def start(self, rate: int) -> None:
        self.envelopes.set_rate(rate)

    def push(self, block: np.ndarray, stamp: float | None = None) -> None:
        if stamp is None:
            self.envelopes.push(block)
            return
        with self._ready:
            self.buffer.add((block, stamp), stamp / 1000.0, time.monotonic())
            self._ready.notify()

    def values(self) -> dict[str, float]:
        return self.envelopes.values()

    def close(self) -> None:
        with self._ready:
            self._running = False
            self._ready.notify()
        self._release.join(timeout=2)
        self.envelopes.close()

    def _run(self) -> None:
        """Hand each held block to the filters when it is due."""
        with self._ready:
            while self._running:
                for block, stamp in self.buffer.due(time.monotonic()):
                    self.envelopes.push(block, stamp)
                due = self.buffer.next_release()
                self._ready.wait(None if due is None else max(due - time.monotonic(), 0.0))


class FileSource:
    """A track played in real time as if it were an input: through the speakers when there is an
    output device (what is heard is what is analysed, block for block), else on a timed thread.
    At its end it starts again (``loop``) or sets ``finished``."""

    def __init__(
        self,
        track: Track,
        filters: list[AudioFilter],
        fps: float,
        *,
        block: int = 512,
        loop: bool = False,
        speed: float = 1.0,
        play: bool = True,
        bpm: float = 0.0,
    ) -> None:
        self.track, self.block, self.loop, self.speed = track, block, loop, speed
        self.envelopes = LiveEnvelopes(filters, track.rate, fps, bpm)
        self.finished = threading.Event()
        self.position = 0
        self.stream = self._open_output() if play and speed == 1.0 else None
        self.audible = self.stream is not None
        self._running = True
        self._thread = None
        if self.stream is None:
            self._thread = threading.Thread(target=self._play, name="audio-file", daemon=True)
            self._thread.start()

    def _next(self, count: int) -> np.ndarray:
        """The next ``count`` samples (fewer at the end of a track that does not loop)."""
        samples = self.track.samples
        if self.position >= len(samples) and self.loop:
            self.position = 0
        chunk = samples[self.position : self.position + count]
        self.position += len(chunk)
        return chunk

    def _open_output(self):
        try:
            sounddevice = _sounddevice()
        except AudioError:
            return None
        try:
            sounddevice.query_devices(None, "output")
        except (sounddevice.PortAudioError, ValueError):
            return None

        def callback(data, frames, timing, status) -> None:
            chunk = self._next(frames)
            data[: len(chunk), 0] = chunk
            data[len(chunk) :] = 0
            if len(chunk):
                self.envelopes.push(chunk)
            if len(chunk) < frames:
                raise sounddevice.CallbackStop

        try:
            stream = sounddevice.OutputStream(
                samplerate=self.track.rate,
                channels=1,
                blocksize=self.block,
                dtype="float32",
                callback=callback,
                finished_callback=self.finished.set,
            )
            stream.start()
        except (sounddevice.PortAudioError, ValueError):
            return None
        return stream

    def _play(self) -> None:
        started, played = time.monotonic(), 0
        while self._running:
            chunk = self._next(self.block)
            if not len(chunk):
                break
            delay = started + played / self.track.rate / self.speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.envelopes.push(chunk)
            played += len(chunk)
        self.finished.set()

    def values(self) -> dict[str, float]:
        return self.envelopes.values()

    def close(self) -> None:
        self._running = False
        if self.stream is not None:
            self.stream.close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.envelopes.close()


def _sounddevice():
    try:
        import sounddevice
    except OSError as error:  # PortAudio missing
        raise AudioError(
            f"live audio needs the PortAudio library ({error})", hint="install it: sudo apt-get install libportaudio2"
        ) from None
    return sounddevice
