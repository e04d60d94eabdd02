"""The npe2 manifest: it validates, every python_name imports, and the sample data opens."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
from npe2 import PluginManifest

import napari_propsam

MANIFEST = Path(napari_propsam.__file__).with_name("napari.yaml")
ROOT = Path(__file__).resolve().parents[1]


def test_manifest_is_valid_and_names_the_widget_and_sample():
    pm = PluginManifest.from_file(MANIFEST)
    assert pm.name == "napari-propsam"
    assert [w.display_name for w in pm.contributions.widgets] == ["PropSAM"]
    assert [s.display_name for s in pm.contributions.sample_data] == [
        "Micro-CT glomeruli (synthetic)"
    ]
    pm.validate_imports()


def test_every_python_name_imports():
    pm = PluginManifest.from_file(MANIFEST)
    names = [c.python_name for c in pm.contributions.commands if c.python_name]
    assert len(names) >= 2
    for name in names:
        module, attr = name.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), name


def test_npe2_validate_passes_for_the_installed_plugin():
    # The installed entry point (pyproject) must lead to this manifest.
    assert PluginManifest.from_distribution("napari-propsam").name == "napari-propsam"
    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-propsam"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "valid" in out.stdout, out.stdout + out.stderr


def test_sample_data_is_small_and_opens_as_image_and_ground_truth():
    from napari_propsam._sample_data import SAMPLE_FILE, glomeruli_sample

    assert SAMPLE_FILE.stat().st_size < 6_000_000
    # One source: the packaged file is the only copy in the repository.
    assert not (ROOT / "sample_data").exists()
    (image, imeta, ikind), (labels, lmeta, lkind) = glomeruli_sample()
    assert (ikind, lkind) == ("image", "labels")
    assert image.ndim == 3 and image.shape == labels.shape
    assert labels.dtype == np.int32 and labels.max() >= 1
    assert len(imeta["scale"]) == 3 and lmeta["scale"] == imeta["scale"]
