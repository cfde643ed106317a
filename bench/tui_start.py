"""TUI cold start: process start to the first painted frame, against `python -c pass`.

Both run in a fresh tmux pane (a real terminal that answers the image library's capability
queries, as the user's terminal does); the time is until a marker shows in the pane: the app's
title for the TUI, a printed word for the bare interpreter. Median of several runs, same run.

Run: .venv/bin/python bench/tui_start.py [--json]   (needs tmux)
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import arguments, report  # noqa: E402

RUNS = 7


def until_shown(command: str, marker: str, timeout: float = 30.0) -> float:
    session = f"bench{os.getpid()}"
    started = time.perf_counter()
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", f"{command}; sleep 30"],
        check=True,
        cwd=ROOT,
    )
    try:
        while time.perf_counter() - started < timeout:
            pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
            if marker in pane:
                return time.perf_counter() - started
            time.sleep(0.005)
        raise TimeoutError(f"{command} showed nothing in {timeout} s")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


# The floor: the least a Textual app costs here (a header with the same title, nothing else).
EMPTY_APP = """
from textual.app import App
from textual.widgets import Header
class Empty(App):
    TITLE = "Driftwave"
    def compose(self):
        yield Header()
Empty().run()
"""


def main() -> None:
    options = arguments(__doc__.splitlines()[0]).parse_args()
    python = shlex.quote(sys.executable)
    commands = {
        "python -c print": f"{python} -c 'print(\"Driftwave\")'",
        "empty Textual app": f"{python} -c {shlex.quote(EMPTY_APP)}",
        "main.py tui demo": f"{python} main.py tui demo --offline",
    }
    times = {name: [] for name in commands}
    for _ in range(RUNS):  # interleaved, so drift on the machine touches all alike
        for name, command in commands.items():
            times[name].append(until_shown(command, "Driftwave"))
    median = {name: statistics.median(values) for name, values in times.items()}
    base = median["python -c print"]
    print(f"median of {RUNS} interleaved runs each, in tmux, until the first paint shows")
    for name, value in median.items():
        print(f"  {name:20} {value * 1e3:6.0f} ms   {value - base:+.2f} s over the bare interpreter")
    print("  target: main.py tui <= 0.5 s over the bare interpreter")
    report(
        {
            "ours_ms": median["main.py tui demo"] * 1e3,
            "baseline_ms": median["empty Textual app"] * 1e3,
            "interpreter_ms": base * 1e3,
        },
        options.json,
    )


if __name__ == "__main__":
    main()
