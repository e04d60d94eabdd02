"""Every engine option is declared once, in its field's metadata, and the config obeys it."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest

from napari_propsam.config import (
    OPTION_KINDS,
    WIDGET_PLACES,
    BoxConfig,
    OptionSpec,
    PropagationConfig,
    declare_option,
    option_specs,
    split_options,
)
from napari_propsam.similar import SimilarConfig
from napari_propsam.training.tasks import TaskConfig

CONFIGS = (PropagationConfig, BoxConfig, SimilarConfig)
SPECS = [s for c in CONFIGS for s in option_specs(c)]


def _id(spec: OptionSpec) -> str:
    return spec.name


@pytest.mark.parametrize("config", CONFIGS)
def test_every_field_is_declared(config):
    assert [s.name for s in option_specs(config)] == [f.name for f in fields(config)]
    assert option_specs(config()) == option_specs(config)  # an instance reads the same


@pytest.mark.parametrize("spec", SPECS, ids=_id)
def test_declarations_are_complete(spec):
    assert spec.label.strip() and spec.help.strip() and spec.kind in OPTION_KINDS
    if spec.kind in ("real", "whole", "percentiles"):
        lo, hi = spec.range
        assert lo < hi and spec.unit.strip(), "numbers say their unit and range"
    if spec.kind == "choice":
        assert spec.default in spec.choices and spec.range is None
    if spec.widget is not None:
        assert spec.widget in WIDGET_PLACES and spec.tooltip.strip()
        if spec.kind in ("real", "whole"):
            wlo, whi = spec.widget_range
            lo, hi = spec.range
            assert lo <= wlo < whi <= hi and math.isfinite(whi) and spec.step > 0
            assert wlo <= spec.default <= whi
    assert spec.flag == "--" + (spec.flag_name or spec.name).replace("_", "-")


@pytest.mark.parametrize("spec", SPECS, ids=_id)
def test_default_is_valid_and_a_class_attribute(spec):
    config = next(c for c in CONFIGS if spec.name in {f.name for f in fields(c)})
    assert getattr(config, spec.name) == spec.default == getattr(config(), spec.name)
    assert spec.check(spec.default) == spec.default


NUMBERS = [s for s in SPECS if s.kind in ("real", "whole")]


@pytest.mark.parametrize("spec", NUMBERS, ids=_id)
def test_the_declared_range_is_what_the_config_accepts(spec):
    config = next(c for c in CONFIGS if spec.name in {f.name for f in fields(c)})
    lo, hi = spec.range
    step = 1 if spec.kind == "whole" else 1e-6
    # The bounds themselves pass the option's own check (a percentile pair additionally needs
    # lower < upper, which the config checks after every field).
    assert spec.check(hi if math.isfinite(hi) else 10**6) == (hi if math.isfinite(hi) else 10**6)
    if spec.low_open:
        with pytest.raises(ValueError, match=f"^{spec.name} must be a finite number > "):
            config(**{spec.name: lo})
    else:
        assert spec.check(lo) == lo
    # Past a bound, the config refuses the value, naming the option.
    with pytest.raises(ValueError, match=f"^{spec.name} must be"):
        config(**{spec.name: lo - step})
    if math.isfinite(hi):
        with pytest.raises(ValueError, match=f"^{spec.name} must be"):
            config(**{spec.name: hi + step})


@pytest.mark.parametrize("spec", [s for s in SPECS if s.kind == "choice"], ids=_id)
def test_choices_are_what_the_config_accepts(spec):
    for choice in spec.choices:
        assert getattr(PropagationConfig(**{spec.name: choice}), spec.name) == choice
    listed = ", ".join(repr(c) for c in spec.choices)
    with pytest.raises(ValueError, match=rf"^{spec.name} must be one of \[{listed}\]"):
        PropagationConfig(**{spec.name: "bogus"})


def test_percentile_candidates_follow_their_range():
    spec = next(s for s in option_specs(BoxConfig) if s.name == "vmin_percentiles")
    assert spec.range == (0.0, 100.0)
    assert BoxConfig(vmin_percentiles=[0, 5]).vmin_percentiles == (0.0, 5.0)
    with pytest.raises(ValueError, match="vmin_percentiles must be a finite number >= 0"):
        BoxConfig(vmin_percentiles=(-1.0,))


def test_whole_numbers_are_normalised():
    assert PropagationConfig(min_crop=32.0).min_crop == 32
    assert isinstance(PropagationConfig(max_rounds=2.0).max_rounds, int)


def test_a_declaration_without_its_range_or_choices_is_refused():
    with pytest.raises(ValueError, match="range for numbers"):
        declare_option("X", "x", "real")
    with pytest.raises(ValueError, match="range for numbers"):
        declare_option("X", "x", "choice")
    with pytest.raises(ValueError, match="bad option declaration"):
        declare_option("X", "x", "complex", range=(0, 1))
    with pytest.raises(ValueError, match="bad option declaration"):
        declare_option("X", "x", "flag", widget="sidebar")


def test_split_options_refuses_swapped_configs():
    with pytest.raises(TypeError, match="pass a BoxConfig as box_config="):
        split_options({}, BoxConfig())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pass a PropagationConfig as config="):
        split_options({}, None, PropagationConfig())  # type: ignore[arg-type]
    prop, box = split_options({"thickness": 3}, PropagationConfig(min_area=5), BoxConfig())
    assert (prop.thickness, prop.min_area, box) == (3.0, 5.0, BoxConfig())


def test_training_samples_with_the_engine_defaults():
    task = TaskConfig()
    engine = PropagationConfig()
    assert (task.thickness, task.max_neighbours, task.min_crop) == (
        engine.thickness,
        engine.max_neighbours,
        engine.min_crop,
    )


def test_find_similar_checks_its_one_rule_between_fields():
    assert SimilarConfig(min_area_factor=4.0, max_area_factor=4.0).min_area_factor == 4.0
    with pytest.raises(ValueError, match="need min_area_factor <= max_area_factor"):
        SimilarConfig(min_area_factor=5.0)
    assert SimilarConfig(slice_step=3.0).slice_step == 3  # normalised like the engine's
