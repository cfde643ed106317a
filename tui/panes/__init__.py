"""The TUI's tabs, one module each: panes edit the shared Session and post ``Edited`` up to the app."""

from tui.panes.audio import AudioPane
from tui.panes.common import Edited, error_text
from tui.panes.live import LivePane
from tui.panes.motion import MotionPane
from tui.panes.prompts import PromptsPane
from tui.panes.render import RenderPane
from tui.panes.settings import SettingsPane
from tui.panes.sweep import SweepPane

__all__ = [
    "AudioPane",
    "Edited",
    "LivePane",
    "MotionPane",
    "PromptsPane",
    "RenderPane",
    "SettingsPane",
    "SweepPane",
    "error_text",
]
