"""The TUI with Textual's Pilot: every tab edits and validates, renders run in a real engine
subprocess, quitting guards unsaved edits and a running render; plus snapshots."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from conftest import ROOT
from textual.widgets import DataTable, Input, Select, Static, TabbedContent, TextArea
from textual_image.widget import HalfcellImage

from engine.presets import load_preset
from tui.app import DriftwaveApp
from tui.client import EngineClient
from tui.commands import DriftwaveCommands
from tui.panes import AudioPane, MotionPane, RenderPane
from tui.plot import SchedulePlot
from tui.session import Session

DEMO = ROOT / "presets" / "demo.toml"


def make(
    tmp_path: Path | None = None, *, preset: Path = DEMO, connect: bool = False, live: dict | None = None, **overrides
) -> DriftwaveApp:
    session = Session.open(preset)
    for path, value in overrides.items():
        session.set(path.replace("__", "."), value)
    session.saved = session.settings
    client = EngineClient(tmp_path / "engine.sock") if tmp_path else None
    return DriftwaveApp(
        session, client=client, image_class=HalfcellImage, connect=connect, preview_interval=0.1, live=live
    )


@asynccontextmanager
async def running(app: DriftwaveApp, size: tuple[int, int] = (100, 30)):
    """Run the app headless and wait until its panes are in (they mount after the first paint)."""
    async with app.run_test(size=size) as pilot:
        while not app.query("#pane-settings"):
            await pilot.pause()
        await pilot.pause()
        yield pilot


async def until_state(app: DriftwaveApp, pilot, *states: str, seconds: float = 180.0) -> None:
    """Let the app run until the engine reports one of ``states``; the deadline only guards
    against a hang. A plain sleep: Pilot's pause waits on every widget, and attaching may swap
    the panes meanwhile."""
    for _ in range(int(seconds * 10)):
        if app.engine_state in states:
            await pilot.pause()
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the engine never reported {' or '.join(states)} (it is {app.engine_state})")


async def until(pilot, condition, what: str, seconds: float = 60.0) -> None:
    """Let the app run until ``condition()`` holds: the wait is for the event, the deadline only
    a guard against a hang (work chained through call_later and refreshes takes several turns)."""
    for _ in range(int(seconds * 20)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"{what}: not within {seconds:g} s")


async def click(pilot, selector: str) -> None:
    """Click a button once its last press has ended: a Button ignores clicks while it shows
    its 0.2 s press effect, so two quick clicks on one button would be one."""
    button = pilot.app.query_one(selector)
    await until(pilot, lambda: not button.has_class("-active"), f"{selector}'s press effect ends")
    await pilot.click(selector)


def text(app: DriftwaveApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def test_the_tui_never_imports_a_model_library():
    code = (
        "import sys, tui.app, tui.panes, tui.session, tui.client; "
        "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr


async def test_prompts_edit_validate_add_and_remove():
    app = make()
    async with running(app) as pilot:
        area = app.query_one("#prompt-text", TextArea)
        area.load_text("a (glowing:1.3) jellyfish --neg blurry")
        await pilot.pause()
        assert app.session.settings.prompts["0"] == "a (glowing:1.3) jellyfish --neg blurry"
        assert "demo.toml *" in app.sub_title
        area.load_text("a (glowing jellyfish")
        await pilot.pause()
        assert "unclosed '('" in text(app, "#prompt-error")
        assert app.session.settings.prompts["0"] == "a (glowing:1.3) jellyfish --neg blurry"  # the bad edit is refused
        area.load_text("calm sea")
        await click(pilot, "#add-prompt")
        await pilot.pause()
        assert set(app.session.settings.prompts) == {"0", "24", "48", "78"}
        await click(pilot, "#remove-prompt")
        await pilot.pause()
        assert set(app.session.settings.prompts) == {"0", "24", "48"}


async def test_prompt_key_can_be_moved_and_must_be_a_frame():
    app = make()
    async with running(app) as pilot:
        key = app.query_one("#prompt-key", Input)
        key.value = "1s"
        await pilot.pause()
        assert "1s" in app.session.settings.prompts and "0" not in app.session.settings.prompts
        key.value = "soon"
        await pilot.pause()
        assert "unknown variable 'soon'" in text(app, "#prompt-error")


async def test_motion_schedule_edit_replots_and_flags_errors():
    app = make()
    async with running(app) as pilot:
        app.action_tab("motion")
        motion = app.query_one(MotionPane)
        motion.select("motion.angle")
        await pilot.pause()
        plot = app.query_one("#schedule-plot", SchedulePlot)
        before = list(plot.series)
        app.query_one("#schedule-input", Input).value = "0:(0), 36:(20)"
        await pilot.pause()
        after = list(plot.series)
        assert app.session.settings.motion.angle == "0:(0), 36:(20)" and after != before
        assert max(after) == pytest.approx(20) and after[18] == pytest.approx(10)
        app.query_one("#schedule-input", Input).value = "0:(sin(t) + 2*tt)"
        await pilot.pause()
        error = text(app, "#schedule-error")
        assert "motion.angle, keyframe 0, column 15: unknown variable 'tt'" in error and "^" in error
        assert app.session.settings.motion.angle == "0:(0), 36:(20)"


async def test_audio_filters_add_and_reject_bad_names():
    app = make()
    async with running(app) as pilot:
        app.action_tab("audio")
        await pilot.pause()
        pane = app.query_one(AudioPane)
        for field, value in (("name", "fMid"), ("center", "400"), ("width", "200"), ("order", "4")):
            pane.query_one(f"#filter-{field}", Input).value = value
        await click(pilot, "#filter-save")
        await pilot.pause()
        assert [f.name for f in app.session.settings.audio.filters] == ["fLo", "fHi", "fMid"]
        pane.query_one("#filter-name", Input).value = "t"
        await click(pilot, "#filter-save")
        await pilot.pause()
        assert "built-in name" in text(app, "#audio-error")
        assert len(app.session.settings.audio.filters) == 3


async def test_audio_analysis_feeds_the_motion_plot():
    app = make()
    async with running(app) as pilot:
        for _ in range(200):
            await pilot.pause(0.1)
            if "BPM" in text(app, "#audio-error"):
                break
        assert "tempo 120" in text(app, "#audio-error")
        motion = app.query_one(MotionPane)
        assert "fLo" in motion.variables
        motion.select("motion.zoom")
        await pilot.pause()
        series = app.query_one("#schedule-plot", SchedulePlot).series
        assert max(series) > min(series) + 0.02  # the bass moves the zoom


async def test_settings_are_generated_and_validated():
    app = make()
    async with running(app) as pilot:
        app.action_tab("settings")
        width = app.query_one("#field-image-W", Input)
        width.value = "640"
        await pilot.pause()
        assert app.session.settings.image.W == 640
        width.value = "wide"
        await pilot.pause()
        assert "valid integer" in text(app, "#error-image-W")
        assert not app.query("#field-model-backend")  # closed groups are built when opened
        app.query_one("#group-model").collapsed = False
        await pilot.pause()
        app.query_one("#field-model-backend", Select).value = "preview"
        await pilot.pause()
        assert app.session.settings.model.backend == "preview"


async def test_controlnet_units_are_added_edited_validated_and_removed(tmp_path):
    from textual.widgets import Button

    app = make()
    async with running(app, size=(120, 60)) as pilot:
        app.action_tab("settings")
        section = app.query_one("#group-controlnet")
        section.collapsed = False
        await until(pilot, lambda: app.query("#add-unit"), "the section is built")
        assert section.title == "controlnet (0 units)"
        app.query_one("#add-unit", Button).press()
        await until(pilot, lambda: app.query("#unit-s1-weight"), "unit 1's fields")
        await pilot.pause()  # and composed (the Select's parts)
        assert len(app.session.settings.controlnet) == 1 and section.title == "controlnet (1 unit)"
        app.query_one("#unit-s1-model", Input).value = "lllyasviel/control_v11p_sd15_canny"
        app.query_one("#unit-s1-weight", Input).value = "0:(0.5), 10:(1)"
        app.query_one("#unit-s1-module", Input).value = "canny"
        app.query_one("#unit-s1-control_mode", Select).value = "ControlNet is more important"
        await pilot.pause()
        unit = app.session.settings.controlnet[0]
        assert (unit.model, unit.weight, unit.module) == (
            "lllyasviel/control_v11p_sd15_canny",
            "0:(0.5), 10:(1)",
            "canny",
        )
        assert unit.control_mode == "ControlNet is more important" and app.session.dirty
        app.query_one("#unit-s1-weight", Input).value = "0:(0.5"
        await pilot.pause()
        assert text(app, "#unit-error-s1-weight") and app.session.settings.controlnet[0].weight == "0:(0.5), 10:(1)"
        app.session.save(tmp_path / "with-unit.toml")
        assert "[[controlnet]]" in (tmp_path / "with-unit.toml").read_text()
        app.query_one("#add-unit", Button).press()
        await until(pilot, lambda: app.query("#unit-s2-weight"), "unit 2")
        await pilot.pause()
        app.query_one("#remove-unit-s1", Button).press()
        await until(pilot, lambda: len(app.session.settings.controlnet) == 1, "unit 1 removed")
        await until(pilot, lambda: not app.query("#unit-s1"), "its group gone")
        assert [unit.model for unit in app.session.settings.controlnet] == [""]  # the second, new one
        assert app.query_one("#unit-s2").title == "unit 1" and section.title == "controlnet (1 unit)"
        app.query_one("#unit-s2-module", Input).value = "invert"  # now unit 1
        await pilot.pause()
        assert app.session.settings.controlnet[0].module == "invert"


async def test_command_palette_offers_presets_render_and_every_field():
    app = make()
    async with running(app) as pilot:
        titles = [title for title, _, _ in DriftwaveCommands(app.screen)._commands()]
        assert {"Open preset…", "Save preset", "Import Deforum settings…", "Render"} <= set(titles)
        assert "Jump to perlin_octaves" in titles
        app.jump_to("coherence.perlin_octaves")
        await until(pilot, lambda: app.query("#field-coherence-perlin_octaves"), "the group is built")
        field = app.query_one("#field-coherence-perlin_octaves")
        await until(pilot, lambda: app.focused is field, "the field has the cursor")


async def test_save_keeps_comments_and_quit_guards_unsaved_edits(tmp_path):
    preset = tmp_path / "mine.toml"
    preset.write_text(DEMO.read_text())
    app = make(preset=preset)
    async with running(app) as pilot:
        app.query_one("#prompt-text", TextArea).load_text("a quiet harbour")
        await pilot.pause()
        await pilot.press("ctrl+q")
        await until(pilot, lambda: app.screen.query("#save"), "asked: save, discard or cancel")
        await pilot.click("#save")
        await pilot.pause()
    saved = preset.read_text()
    assert '0 = "a quiet harbour"' in saved and "# a steady push in, kicked forward by the bass" in saved
    assert load_preset(preset).settings.prompts["0"] == "a quiet harbour"


async def test_a_bug_leaves_a_log_and_the_unsaved_edits_not_a_traceback(tmp_path):
    preset = tmp_path / "mine.toml"
    preset.write_text(DEMO.read_text())
    app = make(tmp_path, preset=preset)

    def bug():
        raise RuntimeError("a bug in a handler")

    with pytest.raises(RuntimeError, match="a bug in a handler"):
        async with running(app) as pilot:
            app.query_one("#prompt-text", TextArea).load_text("a quiet harbour")
            await pilot.pause()
            app.call_later(bug)
            await pilot.pause()
    log = (tmp_path / "tui.log").read_text()
    assert "RuntimeError: a bug in a handler" in log and "Traceback" in log
    recovered = tmp_path / "mine.recovered.toml"
    assert load_preset(recovered).settings.prompts["0"] == "a quiet harbour"
    assert '0 = "a quiet harbour"' not in preset.read_text()  # the user's file is untouched


async def test_open_asks_before_dropping_edits_and_loads_the_other_preset(tmp_path):
    app = make()
    async with running(app) as pilot:
        app.query_one("#prompt-text", TextArea).load_text("an edit not yet saved")
        await pilot.pause()
        app.action_open()
        await until(pilot, lambda: app.screen.query("#stay"), "asked before dropping the edits")
        await pilot.click("#stay")  # Cancel: nothing changes
        await until(pilot, lambda: not app.screen.query("#stay"), "the question closes")
        assert app.session.settings.prompts["0"] == "an edit not yet saved"
        app.action_open()
        await until(pilot, lambda: app.screen.query("#discard"), "asked again")
        await pilot.click("#discard")
        await until(pilot, lambda: app.screen.query("#ask-input"), "asked for the preset")
        app.screen.query_one("#ask-input", Input).value = str(ROOT / "presets" / "zoom_tunnel.toml")
        await pilot.press("enter")
        await until(pilot, lambda: app.session.path.name == "zoom_tunnel.toml", "the other preset opens")
        await until(pilot, lambda: "zoom_tunnel.toml" in app.sub_title, "its name in the title")
        tunnel = load_preset(ROOT / "presets" / "zoom_tunnel.toml").settings
        assert app.session.path.name == "zoom_tunnel.toml" and not app.session.dirty
        assert app.query_one("#prompt-text", TextArea).text == tunnel.prompts[min(tunnel.prompts, key=int)]
        assert "zoom_tunnel.toml" in app.sub_title


async def test_import_a_deforum_file_lists_its_warnings():
    app = make()
    async with running(app) as pilot:
        app.action_import()
        await until(pilot, lambda: app.screen.query("#ask-input"), "asked for the file")
        app.screen.query_one("#ask-input", Input).value = str(ROOT / "tests" / "data" / "deforum_a1111_settings.txt")
        await pilot.press("enter")
        await until(pilot, lambda: app.session.path is None, "the import replaces the session")
        assert app.session.dirty and app.session.path is None  # unsaved until written
        assert app.session.settings.animation.blend == "hold"
        assert any(line.startswith("import: ") for line in app.query_one(RenderPane).lines)
        app.action_import()
        await until(pilot, lambda: app.screen.query("#discard"), "asked before dropping the import")
        await pilot.click("#discard")
        await until(pilot, lambda: app.screen.query("#ask-input"), "asked for the file")
        app.screen.query_one("#ask-input", Input).value = str(ROOT / "missing.txt")
        await pilot.press("enter")
        await until(pilot, lambda: any("missing.txt" in n.message for n in app._notifications), "the error shows")
        assert "missing.txt" in " ".join(n.message for n in app._notifications)


async def test_render_in_a_real_engine_shows_progress_and_frames(tmp_path):
    app = make(
        tmp_path,
        connect=True,
        model__backend="preview",
        animation__max_frames=12,
        image__W=64,
        image__H=64,
        batch__outdir=str(tmp_path / "out"),
    )
    async with running(app) as pilot:
        await until_state(app, pilot, "idle")
        assert app.engine_state == "idle" and app.client.started_engine
        await pilot.press("ctrl+r")
        await until_state(app, pilot, "done", "error")
        assert app.engine_state == "done", app.job
        await pilot.pause(0.3)
        assert "frame 12/12" in str(app.query_one("#render-rate").render())
        shown = app.render_pane.shown_frame
        assert shown and shown.endswith("000011.png")
        assert app.query_one("#render-preview").image is not None
        await app.client.send("shutdown")


async def test_a_second_tui_attaches_to_the_running_render_and_its_settings(tmp_path):
    options = dict(
        model__backend="tiny",
        animation__max_frames=100_000,
        image__W=64,
        image__H=64,
        batch__outdir=str(tmp_path / "out"),
    )
    first = make(tmp_path, connect=True, **options)
    async with running(first) as pilot:
        await until_state(first, pilot, "idle")
        first.query_one("#prompt-text", TextArea).load_text("a lighthouse in fog")
        await pilot.pause()
        await pilot.press("ctrl+r")
        await until_state(first, pilot, "rendering")
    # the first TUI is gone (as after a dropped SSH connection); the render is not
    second = make(tmp_path, connect=True)
    async with running(second) as pilot:
        await until_state(second, pilot, "rendering")
        await pilot.pause(0.5)
        assert second.session.settings.prompts["0"] == "a lighthouse in fog"  # the job's, not the file's
        assert second.session.settings.animation.max_frames == 100_000  # still rendering: cancelled below
        assert second.query_one("#tabs", TabbedContent).active == "render"  # progress and frame in view
        assert "attached to the running render" in " ".join(n.message for n in second._notifications)
        for _ in range(100):
            if second.render_pane.shown_frame:
                break
            await pilot.pause(0.1)
        shown = second.render_pane.shown_frame
        assert shown and Path(shown).exists()
        await second.client.send("cancel")
        await until_state(second, pilot, "cancelled")
        await second.client.send("shutdown")


async def test_engine_errors_reach_the_tui_and_edits_stay(tmp_path):
    app = make(
        tmp_path,
        connect=True,
        model__model=str(tmp_path / "missing-model"),
        image__W=64,
        image__H=64,
        batch__outdir=str(tmp_path / "out"),
    )
    async with running(app) as pilot:
        await until_state(app, pilot, "idle")
        app.query_one("#prompt-text", TextArea).load_text("kept")
        await pilot.press("ctrl+r")
        await until_state(app, pilot, "error")
        assert app.engine_state == "error"
        log = "\n".join(app.query_one(RenderPane).lines)
        assert "missing-model does not exist" in log and "set model.backend to preview" in log
        assert app.session.settings.prompts["0"] == "kept"
        await app.client.send("shutdown")


# -- snapshots (half-cell image mode, no engine) ------------------------------------------------------------


def _snap(tab=None, run=None):
    async def before(pilot):
        while not pilot.app.query("#pane-settings"):
            await pilot.pause()
        if tab:
            pilot.app.action_tab(tab)
        if run:
            await run(pilot)
        await pilot.pause()

    return before


def test_snapshot_prompts_80x24(snap_compare):
    assert snap_compare(make(), terminal_size=(80, 24), run_before=_snap())


def test_snapshot_motion_with_an_error_200x60(snap_compare):
    async def bad(pilot):
        pilot.app.query_one(MotionPane).select("motion.angle")
        await pilot.pause()
        pilot.app.query_one("#schedule-input", Input).value = "0:(sin(t), 30:(1)"

    assert snap_compare(make(), terminal_size=(200, 60), run_before=_snap("motion", bad))


def test_snapshot_settings_80x24(snap_compare):
    assert snap_compare(make(), terminal_size=(80, 24), run_before=_snap("settings"))


def test_snapshot_render_with_a_frame_80x24(snap_compare):
    async def frame(pilot):
        app = pilot.app
        app.on_engine_message(
            {
                "type": "state",
                "state": "rendering",
                "job": {"folder": "outputs/demo/run"},
                "progress": {"frame": 30, "total": 72, "fps": 2.5, "eta_s": 16.8},
                "latest_frame": None,
                "log": ["rendering to outputs/demo/run"],
            }
        )
        await pilot.pause()
        app.clear_notifications()  # toasts time out: keep them out of the picture
        app.query_one("#render-preview").image = str(ROOT / "tests" / "data" / "frame.png")
        await pilot.pause(0.2)  # the preview's width follows the image: let the layout settle

    assert snap_compare(make(), terminal_size=(80, 24), run_before=_snap("render", frame))


async def test_the_live_tab_shows_the_session_and_its_keys_steer_it(tmp_path):
    live = {"audio_file": str(DEMO.parent / "demo_track.flac"), "duration": 30}
    options = dict(model__backend="preview", image__W=64, image__H=64, batch__outdir=str(tmp_path / "out"))
    app = make(tmp_path, connect=True, live=live, live__target_fps=10, **options)
    async with running(app) as pilot:
        await until_state(app, pilot, "rendering")
        pane = app.query_one("#pane-live")
        for _ in range(100):
            if pane.latest and pane.shown_frame >= 0:
                break
            await asyncio.sleep(0.1)
        await pilot.pause()
        assert "fps" in str(app.query_one("#live-status", Static).render())
        assert "fLo" in text(app, "#live-meters") and "amp" in text(app, "#live-meters")
        assert app.focused is pane
        await pilot.press("f", "plus", "p")
        for _ in range(100):
            lines = app.query_one("#pane-render").lines
            if any(line.startswith("snapshot: ") for line in lines) and any("frozen True" in entry for entry in lines):
                break
            await asyncio.sleep(0.1)
        await pilot.pause()
        lines = app.query_one("#pane-render").lines
        snapshot = next(line for line in lines if line.startswith("snapshot: ")).removeprefix("snapshot: ")
        assert Path(snapshot).exists()
        assert any("strength 0.65" in line for line in lines)  # the demo's 0.6 at frame 0, one step up
        assert "FROZEN" in text(app, "#live-controls")
        await app.client.send("cancel")
        await until_state(app, pilot, "cancelled", "done")
        await app.client.send("shutdown")


async def test_the_serve_switch_starts_the_session_again_serving_the_page_and_back(tmp_path):
    import urllib.request

    from test_serve import free_port

    port = free_port()
    live = {"duration": 120, "serve": port}
    options = dict(model__backend="preview", image__W=64, image__H=64, batch__outdir=str(tmp_path / "out"))
    app = make(tmp_path, connect=True, live=live, live__target_fps=10, **options)
    async with running(app) as pilot:
        pane = app.query_one("#pane-live")

        async def frame_where(served: bool) -> None:
            await until(pilot, lambda: pane.latest is not None and (pane.latest.page is not None) == served, "a frame")

        await frame_where(served=True)
        first = pane.latest.page
        assert first.startswith(f"http://localhost:{port}/?token=") and first in text(app, "#live-page")
        with urllib.request.urlopen(first, timeout=30) as answer:  # the real page, from the real engine
            assert answer.status == 200 and b"WebSocket" in answer.read()
        await pilot.press("s")  # off: the session starts again on the preset's track
        await frame_where(served=False)
        assert text(app, "#live-page") == "" and app.engine_state == "rendering"
        assert app.live_options["serve"] is None and app.focused is pane
        await pilot.press("s")  # on again, at the same port, with a new token
        await frame_where(served=True)
        assert pane.latest.page.startswith(f"http://localhost:{port}/?token=") and pane.latest.page != first
        await app.client.send("cancel")
        await until_state(app, pilot, "cancelled", "done")
        await app.client.send("shutdown")


async def test_the_sweep_tab_runs_a_sweep_in_the_engine_and_a_second_tui_sees_its_variants(tmp_path):
    options = dict(
        model__backend="preview",
        animation__max_frames=4,
        image__W=64,
        image__H=64,
        batch__outdir=str(tmp_path / "out"),
    )
    first = make(tmp_path, connect=True, **options)
    async with running(first, size=(120, 36)) as pilot:
        await until_state(first, pilot, "idle")
        first.action_tab("sweep")
        await pilot.pause()
        first.query_one("#sweep-vary", Input).value = "seed=1..3; nosuch=2"
        await click(pilot, "#sweep-start")
        assert "unknown setting 'nosuch'" in text(first, "#sweep-status")  # said in the tab, nothing sent
        first.query_one("#sweep-vary", Input).value = "seed=1..3"
        first.query_one("#sweep-workers", Input).value = "2"
        await click(pilot, "#sweep-start")
        await until_state(first, pilot, "done", "error", "cancelled")
        assert first.engine_state == "done", first.job
        table = first.query_one("#sweep-table", DataTable)
        await until(pilot, lambda: table.row_count == 3, "a row per variant")
        rows = [table.get_row(key) for key in ("0_seed-1", "1_seed-2", "2_seed-3")]
        assert [(row[1], row[2]) for row in rows] == [("done", "4/4")] * 3
    second = make(tmp_path, connect=True)  # a TUI attaching later (the engine is still up)
    async with running(second, size=(120, 36)) as pilot:
        await until_state(second, pilot, "done")
        table = second.query_one("#sweep-table", DataTable)
        await until(pilot, lambda: table.row_count == 3, "the sweep's variants from the engine's snapshot")
        assert table.get_row("2_seed-3")[1] == "done"
        await second.client.send("shutdown")
