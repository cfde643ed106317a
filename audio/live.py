"""Live audio: a microphone/line-in (sounddevice) or a file played in real time, as envelopes.

The audio callback only copies the block into a bounded queue; a worker thread runs the
streaming filters and keeps the newest values, which the render loop reads without waiting.
When the input is lost the last values stay and ``error`` says what happened.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from audio.load import AudioError, Track
from audio.stream import StreamingEnvelopes
from engine.settings import AudioFilter


class LiveEnvelopes:
    """The consumer side: blocks in, newest normalised envelope values out."""

    def __init__(self, filters: list[AudioFilter], rate: int, fps: float) -> None:
        self.stream = StreamingEnvelopes(filters, rate, fps)
        self.blocks: deque[np.ndarray] = deque(maxlen=256)
        self.latest: dict[str, float] = dict.fromkeys(self.stream.names, 0.0)
        self.frames = 0
        self.error: str | None = None
        self._wake = threading.Event()
        self._running = True
        self._worker = threading.Thread(target=self._run, name="audio-envelopes", daemon=True)
        self._worker.start()

    def push(self, block: np.ndarray) -> None:
        """Called from the audio callback: copy and return at once."""
        self.blocks.append(np.array(block, dtype=np.float32, copy=True).reshape(-1))
        self._wake.set()

    def values(self) -> dict[str, float]:
        return dict(self.latest)

    def close(self) -> None:
        self._running = False
        self._wake.set()
        self._worker.join(timeout=2)

    def _run(self) -> None:
        while self._running:
            self._wake.wait(0.1)
            self._wake.clear()
            while self.blocks:
                for row in self.stream.feed(self.blocks.popleft()):
                    self.latest = self.stream.normalised(row)
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


class MicrophoneSource:
    """A sounddevice input stream feeding :class:`LiveEnvelopes`."""

    def __init__(
        self,
        filters: list[AudioFilter],
        fps: float,
        device: int | str | None = None,
        rate: int | None = None,
        block: int = 512,
    ) -> None:
        sounddevice = _sounddevice()
        try:
            info = sounddevice.query_devices(device, "input")
        except (ValueError, sounddevice.PortAudioError) as error:
            raise AudioError(
                f"no audio input {'named ' + repr(device) if device is not None else 'is available'} ({error})",
                field="input_device",
                hint="run `main.py audio devices` to list inputs, or use --audio-file",
            ) from None
        self.rate = int(rate or info["default_samplerate"])
        self.envelopes = LiveEnvelopes(filters, self.rate, fps)

        def callback(data, frames, timing, status) -> None:
            self.envelopes.push(data[:, 0])

        def finished() -> None:
            self.envelopes.error = "the audio input stopped (unplugged?); keeping the last values"

        try:
            self.stream = sounddevice.InputStream(
                device=device,
                channels=1,
                samplerate=self.rate,
                blocksize=block,
                dtype="float32",
                callback=callback,
                finished_callback=finished,
            )
            self.stream.start()
        except sounddevice.PortAudioError as error:
            self.envelopes.close()
            raise AudioError(
                f"the audio input cannot be opened ({error})",
                field="input_device",
                hint="check the device, or use --audio-file",
            ) from None

    def values(self) -> dict[str, float]:
        return self.envelopes.values()

    def close(self) -> None:
        self.stream.close()
        self.envelopes.close()


class FileSource:
    """A track played in real time, as if it were an input (for hosts without a microphone)."""

    def __init__(
        self,
        track: Track,
        filters: list[AudioFilter],
        fps: float,
        *,
        block: int = 512,
        loop: bool = False,
        speed: float = 1.0,
    ) -> None:
        self.track, self.block, self.loop, self.speed = track, block, loop, speed
        self.envelopes = LiveEnvelopes(filters, track.rate, fps)
        self.finished = threading.Event()
        self._running = True
        self._thread = threading.Thread(target=self._play, name="audio-file", daemon=True)
        self._thread.start()

    def _play(self) -> None:
        started = time.monotonic()
        position = 0
        samples = self.track.samples
        while self._running:
            if position >= len(samples):
                if not self.loop:
                    break
                position, started = 0, time.monotonic()
            due = started + position / self.track.rate / self.speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.envelopes.push(samples[position : position + self.block])
            position += self.block
        self.finished.set()

    def values(self) -> dict[str, float]:
        return self.envelopes.values()

    def close(self) -> None:
        self._running = False
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
