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
from test_serve import free_port

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
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

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
        frames = browser.execute_script("return window.driftwave.frames")
        assert frames > 20 and int(browser.find_element("id", "frames").text) >= frames
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
