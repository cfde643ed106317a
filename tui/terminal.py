"""What the terminal can show: textual-image's capability probe, run while Textual imports.

textual-image asks the terminal (Sixel? Kitty graphics? cell size in pixels?) when it is first
imported, and must do so before Textual owns the terminal. A terminal that does not answer a
question costs a 0.1 s timeout each, twice in tmux and over SSH. ``start_probe`` runs the probe in
a thread while the main thread imports Textual (the two import disjoint modules once rich is in),
so those waits overlap work instead of adding to it; ``image_widget`` then picks the widget.
"""

from __future__ import annotations

import importlib
import os
import threading

_probe: threading.Thread | None = None


def start_probe() -> None:
    """Begin probing in the background (call before importing Textual)."""
    global _probe
    # modules both threads import, loaded here first so neither ever waits on the other's lock
    for name in ("logging", "re", "select", "rich.console", "rich.measure", "rich.segment", "rich.style"):
        importlib.import_module(name)

    if _probe is None:
        _probe = threading.Thread(target=_ask_the_terminal, name="terminal-probe", daemon=True)
        _probe.start()


def image_widget() -> type:
    """textual-image's best image widget for this terminal (probes now if not started)."""
    if _probe is not None:
        _probe.join()
    else:
        _ask_the_terminal()
    from textual_image.widget import Image

    return Image


def _ask_the_terminal() -> None:
    from textual_image import _terminal

    try:
        size = os.get_terminal_size()
        if not size.columns or not size.lines:  # its pixel-size arithmetic would divide by zero
            _terminal.get_cell_size._result = _terminal.CellSize(10, 20)
    except OSError:
        pass
    import textual_image.renderable  # noqa: F401 - the Sixel and Kitty queries run on import

    _terminal.get_cell_size()
