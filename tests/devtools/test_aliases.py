"""The old module paths (napari_propsam.synthetic, .evaluation, .baselines, .demo, .prompts) are
deprecated aliases: they warn, naming the new path, and are the new module objects themselves.

pytest's configuration ignores DeprecationWarning, and a module warns only on its first import,
so each check runs in a fresh interpreter that records every warning.
"""

from __future__ import annotations

import json
import subprocess
import sys

from napari_propsam._deprecated import MOVED

# Imports each old path in a fresh interpreter; prints, per path, the warnings it raised and
# whether the old name is the new module. A few objects are compared by identity, and a
# submodule is imported through the old package name.
PROBE = """
import importlib, json, sys, warnings

moved = json.loads(sys.argv[1])
out = {}
for old, new in moved.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        __import__(old)  # a plain import, so the warning's frame is this line
    module = sys.modules[old]
    out[old] = {
        "warnings": [
            [w.category.__name__, str(w.message), w.filename]
            for w in caught if issubclass(w.category, DeprecationWarning)
        ],
        "same": module is importlib.import_module(new) and sys.modules[old] is module,
    }

import napari_propsam.synthetic.labelmaps as old_labelmaps
import napari_propsam.synthetic as old_syn
import napari_propsam.devtools.synthetic as syn
import napari_propsam.devtools.synthetic.labelmaps as labelmaps
from napari_propsam.prompts import collect_prompts
from napari_propsam.evaluation import Case
from napari_propsam.devtools.evaluation import Case as NewCase
import napari_propsam.prompt_checks as checks

out["identity"] = [
    old_labelmaps is labelmaps,
    old_syn.make_volume is syn.make_volume,
    old_syn.SyntheticVolume is syn.SyntheticVolume,
    sys.modules["napari_propsam.synthetic.labelmaps"] is labelmaps,
    collect_prompts is checks.collect_prompts,
    Case is NewCase,
]
print(json.dumps(out))
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


def test_old_paths_warn_and_are_the_new_modules() -> None:
    res = _run("-c", PROBE, json.dumps(MOVED))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for old, new in MOVED.items():
        assert out[old]["same"], old
        # exactly one warning, naming the new path, pointing at the line that imported the old
        # one (the probe, "<string>"), not at the alias machinery
        [(category, message, filename)] = out[old]["warnings"]
        assert category == "DeprecationWarning"
        assert old in message and f"import {new} instead" in message
        assert filename == "<string>", filename
    assert out["identity"] == [True] * 6


def test_new_paths_do_not_warn() -> None:
    code = (
        "import importlib, json, sys\n"
        "for m in json.loads(sys.argv[1]).values(): importlib.import_module(m)"
    )
    res = _run("-W", "error::DeprecationWarning", "-c", code, json.dumps(MOVED))
    assert res.returncode == 0, res.stderr


def test_old_demo_still_runs_as_a_script() -> None:
    res = _run("-m", "napari_propsam.demo", "--help")
    assert res.returncode == 0, res.stderr
    assert "usage: python -m napari_propsam.devtools.demo" in res.stdout
    # shown under Python's default filters, because the script itself (__main__) warns
    assert "DeprecationWarning" in res.stderr
    assert "import napari_propsam.devtools.demo instead" in res.stderr
