"""The Settings tab: every setting the other tabs do not edit, generated from the settings model,
and the ControlNet units."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import Collapsible, Input, Label, Select, Static, Switch

from engine.settings import GROUPS
from tui.panes.common import apply_edit, field_widget
from tui.panes.controlnet import ControlNetSection
from tui.session import SCHEDULE_FIELDS, Session

PANE_FIELDS = {"prompting.negative_prompt", "audio.file", "audio.offset", "audio.filters"} | SCHEDULE_FIELDS


class SettingsGroup(Collapsible):
    """One group of settings; its fields are built the first time it opens (most never do, and
    building all ~250 at once would hold the screen still for a second)."""

    def __init__(self, session: Session, group: str, fields: list[str], *, collapsed: bool) -> None:
        super().__init__(title=group, collapsed=collapsed, id=f"group-{group}")
        self.session, self.group, self.fields = session, group, fields
        self.filled = False

    async def fill(self) -> None:
        if self.filled:
            return
        self.filled = True
        model = GROUPS[self.group]
        rows: list[Widget] = []
        for name in self.fields:
            path = f"{self.group}.{name}"
            widget_id = "field-" + path.replace(".", "-")
            widget = field_widget(model.model_fields[name].annotation, self.session.value(path), widget_id)
            rows += [
                Horizontal(Label(name, classes="field-name"), widget, classes="field"),
                Static(model.model_fields[name].description or "", classes="help"),
                Static(id=f"error-{self.group}-{name}", classes="error"),
            ]
        await self.query_one(Collapsible.Contents).mount_all(rows)


class SettingsPane(VerticalScroll):
    """Every setting the other tabs do not edit, generated from the settings model."""

    def __init__(self, session: Session, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session

    def compose(self) -> ComposeResult:
        for group, model in GROUPS.items():
            fields = [name for name in model.model_fields if f"{group}.{name}" not in PANE_FIELDS]
            if fields:
                yield SettingsGroup(self.session, group, fields, collapsed=group not in ("animation", "image"))
        yield ControlNetSection(self.session)

    async def on_mount(self) -> None:
        for group in self.query(SettingsGroup):
            if not group.collapsed:
                await group.fill()

    @on(Collapsible.Expanded)
    async def _opened(self, event: Collapsible.Expanded) -> None:
        if isinstance(event.collapsible, SettingsGroup | ControlNetSection):
            await event.collapsible.fill()

    @on(Switch.Changed)
    @on(Select.Changed)
    @on(Input.Changed)
    def _changed(self, event) -> None:
        widget = event.control if hasattr(event, "control") else event.input
        if not widget.id or not widget.id.startswith("field-"):
            return
        group, name = widget.id.removeprefix("field-").split("-", 1)
        annotation = GROUPS[group].model_fields[name].annotation
        error = self.query_one(f"#error-{group}-{name}", Static)
        apply_edit(self, self.session, f"{group}.{name}", annotation, event.value, error)

    async def focus_field(self, path: str) -> bool:
        """Open the field's group and put the cursor in it."""
        group_name, name = path.split(".", 1)
        groups = self.query(f"#group-{group_name}")
        if not groups:
            return False
        group = groups.first(SettingsGroup)
        group.collapsed = False
        await group.fill()
        widget = self.query_one(f"#field-{group_name}-{name}")
        self.call_after_refresh(lambda: (widget.focus(), self.scroll_to_widget(widget)))
        return True
