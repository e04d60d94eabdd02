"""The networks reproduce the released PAM architecture and the reference implementation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from napari_propsam.models import FULL, LITE, TINY_REFERENCE, Box2Mask, PropMask, count_parameters
from napari_propsam.weights import load_pam_checkpoint

# Vendored from the released checkpoints' architecture: every parameter name and shape.
DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def official() -> dict:
    return json.loads((DATA / "official_pam_state_dict.json").read_text())


@pytest.mark.parametrize(
    ("cls", "key", "n_params"),
    [(PropMask, "propmask", 32_482_602), (Box2Mask, "box2mask", 20_619_658)],
)
def test_full_matches_released_names_and_shapes(official, cls, key, n_params):
    model = cls(FULL)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == official[key]
    assert count_parameters(model) == n_params


def test_released_checkpoint_format_loads_strict(tmp_path, official):
    torch.manual_seed(1)
    src = PropMask(FULL)
    wrapped = {"model_state_dict": {"module." + k: v for k, v in src.state_dict().items()}}
    path = tmp_path / "propmask.pth"
    torch.save(wrapped, path)
    loaded = load_pam_checkpoint(path)
    assert loaded.network == "propmask"
    assert loaded.arch == FULL
    for k, v in src.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k


def test_box2mask_released_format_detected(tmp_path):
    src = Box2Mask(FULL)
    path = tmp_path / "box2mask.pth"
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, path)
    loaded = load_pam_checkpoint(path)
    assert loaded.network == "box2mask" and loaded.arch == FULL


def test_forward_flat_equals_batched_forward():
    torch.manual_seed(0)
    model = PropMask(TINY_REFERENCE).eval()
    g = torch.randn(2, 1, 64, 64)
    m = (torch.rand(2, 64, 64) > 0.5).float()
    a = torch.randn(2, 3, 1, 64, 64)
    with torch.no_grad():
        batched = model(g, m, a)
        flat = model.forward_flat(g, m, a.flatten(0, 1), torch.tensor([0, 0, 0, 1, 1, 1]))
        # A task alone gives the same result as inside a batch (InstanceNorm is per sample).
        alone = model(g[1:], m[1:], a[1:])
    for x, y in zip(batched, flat, strict=True):
        torch.testing.assert_close(x, y)
    torch.testing.assert_close(batched[0][3:], alone[0], atol=1e-5, rtol=1e-5)


def test_lite_is_small_and_runs():
    model = PropMask(LITE).eval()
    assert count_parameters(model) < 4_000_000
    s = LITE.input_size
    with torch.no_grad():
        outs = model(torch.zeros(1, 1, s, s), torch.zeros(1, s, s), torch.zeros(1, 2, 1, s, s))
    assert [tuple(o.shape) for o in outs] == [(2, 2, s // 2**i, s // 2**i) for i in range(5)]
