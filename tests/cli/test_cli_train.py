"""``propsam finetune`` on tif files, from a tiny base model, end to end."""

from __future__ import annotations

import numpy as np
import tifffile
import torch

from napari_propsam.cli import main
from napari_propsam.models import Box2Mask, PropMask
from napari_propsam.models.config import ArchConfig
from napari_propsam.weights import load_safetensors, save_checkpoint

TINY = ArchConfig(n_stages=4, base_channels=4, max_channels=16, input_size=32, n_attn_stages=2)


def test_finetune_from_tif_files(tmp_path) -> None:
    torch.manual_seed(0)
    base = tmp_path / "base"
    save_checkpoint(base / "propmask" / "propmask.safetensors", PropMask(TINY))
    save_checkpoint(base / "box2mask" / "box2mask.safetensors", Box2Mask(TINY))
    zz, yy, xx = np.mgrid[:24, :48, :48]
    ball = (zz - 12) ** 2 + (yy - 24) ** 2 + (xx - 20) ** 2 < 64
    rng = np.random.default_rng(0)
    image = (100 + 80 * ball + rng.normal(0, 5, ball.shape)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "image.tif", image)
    tifffile.imwrite(tmp_path / "labels.tif", ball.astype(np.uint8) * 4)
    out = tmp_path / "tuned"
    argv = ["finetune", "--image", str(tmp_path / "image.tif"), "--labels"]
    argv += [
        str(tmp_path / "labels.tif"),
        "--model",
        str(base / "propmask" / "propmask.safetensors"),
    ]
    assert main([*argv, "--steps", "2", "--out", str(out)]) == 0
    for net in ("propmask", "box2mask"):
        tuned = load_safetensors(out / net / f"{net}.safetensors")
        assert tuned.arch == TINY and tuned.metadata["provenance"]["steps"] == 2


def test_finetune_refuses_unannotated_labels(tmp_path) -> None:
    tifffile.imwrite(tmp_path / "image.tif", np.ones((8, 16, 16), np.uint16))
    tifffile.imwrite(tmp_path / "labels.tif", np.zeros((8, 16, 16), np.uint8))
    argv = ["finetune", "--image", str(tmp_path / "image.tif")]
    argv += ["--labels", str(tmp_path / "labels.tif"), "--out", str(tmp_path / "o")]
    assert main(argv) == 2


def test_train_init_takes_a_weights_file_or_a_run_folder(tmp_path) -> None:
    import pytest

    from napari_propsam.cli._train import _init_weights

    weights = tmp_path / "run" / "propmask" / "propmask.safetensors"
    save_checkpoint(weights, PropMask(TINY))
    assert _init_weights(None, "propmask") is None
    assert _init_weights(str(weights), "propmask") == weights
    assert _init_weights(str(weights.parent), "propmask") == weights
    with pytest.raises(SystemExit, match="no box2mask weights"):
        _init_weights(str(weights.parent), "box2mask")
