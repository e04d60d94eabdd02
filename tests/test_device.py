"""Device choice: automatic CUDA > MPS > CPU, explicit overrides, clear errors."""

from __future__ import annotations

import pytest
import torch

from napari_propsam.device import available_devices, select_device, use_half


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    import napari_propsam.device as dev

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device(None).type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "_mps_available", lambda: True)
    assert select_device("auto").type == "mps"
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    assert select_device().type == "cpu"
    assert available_devices() == ["cpu"]


def test_explicit_cpu_and_errors(monkeypatch):
    import napari_propsam.device as dev

    assert select_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):
        select_device("cuda")
    with pytest.raises(RuntimeError, match="MPS"):
        select_device("mps")
    with pytest.raises(ValueError):
        select_device("tpu")


def test_half_precision_only_on_gpu():
    assert use_half(torch.device("cuda")) and not use_half(torch.device("cpu"))
    assert not use_half(torch.device("mps"))


def test_tune_malloc_is_opt_in_and_idempotent():
    # Runs in a subprocess: the setting is process-wide and must not leak into the test run.
    import json
    import platform
    import subprocess
    import sys

    code = (
        "import json, napari_propsam.device as d; before = d._malloc_tuned; "
        "print(json.dumps([before, d.tune_malloc(), d.tune_malloc()]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, first, second = json.loads(out.stdout.strip().splitlines()[-1])
    assert before is False  # importing the package changes nothing
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert first is glibc and second is glibc


def test_the_cli_tunes_malloc_for_its_own_process(monkeypatch):
    import napari_propsam.device as device
    from napari_propsam.cli import main

    calls = []
    monkeypatch.setattr(device, "tune_malloc", lambda: calls.append(1) or True)
    assert main(["models"]) == 0
    assert calls == [1]
