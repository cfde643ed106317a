"""Live mode from music tools: OSC messages over real UDP set control variables that every
schedule reads from the next frame, and trigger the quick controls."""

from __future__ import annotations

import time

import pytest
from pythonosc.udp_client import SimpleUDPClient
from test_live import file_source, live_settings, stepped_tones

from engine.backends import load_backend
from engine.live import LiveSession
from engine.osc import OscControl
from engine.settings import ModelSettings


def until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def session(tmp_path):
    settings = live_settings(live={"variables": ["knob1"]}, motion={"zoom": "0:(1 + knob1)", "angle": "0:(0)"})
    source = file_source(stepped_tones(tmp_path / "steps.wav"), loop=True)
    live = LiveSession(settings, load_backend(ModelSettings(backend="preview")), source)
    yield live
    source.close()


def test_osc_sets_a_variable_every_schedule_reads_and_triggers_controls(session, tmp_path):
    said: list[str] = []
    osc = OscControl(session, 0, tmp_path / "snapshots", said.append)
    try:
        with SimpleUDPClient("127.0.0.1", osc.port) as client:
            session.step()
            assert session.last_params.motion.zoom == pytest.approx(1.0)
            client.send_message("/driftwave/var/knob1", 0.7)
            until(lambda: session.variables["knob1"] == pytest.approx(0.7), "the knob")
            session.step()
            assert session.last_params.motion.zoom == pytest.approx(1.7)
            client.send_message("/driftwave/freeze", [])
            until(lambda: session.controls.frozen, "freeze")
            client.send_message("/driftwave/strength", 0.3)
            until(lambda: session.controls.strength == pytest.approx(0.3), "strength")
            client.send_message("/driftwave/prompt", 2)
            until(lambda: session.controls.prompt == 1, "prompt 2")
            client.send_message("/driftwave/var/knob9", 1.0)  # not declared: said once, nothing set
            client.send_message("/driftwave/var/knob9", 1.0)
            until(lambda: said, "the refusal")
            assert said == ["OSC sets 'knob9', which is not a live variable: add it to [live] variables"]
            assert "knob9" not in session.variables
    finally:
        osc.close()
