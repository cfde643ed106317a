"""Live mode on a real input device: a private PulseAudio server, a null sink as the virtual
microphone (its monitor is the source), tones played into it with ``paplay``, the sink unloaded
mid-run (the input is lost) and loaded again (re-plugged), through real sounddevice streams.

The server is started for this module only, on a socket in a temporary folder, so a user's
own sound server is never touched. Waits are event-driven, each with a hang guard.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audio.live import MicrophoneSource
from audio.load import AudioError
from engine.backends import load_backend
from engine.errors import collecting_notices
from engine.live import LiveSession, LiveStatus, open_audio_source
from engine.presets import settings_from_data
from engine.settings import ModelSettings

RATE = 44100
FILTERS = [{"name": "fLo", "f_center": 100, "f_width": 60}, {"name": "fHi", "f_center": 3000, "f_width": 1000}]
SINK = "drift_test"
SOURCE = f"{SINK}.monitor"
HANG_GUARD = 30.0  # seconds; the first callback of a stream comes ~2 s after it opens here
LOUD, QUIET = 0.1, 0.02  # raw RMS of a band: a 0.5-amplitude tone in its band is ~0.35


class Pulse:
    """The private server: ``pactl`` and ``paplay`` against it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def pactl(self, *args: str) -> str:
        done = subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=HANG_GUARD)
        assert done.returncode == 0, f"pactl {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    def load_sink(self, name: str = SINK) -> str:
        """A null sink; its monitor source is the virtual microphone. Returns the module id."""
        return self.pactl("load-module", "module-null-sink", f"sink_name={name}")

    def play(self, samples: np.ndarray, name: str, sink: str = SINK) -> subprocess.Popen:
        path = self.folder / f"{name}.wav"
        soundfile.write(path, samples.astype(np.float32), RATE)
        return subprocess.Popen(["paplay", f"--device={sink}", str(path)], stderr=subprocess.DEVNULL)

    def source_of_recordings(self) -> list[str]:
        """The source each recording stream reads from, by name."""
        names = {row.split("\t")[0]: row.split("\t")[1] for row in self.pactl("list", "short", "sources").splitlines()}
        outputs = self.pactl("list", "short", "source-outputs").splitlines()
        return [names.get(row.split("\t")[1], "?") for row in outputs]


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    missing = [tool for tool in ("pulseaudio", "pactl", "paplay") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (make system-packages installs pulseaudio, pulseaudio-utils)")
    import sounddevice

    folder = tmp_path_factory.mktemp("pulse")
    socket = folder / "native"
    private = {  # the server's and its clients' files stay in the folder
        "PULSE_RUNTIME_PATH": str(folder / "runtime"),
        "PULSE_STATE_PATH": str(folder / "state"),
        "PULSE_COOKIE": str(folder / "cookie"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in private.items():
            patch.setenv(name, value)
        patch.delenv("PULSE_SERVER", raising=False)
        patch.delenv("PULSE_SOURCE", raising=False)
        log = (folder / "daemon.log").open("w")
        daemon = subprocess.Popen(
            [
                "pulseaudio",
                "--daemonize=no",
                "-n",  # no default.pa: only what is loaded here
                "--exit-idle-time=-1",
                "--disallow-exit",
                "--use-pid-file=false",
                "--disable-shm=true",
                "--log-target=stderr",
                f"--load=module-native-protocol-unix socket={socket} auth-anonymous=1",
            ],
            env={**os.environ, "HOME": str(folder)},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        patch.setenv("PULSE_SERVER", f"unix:{socket}")
        try:
            server = Pulse(folder)
            deadline = time.monotonic() + HANG_GUARD
            while subprocess.run(["pactl", "info"], capture_output=True).returncode != 0:
                assert daemon.poll() is None, f"pulseaudio exited: {(folder / 'daemon.log').read_text()}"
                assert time.monotonic() < deadline, "pulseaudio did not answer"
                time.sleep(0.05)
            # PortAudio lists devices when it starts: start it again now that there is a server
            sounddevice._terminate()
            sounddevice._initialize()
            yield server
        finally:
            daemon.terminate()
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            log.close()
    sounddevice._terminate()  # back to the devices the rest of the run saw
    sounddevice._initialize()


def live_settings():
    data = {
        "image": {"W": 64, "H": 64},
        "prompts": {"0": "a lantern festival"},
        "model": {"backend": "preview"},
        "live": {"target_fps": 20},
        "audio": {"filters": FILTERS},
        "motion": {"zoom": "0:(1)", "angle": "0:(0)", "translation_x": "0:(0)", "noise_schedule": "0:(0)"},
    }
    with collecting_notices():
        return settings_from_data(data)


def tone(frequency: float, seconds: float) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * frequency * np.arange(int(RATE * seconds)) / RATE)


def bands(session: LiveSession, status: LiveStatus) -> dict[str, float]:
    return dict(zip(session.source.envelopes.stream.names, status.raw, strict=True))


def step_until(session: LiveSession, what: str, condition: Callable[[LiveStatus], bool]) -> LiveStatus:
    """Run the loop frame by frame until ``condition`` holds for a frame's status."""
    deadline = time.monotonic() + HANG_GUARD
    while True:
        status = session.step()
        if condition(status):
            return status
        assert time.monotonic() < deadline, f"waited {HANG_GUARD:g} s for {what}; last: {status}"
        time.sleep(0.005)


def finish(player: subprocess.Popen) -> None:
    player.wait(HANG_GUARD)


def test_the_live_loop_follows_a_real_input_survives_losing_it_and_reconnects(pulse, capfd):
    decoy = pulse.load_sink("decoy")
    pulse.pactl("set-default-source", "decoy.monitor")  # the server's default is another source
    module = pulse.load_sink()
    settings = live_settings()
    source = open_audio_source(settings, input_device=SOURCE)  # by name, as `main.py live --input-device`
    session = LiveSession(settings, load_backend(ModelSettings(backend="preview")), source)
    try:
        assert isinstance(source, MicrophoneSource) and source.pulse_source == SOURCE
        assert pulse.source_of_recordings() == [SOURCE]  # not the default source
        pulse.pactl("unload-module", decoy)  # else losing drift_test moves the stream onto decoy

        # 1. envelopes follow tones played into the virtual microphone
        step_until(session, "the first audio", lambda s: s.audio_frame > 5)
        silent = bands(session, session.step())
        assert silent["fLo"] < QUIET and silent["fHi"] < QUIET
        player = pulse.play(tone(100, 1.0), "low")
        low = bands(session, step_until(session, "the low band to rise", lambda s: bands(session, s)["fLo"] > LOUD))
        assert low["fHi"] < QUIET
        finish(player)
        step_until(session, "silence after the low tone", lambda s: bands(session, s)["fLo"] < QUIET)
        player = pulse.play(tone(3000, 5.0), "high")
        high = bands(session, step_until(session, "the high band to rise", lambda s: bands(session, s)["fHi"] > LOUD))
        assert high["fLo"] < QUIET

        # 2. the sink goes away mid-tone: the loop goes on from its last picture and values, and says why
        pulse.pactl("unload-module", module)
        lost = step_until(session, "the loss to be reported", lambda s: s.problem is not None)
        finish(player)
        assert f"lost the audio input '{SOURCE}' (PulseAudio source)" in lost.problem
        step_until(session, "the blocks queued before the loss", lambda s: not source.envelopes.blocks)
        with source.envelopes._lock:  # the worker took in the last one (it drains under this lock)
            pass
        last = session.step()
        picture = session.image.clone()
        held = [session.step() for _ in range(5)]
        assert [s.frame for s in held] == list(range(last.frame + 1, last.frame + 6))
        change = (session.image - picture).abs().mean().item()
        assert change < 0.05, f"the picture went on from the last one, not from scratch ({change:.3f})"
        assert all(s.problem == lost.problem for s in held)
        assert all(s.audio_frame == held[0].audio_frame and s.raw == held[0].raw for s in held)  # the values hold
        assert bands(session, held[-1])["fHi"] > LOUD

        # asking too early: it says the input is still gone, and the loop goes on
        with pytest.raises(AudioError, match="cannot be opened"):
            session.reconnect()
        assert "still gone" in session.step().problem

        # 3. plugged in again: when the user asks, the audio comes back and is followed again
        pulse.load_sink()
        assert session.reconnect() == f"reconnected the audio input '{SOURCE}' (PulseAudio source)"
        assert pulse.source_of_recordings() == [SOURCE]
        back = step_until(session, "audio after reconnecting", lambda s: s.audio_frame > lost.audio_frame + 5)
        assert back.problem is None
        step_until(session, "silence after reconnecting", lambda s: bands(session, s)["fHi"] < QUIET)
        player = pulse.play(tone(100, 1.0), "low-again")
        again = bands(session, step_until(session, "the low band again", lambda s: bands(session, s)["fLo"] > LOUD))
        assert again["fHi"] < QUIET
        finish(player)
    finally:
        source.close()
    assert "Traceback" not in capfd.readouterr().err


def test_an_unknown_source_name_is_a_clear_error(pulse):
    with pytest.raises(AudioError) as caught:
        MicrophoneSource(live_settings().audio.filters, 20, device="nosuch.monitor")
    assert "'nosuch.monitor' (PulseAudio source) cannot be opened" in caught.value.message
    assert "pactl list short sources" in caught.value.message
