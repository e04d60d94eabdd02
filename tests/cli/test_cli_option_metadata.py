"""The engine flags are generated from the config metadata, and reach the API as configs."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from napari_propsam.cli import build_parser
from napari_propsam.cli._common import (
    ENGINE_CONFIGS,
    add_engine_options,
    argument_kwargs,
    cli_options,
    engine_configs,
)
from napari_propsam.config import BoxConfig, PropagationConfig, option_specs

#: The flags ``propsam`` offered before they were generated: they must stay.
FLAGS = {"--thickness", "--min-area", "--crop-ratio", "--intensity", "--stop-rule"}
ENGINE_COMMANDS = {
    "segment": ["segment", "v.tif", "--out", "o.tif"],
    "series": ["series", "d", "--annotations", "0:m.png", "--out", "o.tif"],
    "find-similar": ["find-similar", "v.tif", "--out", "o.tif"],
    "bench": ["bench"],
}
CLI_SPECS = [s for c in ENGINE_CONFIGS for s in cli_options(c)]


def _actions(command: str) -> dict[str, argparse.Action]:
    sub = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices[command]
    return {flag: a for a in sub._actions for flag in a.option_strings}


def test_the_existing_flags_are_generated_from_metadata():
    assert {s.flag for s in CLI_SPECS} == FLAGS


@pytest.mark.parametrize("command", sorted(ENGINE_COMMANDS))
@pytest.mark.parametrize("spec", CLI_SPECS, ids=lambda s: s.name)
def test_every_engine_command_offers_the_declared_flag(command, spec):
    action = _actions(command)[spec.flag]
    assert action.dest == spec.name
    assert action.default == spec.default
    assert action.help == spec.help and spec.help
    if spec.kind == "choice":
        assert tuple(action.choices) == spec.choices
    else:
        assert action.choices is None
        assert action.type is {"real": float, "whole": int}[spec.kind]


@pytest.mark.parametrize("command", sorted(ENGINE_COMMANDS))
def test_defaults_build_the_default_configs(command):
    args = build_parser().parse_args(ENGINE_COMMANDS[command])
    assert engine_configs(args) == (PropagationConfig(), BoxConfig())


def test_every_flag_reaches_its_config_field():
    values = {"real": "3.25", "choice": None}
    argv = list(ENGINE_COMMANDS["segment"])
    expected = {}
    for spec in CLI_SPECS:
        value = values[spec.kind] or next(c for c in spec.choices if c != spec.default)
        argv += [spec.flag, value]
        expected[spec.name] = float(value) if spec.kind == "real" else value
    prop, box = engine_configs(build_parser().parse_args(argv))
    assert {name: getattr(prop, name) for name in expected} == expected
    assert box == BoxConfig()


@pytest.mark.parametrize("spec", [s for s in CLI_SPECS if s.kind == "choice"], ids=lambda s: s.name)
def test_an_unknown_choice_lists_the_valid_ones(spec, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([*ENGINE_COMMANDS["segment"], spec.flag, "bogus"])
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err
    assert all(f"'{c}'" in err for c in spec.choices)


def test_a_value_the_engine_refuses_is_a_clear_error():
    args = build_parser().parse_args([*ENGINE_COMMANDS["segment"], "--crop-ratio", "50"])
    with pytest.raises(ValueError, match="crop_ratio must be a finite number >= 1 and <= 20"):
        engine_configs(args)


def test_other_kinds_of_option_get_fitting_arguments():
    """Flags, whole numbers and percentile lists are not offered today; their arguments are
    still generated right, so declaring ``cli=True`` is all it takes to offer one."""
    p = argparse.ArgumentParser()
    by_name = {s.name: s for c in ENGINE_CONFIGS for s in option_specs(c)}
    for name in ("max_rounds", "keep_prompt_component", "vmin_percentiles"):
        p.add_argument(by_name[name].flag, **argument_kwargs(by_name[name]))
    args = p.parse_args(["--max-rounds", "3", "--no-keep-prompt-component"])
    assert (args.max_rounds, args.keep_prompt_component) == (3, False)
    assert args.vmin_percentiles == BoxConfig().vmin_percentiles
    args = p.parse_args(["--vmin-percentiles", "1", "2.5"])
    assert args.vmin_percentiles == [1.0, 2.5]


def test_spacing_is_optional():
    p = argparse.ArgumentParser()
    add_engine_options(p, spacing=False)
    assert "--spacing" not in {f for a in p._actions for f in a.option_strings}


def test_segment_passes_the_configs_not_kwargs(tmp_path, monkeypatch):
    import napari_propsam.api as api
    from napari_propsam.cli import main
    from napari_propsam.io import write_volume

    image = tmp_path / "v.tif"
    write_volume(image, np.zeros((4, 8, 8), np.float32))
    seen = {}

    def fake_segment(img, **kwargs):
        seen.update(kwargs)
        return np.zeros(img.shape, bool)

    monkeypatch.setattr(api, "segment", fake_segment)
    out = str(tmp_path / "o.tif")
    argv = ["segment", str(image), "--slice", "1", "--box", "1", "1", "6", "6", "--out", out,
            "--thickness", "3", "--stop-rule", "released"]  # fmt: skip
    assert main(argv) == 0
    assert seen["config"] == PropagationConfig(thickness=3, stop_rule="released")
    assert seen["box_config"] == BoxConfig()
    assert not {s.name for s in option_specs(PropagationConfig)} & set(seen)


def test_find_similar_search_flags_are_generated_from_its_config():
    from napari_propsam.similar import SimilarConfig

    search = {s.flag: s for s in cli_options(SimilarConfig)}
    # The five flags find-similar offered before they were generated, with the same names.
    assert set(search) == {"--stride", "--vote-threshold", "--min-area-factor",
                           "--max-area-factor", "--split"}  # fmt: skip
    actions = _actions("find-similar")
    assert "--no-split" in actions and actions["--no-split"] is actions["--split"]
    for flag, spec in search.items():
        assert (actions[flag].dest, actions[flag].default) == (spec.name, spec.default)
        assert actions[flag].help == spec.help


def test_find_similar_flags_reach_the_search_config():
    from napari_propsam.cli._common import config_from_args
    from napari_propsam.similar import SimilarConfig

    parse = build_parser().parse_args
    assert config_from_args(parse(ENGINE_COMMANDS["find-similar"]), SimilarConfig) == (
        SimilarConfig()
    )
    argv = [*ENGINE_COMMANDS["find-similar"], "--stride", "0.25", "--vote-threshold", "0.6",
            "--min-area-factor", "0.5", "--max-area-factor", "3", "--no-split"]  # fmt: skip
    assert config_from_args(parse(argv), SimilarConfig) == SimilarConfig(
        stride=0.25, vote_threshold=0.6, min_area_factor=0.5, max_area_factor=3.0,
        split_touching=False,
    )  # fmt: skip


def test_a_bad_search_value_fails_before_any_work(tmp_path, caplog):
    from napari_propsam.cli import main

    missing = str(tmp_path / "not-there.tif")  # never read: the config is checked first
    argv = ["find-similar", missing, "--out", str(tmp_path / "o.tif"), "--box", "1", "1", "5",
            "5", "--slice", "0", "--stride", "0"]  # fmt: skip
    assert main(argv) == 2  # a user error, reported and not a traceback
    assert "stride must be a finite number > 0 and <= 1" in caplog.text
    assert "not-there" not in caplog.text  # it failed on the value, not on the missing file
