"""The engine options every segmenting command shares, down to the config they build."""

from __future__ import annotations

import pytest

from napari_propsam.cli import build_parser
from napari_propsam.cli._common import engine_configs
from napari_propsam.config import PropagationConfig


def test_released_procedure_options_reach_the_config():
    args = build_parser().parse_args(
        ["segment", "v.tif", "--slice", "3", "--box", "1", "2", "9", "9", "--out", "o.tif",
         "--intensity", "ct-window", "--stop-rule", "released", "--min-area", "50"]
    )  # fmt: skip
    prop, _ = engine_configs(args)
    assert (prop.intensity, prop.stop_rule, prop.min_area) == ("ct-window", "released", 50)


def test_defaults_are_percentile_and_symmetric():
    args = build_parser().parse_args(["segment", "v.tif", "--slice", "3", "--out", "o.tif"])
    prop, _ = engine_configs(args)
    assert prop == PropagationConfig()
    assert (prop.intensity, prop.stop_rule) == ("percentile", "symmetric")


def test_unknown_values_list_the_valid_ones(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["segment", "v.tif", "--slice", "3", "--stop-rule", "asym"])
    err = capsys.readouterr().err
    assert "'symmetric'" in err and "'released'" in err
    with pytest.raises(ValueError, match=r"\['symmetric', 'released'\]"):
        PropagationConfig(stop_rule="asym")
    with pytest.raises(ValueError, match=r"\['percentile', 'ct-window'\]"):
        PropagationConfig(intensity="CT")
