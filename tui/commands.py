"""The command palette's Driftwave commands: presets, import, render control, a jump to any setting."""

from __future__ import annotations

from textual.command import DiscoveryHit, Hit, Hits, Provider

DISCOVERED = 7  # the commands listed before anything is typed: all but the jumps


class DriftwaveCommands(Provider):
    """Command palette: presets, import, render control, and a jump to any setting."""

    def _commands(self) -> list[tuple[str, str, object]]:
        app = self.app
        commands = [
            ("Open preset…", "open a TOML preset", app.action_open),
            ("Save preset", "write the preset (comments kept)", app.action_save),
            ("Save preset as…", "write the preset to a new file", app.action_save_as),
            ("Import Deforum settings…", "read a Deforum settings file into the editor", app.action_import),
            ("Render", "submit these settings to the engine", app.action_render),
            ("Pause / resume render", "", app.action_pause),
            ("Cancel render", "stop after the frame being written (resumable)", app.action_cancel),
        ]
        from engine.settings import FIELDS

        for name, (group, field) in FIELDS.items():
            commands.append((f"Jump to {name}", f"[{group}]", lambda path=f"{group}.{field}": app.jump_to(path)))
        return commands

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands()[:DISCOVERED]:
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
