"""The widget's Advanced settings offer the released procedure's two choices."""

from __future__ import annotations

import pytest

from napari_propsam._widgets._settings import Settings
from napari_propsam.config import PropagationConfig


def test_intensity_and_stop_rule_are_advanced_settings(qtbot):
    s = Settings()
    assert s.intensity in list(s.advanced) and s.stop_rule in list(s.advanced)
    assert s.options()["intensity"] == "percentile" and s.options()["stop_rule"] == "symmetric"
    s.stop_rule.value = "released"
    s.configure(intensity="ct-window")
    cfg = PropagationConfig(**s.options())
    assert (cfg.intensity, cfg.stop_rule) == ("ct-window", "released")
    assert s.intensity.tooltip and s.stop_rule.tooltip


def test_configure_rejects_an_unknown_rule_before_touching_widgets(qtbot):
    s = Settings()
    with pytest.raises(ValueError, match="stop_rule must be one of"):
        s.configure(stop_rule="sideways", min_area=5)
    assert s.min_area.value == PropagationConfig().min_area
