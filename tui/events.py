"""The engine's events as Textual messages, for the app and the panes to handle with ``@on``."""

from __future__ import annotations

from textual.message import Message

from engine import protocol


class EngineEvent(Message, bubble=False):
    """One engine event, posted to what shows it; ``event`` is its protocol dataclass."""

    def __init__(self, event: protocol.Event) -> None:
        super().__init__()
        self.event = event

    @staticmethod
    def of(event: protocol.Event) -> EngineEvent:
        return MESSAGES[type(event)](event)


class StateEvent(EngineEvent, bubble=False):
    event: protocol.State


class ProgressEvent(EngineEvent, bubble=False):
    event: protocol.Progress


class FrameEvent(EngineEvent, bubble=False):
    event: protocol.FrameWritten


class RunEvent(EngineEvent, bubble=False):
    event: protocol.RunStarted


class LogEvent(EngineEvent, bubble=False):
    event: protocol.Log


class FailedEvent(EngineEvent, bubble=False):
    event: protocol.Failed


class DoneEvent(EngineEvent, bubble=False):
    event: protocol.Done


class LiveEvent(EngineEvent, bubble=False):
    event: protocol.LiveFrame


class BatchEvent(EngineEvent, bubble=False):
    event: protocol.BatchStarted


class VariantEvent(EngineEvent, bubble=False):
    event: protocol.VariantUpdate


class BatchProgressEvent(EngineEvent, bubble=False):
    event: protocol.BatchProgress


MESSAGES: dict[type, type[EngineEvent]] = {
    protocol.State: StateEvent,
    protocol.Progress: ProgressEvent,
    protocol.FrameWritten: FrameEvent,
    protocol.RunStarted: RunEvent,
    protocol.Log: LogEvent,
    protocol.Failed: FailedEvent,
    protocol.Done: DoneEvent,
    protocol.LiveFrame: LiveEvent,
    protocol.BatchStarted: BatchEvent,
    protocol.VariantUpdate: VariantEvent,
    protocol.BatchProgress: BatchProgressEvent,
}


class EngineGone(Message):
    """The connection to the engine ended, or could not be made; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason
