"""The live page end to end in a real headless Chromium (Debian's, driven by selenium) against a
real engine process: the fake microphone plays a WAV, its sound reaches the engine, frames come
back to the page, a key changes the engine's state, a request without the token gets 403."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile
from scipy import signal
from test_live import FPS, live_settings
from test_serve import free_port

from audio.envelopes import design_filter, frame_starts, window_rms
from audio.live import PushedSource
from engine.serve import LiveServer

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, DRIVER = Path("/usr/lib/chromium/chromium"), Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and DRIVER.exists()), reason="needs Debian's chromium and chromium-driver (make test)"
)


def beats_wav(path: Path, seconds: float = 40.0, rate: int = 48000) -> Path:
    """0.5 s of silence, then a 100 Hz tone that sounds for the first half of every 0.5 s beat."""
    t = np.arange(int(seconds * rate)) / rate
    on = (t > 0.5) & (((t - 0.5) % 0.5) < 0.25)
    soundfile.write(path, (0.5 * np.sin(2 * np.pi * 100 * t) * on).astype(np.float32), rate, subtype="PCM_16")
    return path


class Engine:
    """``main.py live --headless --serve`` as a user runs it; its stderr lines collected."""

    def __init__(self, tmp_path: Path, port: int) -> None:
        command = [sys.executable, str(ROOT / "main.py"), "live", "live", "--headless", "--serve", str(port)]
        command += ["--duration", "120", "--set", "backend=preview", "--set", "W=128", "--set", "H=128"]
        command += ["--set", f"outdir={tmp_path / 'out'}", "--set", "target_fps=10"]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.extend(part.strip() for part in line.split("\r") if part.strip())

    def wait_for(self, pattern: str, timeout: float = 90.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            assert self.process.poll() is None, "\n".join(self.lines)
            time.sleep(0.05)
        raise AssertionError(f"the engine never said {pattern!r}:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.reader.join(timeout=30)
        self.process.stderr.close()


def chromium(wav: Path, home: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-component-update",
        "--disable-features=NetworkTimeServiceQuerying",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost",
        "--window-size=900,700",
    ):
        options.add_argument(flag)
    environment = {**os.environ, "HOME": str(home), "TMPDIR": str(home)}
    return webdriver.Chrome(options=options, service=Service(str(DRIVER), env=environment))


def test_the_page_sends_its_microphone_gets_frames_and_controls_the_engine(tmp_path):
    port = free_port()
    engine = Engine(tmp_path, port)
    home = Path(tempfile.mkdtemp(prefix="chrome-", dir="/tmp"))  # short: Chrome's sockets live under it
    browser = None
    try:
        url = engine.wait_for(r"live page: (http://localhost:\d+/\?token=\S+)").group(1)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
        assert refused.value.code == 403
        browser = chromium(beats_wav(tmp_path / "beats.wav"), home)
        browser.get(url)
        browser.find_element("id", "use-mic").click()
        engine.wait_for(r"audio from the page at \d+ Hz")
        lows = []

        def heard_beats() -> bool:
            state = browser.execute_script("return window.driftwave || null")
            if state and "fLo" in state["audio"]:
                lows.append(state["audio"]["fLo"])
            return len(lows) > 20 and max(lows) > 0.6 and min(lows[5:]) < 0.3

        deadline = time.monotonic() + 90
        while not heard_beats():
            assert time.monotonic() < deadline, f"the bass envelope did not follow the beats: {lows[-20:]}"
            time.sleep(0.1)
        while (frames := browser.execute_script("return window.driftwave.frames")) < 20:
            assert time.monotonic() < deadline, f"only {frames} frames reached the page"
            time.sleep(0.1)
        assert int(browser.find_element("id", "frames").text) >= frames  # the counter the user sees
        browser.find_element("tag name", "body").send_keys("f")
        engine.wait_for(r"live: frozen")
        shot = tmp_path / "live_page.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("DRIFTWAVE_SCREENSHOT"):
            shutil.copy(shot, os.environ["DRIFTWAVE_SCREENSHOT"])
    finally:
        if browser is not None:
            browser.quit()
        engine.stop()
        shutil.rmtree(home, ignore_errors=True)


class KeepingSource(PushedSource):
    """The page's audio source, also keeping every block it is given to analyse offline after."""

    def __init__(self, filters, fps) -> None:
        super().__init__(filters, fps)
        self.received: list[np.ndarray] = []

    def push(self, block, stamp=None) -> None:
        self.received.append(np.array(block))
        super().push(block, stamp)


def arrived(blocks: list[np.ndarray], length: int) -> bool:
    """Whether the file has come through whole: its first sound and ``length`` samples from it."""
    if not blocks:
        return False
    sent = np.concatenate(blocks)
    sounding = np.flatnonzero(np.abs(sent) > 1e-6)
    return len(sounding) > 0 and len(sent) >= sounding[0] + length


def test_a_file_played_in_the_page_gives_the_offline_envelopes_of_what_it_sent(tmp_path):
    settings = live_settings()
    source = KeepingSource(settings.audio.filters, FPS)
    server = LiveServer(source, port=free_port(), say=lambda line: None)
    server.start()
    home = Path(tempfile.mkdtemp(prefix="chrome-", dir="/tmp"))
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(4800, dtype=np.float32), 48000)
    browser = chromium(silent, home)
    try:
        browser.get(server.url)
        rate = browser.execute_script("return new AudioContext().sampleRate")
        t = np.arange(int(4 * rate)) / rate
        steps = np.minimum((t / 0.25).astype(int), 15)
        levels = np.random.default_rng(3).uniform(0.05, 0.5, (16, 2))
        low, high = np.sin(2 * np.pi * 100 * t + 0.5), np.sin(2 * np.pi * 1000 * t + 0.5)  # no 0 to start with
        song = levels[steps, 0] * low + levels[steps, 1] * high
        path = tmp_path / "song.wav"
        soundfile.write(path, song.astype(np.float32), int(rate), subtype="FLOAT")
        browser.find_element("id", "file").send_keys(str(path))
        browser.find_element("id", "use-file").click()
        deadline = time.monotonic() + 60
        while not arrived(source.received, len(song)):
            assert time.monotonic() < deadline, f"{sum(map(len, source.received))} samples arrived"
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        while source.envelopes.blocks:
            assert time.monotonic() < deadline, "the envelopes never took the blocks in"
            time.sleep(0.01)
        time.sleep(0.2)  # the worker's last frame
    finally:
        browser.quit()
        server.close()
        source.close()
        shutil.rmtree(home, ignore_errors=True)
    sent = np.concatenate(source.received)
    start = int(np.flatnonzero(np.abs(sent) > 1e-6)[0])  # the page sends silence until the file starts
    np.testing.assert_allclose(sent[start : start + len(song)], song, atol=1e-6)  # the file's samples, exactly
    envelopes = source.envelopes
    starts = frame_starts(envelopes.frames, FPS, int(rate))
    offline = [
        window_rms(signal.sosfilt(design_filter(spec, int(rate)).sos, sent), starts) for spec in settings.audio.filters
    ]
    offline.append(window_rms(sent, starts))
    assert envelopes.frames >= 4 * FPS  # the whole file went through the streaming filters
    np.testing.assert_allclose(envelopes.latest_raw, np.stack(offline, axis=1)[-1], rtol=1e-3, atol=1e-5)
