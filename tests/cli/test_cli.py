"""The ``propsam`` parser: every subcommand is registered and lists its help."""

from __future__ import annotations

import pytest

from napari_propsam.cli import build_parser, main


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"segment", "train", "finetune", "bench", "models"} <= set(sub.choices)
    for name in sub.choices:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([name, "--help"])
        assert exc.value.code == 0
        assert "usage: propsam " + name in capsys.readouterr().out


def test_models_lists_bundled_lite(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lite") and "installed" in out
