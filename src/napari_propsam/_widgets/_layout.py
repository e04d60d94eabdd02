"""Keeping the dock's width put: status lines wrap and elide, dropdowns do not grow with names.

A QLabel asks for the width of its whole text and a QComboBox for its longest entry; in a dock
widget either one widens the dock (one long error message took it from 447 to 889 px and left the
canvas 265 px). Status labels here wrap within whatever width the dock has and elide past
:data:`MAX_STATUS_CHARS` (the whole text is the tooltip); dropdowns size to a few characters and
elide their entries.
"""

from __future__ import annotations

import logging
from typing import Any

from magicgui.widgets import Label
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QSizePolicy, QWidget

logger = logging.getLogger(__name__)

#: Longest status text shown in full; longer text is cut with "…" (the tooltip holds all of it).
MAX_STATUS_CHARS = 240
#: Characters a dropdown asks room for; longer layer names are elided, not widening the dock.
COMBO_CHARS = 16


class StatusLabel(Label):
    """A status line that wraps and never asks the dock for more width.

    Args:
        value: Initial text.
        **kwargs: Passed to :class:`magicgui.widgets.Label`.
    """

    def __init__(self, value: str = "", **kwargs: Any) -> None:
        super().__init__(value=value, **kwargs)
        native = self.native
        native.setWordWrap(True)
        native.setTextFormat(Qt.TextFormat.PlainText)
        # Ignored: the label takes the width the layout gives it and wraps to fit.
        native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        native.setMinimumWidth(1)
        self.value = value

    @property
    def value(self) -> str:
        """The full status text (what is shown may be elided)."""
        return getattr(self, "_full_text", "")

    @value.setter
    def value(self, text: Any) -> None:
        text = "" if text is None else str(text)
        self._full_text = text
        shown = text if len(text) <= MAX_STATUS_CHARS else text[: MAX_STATUS_CHARS - 1] + "…"
        self.native.setText(shown)
        self.native.setToolTip(text if shown != text else "")


def keep_width(root: QWidget) -> None:
    """Make every dropdown under ``root`` ask for :data:`COMBO_CHARS` characters, not for its
    longest entry (a long layer or model name is elided instead of widening the dock)."""
    for combo in root.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(COMBO_CHARS)
        policy = combo.sizePolicy()
        policy.setHorizontalPolicy(QSizePolicy.Policy.Preferred)
        combo.setSizePolicy(policy)
