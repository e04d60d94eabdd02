"""Training: samples, loss, a seeded resumable run, fine-tuning (tiny networks, seconds)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from conftest import TINY
from napari_propsam.training import (
    LabelledVolume,
    TaskConfig,
    TrainConfig,
    finetune,
    labelled_from_arrays,
    train,
)
from napari_propsam.training.loop import multiscale_soft_dice
from napari_propsam.training.tasks import sample_box2mask, sample_propmask_task
from napari_propsam.weights import load_safetensors


def _volume(i: int) -> LabelledVolume:
    rng = np.random.default_rng(i)
    z, y, x = np.ogrid[:24, :48, :48]
    lab = np.zeros((24, 48, 48), np.int32)
    for k in range(2):
        c = rng.uniform([8, 12, 12], [16, 36, 36])
        r = rng.uniform(5, 9)
        lab[((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) < r * r] = k + 1
    img = (lab > 0) * 100.0 + rng.normal(0, 10, lab.shape)
    return LabelledVolume(img.astype(np.float32), lab, (1, 2))


def test_propmask_task_shapes_and_values():
    cfg = TaskConfig(input_size=32, n_adjacent=3)
    rng = np.random.default_rng(0)
    t = sample_propmask_task(_volume(0), rng, cfg)
    assert t["guide_x"].shape == (1, 32, 32) and t["guide_m"].shape == (32, 32)
    assert t["adj_x"].shape == (3, 1, 32, 32) and t["adj_y"].shape == (3, 32, 32)
    assert t["guide_x"].min() >= -1.5 and t["guide_x"].max() <= 1.5
    assert set(t["adj_y"].unique().tolist()) <= {0.0, 1.0}
    assert t["guide_m"].sum() > 0


def test_propmask_tasks_at_the_plane_edge_keep_the_guide_in_the_crop():
    # A wide object in a thin stack: across Z the plane is 4 rows high while the crop side is
    # ~110, so the jittered crop used to start past the plane's last row.
    lab = np.zeros((4, 64, 64), np.int32)
    lab[:, 4:60, 4:60] = 1
    img = lab * 100.0 + np.random.default_rng(0).normal(0, 10, lab.shape)
    vol = LabelledVolume(img.astype(np.float32), lab, (1,))
    cfg = TaskConfig(
        input_size=16, n_adjacent=2, perturb_prob=0.0, rotate_prob=0.0, crop_scale=(2.0, 2.0)
    )
    rng = np.random.default_rng(3)
    for _ in range(60):
        t = sample_propmask_task(vol, rng, cfg)
        assert t is not None and t["guide_m"].sum() > 0


def test_box2mask_sample_shapes():
    rng = np.random.default_rng(1)
    s = sample_box2mask(_volume(1), rng, TaskConfig(input_size=32))
    assert s["x"].shape == (3, 32, 32) and s["y"].shape == (32, 32)
    assert torch.equal(s["x"][0], s["x"][2]) and s["y"].sum() > 0


def test_soft_dice_is_zero_for_perfect_logits():
    target = torch.zeros(2, 8, 8)
    target[:, 2:6, 2:6] = 1
    logits = torch.stack([(1 - target) * 50, target * 50], dim=1)
    assert float(multiscale_soft_dice([logits, logits[..., ::2, ::2]], target)) < 1e-3
    assert float(multiscale_soft_dice([-logits], target)) > 0.9


@pytest.mark.parametrize("network", ["propmask", "box2mask"])
def test_training_is_seeded_resumable_and_logged(tmp_path, network):
    cfg = TrainConfig(
        network=network,
        arch=TINY,
        steps=4,
        batch_size=2,
        pool_size=2,
        seed=3,
        refresh_every=2,
        val_every=2,
        val_size=16,
        checkpoint_every=2,
        log_every=1,
    )
    out = train(cfg, tmp_path / "a", _volume, [_volume(99)], resume=False)
    assert out.is_file() and (tmp_path / "a" / "curves.png").is_file()
    rows = list(csv.DictReader((tmp_path / "a" / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert rows[1]["val_dice"] != "" and 0 <= float(rows[1]["val_dice"]) <= 1
    meta = load_safetensors(out).metadata
    assert meta["provenance"]["steps"] == 4 and meta["provenance"]["seed"] == 3

    # Stop after 2 steps, resume to 4: same weights as the uninterrupted run.
    half = TrainConfig(**{**cfg.__dict__, "steps": 4})
    stop_at = iter([False, False, True])
    train(half, tmp_path / "b", _volume, [_volume(99)], should_stop=lambda: next(stop_at, True))
    assert len(list(csv.DictReader((tmp_path / "b" / "log.csv").open()))) == 2
    resumed = train(half, tmp_path / "b", _volume, [_volume(99)])
    a = load_safetensors(out).model.state_dict()
    b = load_safetensors(resumed).model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)


def test_finetune_from_a_base_checkpoint(tmp_path):
    from napari_propsam.models import Box2Mask, PropMask
    from napari_propsam.registry import ModelBundle
    from napari_propsam.weights import LoadedNetwork

    torch.manual_seed(0)
    base = ModelBundle(
        "base",
        LoadedNetwork("propmask", PropMask(TINY), TINY, "<m>"),
        LoadedNetwork("box2mask", Box2Mask(TINY), TINY, "<m>"),
    )
    vols = [labelled_from_arrays(_volume(5).image, _volume(5).labels)]
    paths = finetune(vols, tmp_path, base=base, steps=2, networks=("propmask", "box2mask"))
    assert set(paths) == {"propmask", "box2mask"}
    assert load_safetensors(paths["propmask"]).arch == TINY


def test_finetune_without_objects_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no annotated object"):
        labelled_from_arrays(np.zeros((4, 8, 8)), np.zeros((4, 8, 8), int))
    with pytest.raises(ValueError, match="at least one annotated object"):
        finetune([], tmp_path)


def test_synthetic_factory_oversamples_repeated_families():
    from napari_propsam.training import synthetic_factory

    make = synthetic_factory(families=("plates", "touching", "touching"), shape=(24, 48, 48))
    names = [make(i).name.split("-")[0] for i in range(6)]
    assert names == ["plates", "touching", "touching"] * 2


def test_labelled_from_arrays_keeps_only_the_annotated_region():
    image = np.arange(40 * 64 * 64, dtype=np.float32).reshape(40, 64, 64)
    labels = np.zeros(image.shape, np.int32)
    labels[20:24, 30:34, 10:12] = 3
    vol = labelled_from_arrays(image, labels, spacing=(2, 1, 1), margin=4)
    # Object bbox z 20-24, y 30-34, x 10-12, plus 4 voxels, clipped at the volume's edges.
    assert vol.image.shape == (12, 12, 10) and vol.labels.shape == vol.image.shape
    assert vol.image[0, 0, 0] == image[16, 26, 6]
    assert vol.targets == (3,) and vol.spacing == (2.0, 1.0, 1.0)
    assert labelled_from_arrays(image, labels, margin=None).image.shape == image.shape


def test_registry_finds_the_box2mask_of_a_training_run(tmp_path):
    from napari_propsam.models import Box2Mask, PropMask
    from napari_propsam.registry import resolve_model
    from napari_propsam.weights import save_checkpoint

    save_checkpoint(tmp_path / "propmask" / "propmask.safetensors", PropMask(TINY))
    save_checkpoint(tmp_path / "box2mask" / "box2mask.safetensors", Box2Mask(TINY))
    bundle = resolve_model(tmp_path / "propmask" / "propmask.safetensors")
    assert bundle.box2mask is not None
    assert str(bundle.box2mask.source) == str(tmp_path / "box2mask" / "box2mask.safetensors")


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 truncated"])
def test_finetune_refuses_a_damaged_resume_state_naming_it(tmp_path, damage):
    from napari_propsam.weights import CheckpointError

    (tmp_path / "propmask").mkdir()
    bad = tmp_path / "propmask" / "last.pt"
    bad.write_bytes(damage)
    vols = [labelled_from_arrays(_volume(5).image, _volume(5).labels)]
    with pytest.raises(CheckpointError, match="last.pt") as info:
        finetune(vols, tmp_path, steps=1, networks=("propmask",))
    assert "weights_only=False" not in str(info.value)
