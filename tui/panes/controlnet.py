"""The Settings tab's ControlNet section: the ``[[controlnet]]`` units, each a group of its fields
(generated from the unit model), added and removed with buttons."""

from __future__ import annotations

from textual import on
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Button, Collapsible, Input, Label, Select, Static, Switch

from engine.settings import ControlNetUnit
from tui.panes.common import Edited, apply_edit, field_widget
from tui.session import Session


class ControlNetSection(Collapsible):
    """Every ControlNet unit of the session, editable; built when it first opens. Each unit's
    group has a serial of its own (``unit-s3``): its number is its place among the groups, so
    removing one renumbers the rest without rebuilding them."""

    def __init__(self, session: Session) -> None:
        super().__init__(title=self.heading(session), collapsed=True, id="group-controlnet")
        self.session = session
        self.filled = False
        self._serials = 0

    @staticmethod
    def heading(session: Session) -> str:
        count = len(session.settings.controlnet)
        return f"controlnet ({count} unit{'' if count == 1 else 's'})"

    async def fill(self) -> None:
        if self.filled:
            return
        self.filled = True
        groups = [self._unit_group(number) for number in range(1, len(self.session.settings.controlnet) + 1)]
        await self.query_one(Collapsible.Contents).mount_all([*groups, Button("Add a ControlNet unit", id="add-unit")])

    def _unit_group(self, number: int, *, collapsed: bool = True) -> Collapsible:
        self._serials += 1
        serial = f"s{self._serials}"
        rows: list[Widget] = []
        for name, info in ControlNetUnit.model_fields.items():
            value = self.session.value(f"controlnet.{number}.{name}")
            rows += [
                Horizontal(
                    Label(name, classes="field-name"),
                    field_widget(info.annotation, value, f"unit-{serial}-{name}"),
                    classes="field",
                ),
                Static(info.description or "", classes="help"),
                Static(id=f"unit-error-{serial}-{name}", classes="error"),
            ]
        rows.append(Button("Remove this unit", id=f"remove-unit-{serial}", variant="error"))
        return Collapsible(*rows, title=f"unit {number}", id=f"unit-{serial}", collapsed=collapsed, classes="unit")

    def number_of(self, serial: str) -> int:
        """The unit number (from 1) of the group ``unit-<serial>``."""
        return [group.id for group in self.query(".unit")].index(f"unit-{serial}") + 1

    @on(Button.Pressed, "#add-unit")
    async def _add(self, event: Button.Pressed) -> None:
        event.stop()
        number = self.session.add_unit()
        await self.query_one(Collapsible.Contents).mount(self._unit_group(number, collapsed=False), before=event.button)
        self.title = self.heading(self.session)
        self.post_message(Edited("controlnet"))

    @on(Button.Pressed)
    async def _remove(self, event: Button.Pressed) -> None:
        if not (event.button.id or "").startswith("remove-unit-"):
            return
        event.stop()
        serial = event.button.id.removeprefix("remove-unit-")
        self.session.remove_unit(self.number_of(serial))
        await self.query_one(f"#unit-{serial}").remove()
        for number, group in enumerate(self.query(".unit").results(Collapsible), 1):
            group.title = f"unit {number}"
        self.title = self.heading(self.session)
        self.post_message(Edited("controlnet"))

    @on(Switch.Changed)
    @on(Select.Changed)
    @on(Input.Changed)
    def _changed(self, event) -> None:
        widget = event.control if hasattr(event, "control") else event.input
        if not (widget.id or "").startswith("unit-") or not self.query(f"#{widget.id}"):
            return  # not a unit's field, or one of a unit removed
        event.stop()
        serial, name = widget.id.removeprefix("unit-").split("-", 1)
        error = self.query_one(f"#unit-error-{serial}-{name}", Static)
        path = f"controlnet.{self.number_of(serial)}.{name}"
        apply_edit(self, self.session, path, ControlNetUnit.model_fields[name].annotation, event.value, error)
