"""The engine's events as typed values: each one crosses the wire and reads back as itself;
the render says where it writes in an event, not in a log line."""

from __future__ import annotations

import pytest

from engine.backends import load_backend
from engine.errors import collecting_notices
from engine.presets import settings_from_data
from engine.protocol import (
    EVENTS,
    BatchProgress,
    BatchStarted,
    Done,
    Failed,
    FrameWritten,
    LiveFrame,
    Log,
    Progress,
    ProtocolError,
    RunStarted,
    State,
    VariantUpdate,
    decode,
    read_event,
    to_wire,
)
from engine.render import render
from engine.settings import ModelSettings

SAMPLES = [
    RunStarted("out/driftwave/20261202", "20261202", "preview"),
    Progress(3, 10, 2.5, 2.8),
    Progress(3, None, 24.0, None),
    FrameWritten(2, "out/000002.png"),
    Log("edit applied from frame 4"),
    Failed("the model is missing", "model.model", "point model.model at a checkpoint", "model.model"),
    Done(["out/video.mp4"]),
    LiveFrame(7, 23.9, 41.0, {"fLo": 0.4, "beat": 1.0}, False, None, "live/latest.png"),
    State("rendering", {"folder": "out"}, {"frame": 1, "total": 2}, "out/000000.png", ["a line"], 42),
    BatchStarted("out/study/sweep-20261202", "20261202", "sweep", ["0_seed-1", "1_seed-2"]),
    VariantUpdate("0_seed-1", "running", 3, 10, 1.5, 2, "out/study/sweep-20261202/0_seed-1"),
    VariantUpdate("1_seed-2", "failed", 0, 10, 0.2, 1, "out/study/sweep-20261202/1_seed-2", "the model is missing"),
    BatchProgress(1, 2, 13, 20, 4.5, 1.6),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda event: type(event).__name__)
def test_every_event_reads_back_as_itself(event):
    assert read_event(decode(to_wire(event))) == event


def test_every_event_type_has_a_sample_and_requests_are_not_events():
    assert {type(event).TYPE for event in SAMPLES} == set(EVENTS)
    assert read_event({"v": 3, "type": "submit", "settings": {}}) is None


def test_an_event_missing_a_field_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="'frame' event"):
        read_event({"v": 3, "type": "frame", "index": 1})


def test_the_render_says_where_it_writes_before_its_first_frame(tmp_path):
    with collecting_notices():
        settings = settings_from_data(
            {
                "animation": {"max_frames": 2},
                "image": {"W": 64, "H": 64},
                "batch": {"outdir": str(tmp_path)},
                "prompts": {"0": "a lighthouse"},
                "model": {"backend": "preview"},
                "video": {"skip_video_creation": True},
            }
        )
    events = []
    backend = load_backend(ModelSettings(backend="preview"))
    result = render(settings, backend=backend, on_event=events.append)
    started = [event for event in events if isinstance(event, RunStarted)]
    assert started == [RunStarted(str(result.folder), result.folder.name, backend.name)]
    assert events.index(started[0]) < min(i for i, event in enumerate(events) if isinstance(event, FrameWritten))
    assert not any(isinstance(event, Log) and "rendering to" in event.message for event in events)
