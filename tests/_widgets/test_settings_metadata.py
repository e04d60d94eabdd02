"""The widget's engine controls are generated from the config metadata."""

from __future__ import annotations

from dataclasses import replace

import pytest
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, SpinBox

from napari_propsam._widgets._settings import Settings, option_control, widget_options
from napari_propsam.config import BoxConfig, PropagationConfig, option_specs

#: The controls, labels, tooltips and ranges the widget offered before they were generated.
BEFORE = {
    "thickness": ("Thickness", (0.1, 10000.0, 1.0), "Propagation thickness per round, in the "
                  "image's scale units (slices when the scale is 1)"),
    "min_area": ("Min area", (0.0, 1e7, 10.0), "Advanced: stop when the object's area on the "
                 "front slice drops below this (pixels)"),
    "crop_ratio": ("Crop ratio", (1.0, 10.0, 0.1),
                   "Advanced: crop side relative to the object's extent"),
    "intensity": ("Intensity", None, "Advanced: clip each slice to the prompt's percentile "
                  "window (percentile) or to the released notebook's integer CT window "
                  "(ct-window, for Hounsfield units)"),
    "stop_rule": ("Stop rule", None, "Advanced: symmetric stops both fronts at Min area; "
                  "released is the authors' code (Min area towards slice 0 only)"),
}  # fmt: skip
SPECS = widget_options()


def test_the_existing_controls_stay(qtbot):
    s = Settings()
    assert [spec.name for spec in SPECS] == list(BEFORE) == list(s.controls)
    for name, (label, bounds, tooltip) in BEFORE.items():
        control = getattr(s, name)
        assert control is s.controls[name]
        assert (control.label, control.tooltip) == (label, tooltip)
        if bounds is not None:
            assert isinstance(control, FloatSpinBox)
            assert (control.min, control.max, control.step) == pytest.approx(bounds)
    assert list(s.advanced) == [s.min_area, s.crop_ratio, s.intensity, s.stop_rule, s.overwrite]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_each_control_follows_its_metadata(spec, qtbot):
    control = Settings().controls[spec.name]
    assert control.label == spec.label and control.tooltip == (spec.tooltip or spec.help)
    assert control.value == spec.default
    if spec.kind == "choice":
        assert isinstance(control, ComboBox) and tuple(control.choices) == spec.choices
    else:
        assert (control.min, control.max) == pytest.approx(spec.widget_range)
        assert control.step == pytest.approx(spec.step)


def test_options_match_the_config_defaults(qtbot):
    opts = Settings().options()
    assert PropagationConfig(**opts) == PropagationConfig()
    assert {k: type(v) for k, v in opts.items()} == {
        spec.name: type(spec.default) for spec in SPECS
    }


def test_configure_sets_every_shown_option(qtbot):
    s = Settings()
    new = {"thickness": 7, "min_area": 12.5, "crop_ratio": 2.0, "intensity": "ct-window",
           "stop_rule": "released"}  # fmt: skip
    s.configure(**new, overwrite=True, device="cpu")
    assert s.options() == {**new, "thickness": 7.0}
    assert isinstance(s.options()["thickness"], float)
    assert s.overwrite.value is True and s.device.value == "cpu"


def test_configure_refuses_before_touching_widgets(qtbot):
    s = Settings()
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['max_batch'\]"):
        s.configure(max_batch=4, thickness=3)
    with pytest.raises(ValueError, match="crop_ratio must be a finite number >= 1"):
        s.configure(crop_ratio=0.5, thickness=3)
    assert s.options() == Settings().options()


def test_other_kinds_get_fitting_controls(qtbot):
    by_name = {x.name: x for x in option_specs(PropagationConfig)}
    flag = option_control(by_name["keep_prompt_component"])
    assert isinstance(flag, CheckBox) and flag.value is True
    whole = option_control(replace(by_name["max_rounds"], widget_range=(0, 50), step=1))
    assert isinstance(whole, SpinBox) and (whole.min, whole.max, whole.value) == (0, 50, 0)
    with pytest.raises(ValueError, match="no control for option 'max_rounds'"):
        option_control(by_name["max_rounds"])  # no widget_range: a spin box needs bounds
    with pytest.raises(ValueError, match="no control for option 'vmin_percentiles'"):
        option_control(option_specs(BoxConfig)[0])
