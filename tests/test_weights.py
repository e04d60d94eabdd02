"""Checkpoints: our safetensors format, released .pth files, and clear errors."""

from __future__ import annotations

import json

import pytest
import torch

import napari_propsam as ps
from conftest import TINY, ellipsoid_volume
from napari_propsam.models import Box2Mask, PropMask
from napari_propsam.registry import clear_cache, list_models, resolve_model
from napari_propsam.weights import (
    CheckpointError,
    load_network,
    load_pam_checkpoint,
    load_safetensors,
    save_checkpoint,
)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def test_safetensors_roundtrip_records_everything(tmp_path):
    torch.manual_seed(3)
    model = PropMask(TINY)
    path = save_checkpoint(tmp_path / "pm.safetensors", model, provenance={"steps": 7})
    loaded = load_safetensors(path, "propmask")
    assert loaded.arch == TINY
    assert loaded.metadata["provenance"] == {"steps": 7}
    assert loaded.metadata["format"] == "napari-propsam/1"
    assert "normalisation" in loaded.metadata["preprocessing"]
    assert loaded.metadata["version"] == ps.__version__
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v)


def test_network_kind_is_checked(tmp_path):
    path = save_checkpoint(tmp_path / "b.safetensors", Box2Mask(TINY))
    with pytest.raises(CheckpointError, match="expected propmask"):
        load_safetensors(path, "propmask")


def test_corrupt_files_are_reported(tmp_path):
    for name in ("x.safetensors", "x.pth"):
        p = tmp_path / name
        p.write_bytes(b"not a checkpoint at all")
        with pytest.raises(CheckpointError, match="cannot read"):
            load_network(p)
    with pytest.raises(CheckpointError, match="not found"):
        load_network(tmp_path / "missing.pth")


def test_mismatched_checkpoint_names_the_keys(tmp_path):
    state = PropMask(TINY).state_dict()
    state.pop("proposing_stage.cross_attns.0.fc_out.bias")
    state["proposing_stage.extra.weight"] = torch.zeros(1)
    p = tmp_path / "bad.pth"
    torch.save({"model_state_dict": state}, p)
    with pytest.raises(CheckpointError) as err:
        load_pam_checkpoint(p)
    msg = str(err.value)
    assert "missing" in msg and "cross_attns.0.fc_out.bias" in msg
    assert "unexpected" in msg and "proposing_stage.extra.weight" in msg


def test_shape_mismatch_is_named(tmp_path):
    torch.manual_seed(0)
    good = PropMask(TINY)
    path = save_checkpoint(tmp_path / "pm.safetensors", good)
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    meta = dict(meta)
    arch = json.loads(meta["arch"])
    arch["max_channels"] = 8  # the record no longer matches the tensors
    meta["arch"] = json.dumps(arch)
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_safetensors(path)


def test_pth_with_code_is_not_unpickled(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {"x": Evil()}}, p)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_pam_checkpoint(p)


def test_model_path_and_sibling_box2mask(tmp_path):
    torch.manual_seed(0)
    pm, bm = PropMask(TINY), Box2Mask(TINY)
    torch.save(
        {"model_state_dict": {"module." + k: v for k, v in pm.state_dict().items()}},
        tmp_path / "propmask.pth",
    )
    torch.save(
        {"model_state_dict": {"module." + k: v for k, v in bm.state_dict().items()}},
        tmp_path / "box2mask.pth",
    )
    bundle = resolve_model(str(tmp_path / "propmask.pth"))
    assert bundle.propmask.network == "propmask" and bundle.box2mask.network == "box2mask"
    # The released files run 224 px; a foreign tiny file gets the shapes it has plus 224 input.
    assert bundle.propmask.arch.max_channels == 16
    image, truth = ellipsoid_volume(shape=(16, 32, 32), center=(8, 16, 16), radii=(5, 6, 6))
    out = ps.segment(
        image,
        slice_index=8,
        mask=truth[8],
        model=str(tmp_path / "propmask.pth"),
        max_rounds=1,
        thickness=2,
    )
    assert out.shape == image.shape and out[8][truth[8]].all()


def test_list_models_names_the_default():
    names = [m.name for m in list_models()]
    assert "lite" in names
    info = list_models()[0]
    assert info.propmask.name.endswith(".safetensors")


def test_unsupported_model_spec():
    with pytest.raises(TypeError, match="model"):
        resolve_model(3.5)


# --- damaged and hostile checkpoints (issue 13, item 8) ---------------------------------------


def _rewrite_metadata(path, **changes):
    """Save ``path``'s tensors again with some metadata entries replaced."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    meta.update(changes)
    save_file(load_file(str(path)), str(path), metadata=meta)


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_small_safetensors_claiming_a_huge_network_is_refused_before_allocating(tmp_path):
    import time

    path = save_checkpoint(tmp_path / "pm.safetensors", PropMask(TINY))
    arch = TINY.to_dict() | {"base_channels": 4096, "max_channels": 4096}
    _rewrite_metadata(path, arch=json.dumps(arch))
    before, start = _peak_rss_mb(), time.perf_counter()
    with pytest.raises(CheckpointError, match="does not match the architecture") as err:
        load_safetensors(path)
    assert str(path) in str(err.value)
    # The claimed network has ~6 G parameters (24 GB): refused in well under a second and
    # without the process growing by anything like that.
    assert time.perf_counter() - start < 5.0
    assert _peak_rss_mb() - before < 500


def test_a_tiny_pth_of_expanded_tensors_cannot_claim_a_huge_network(tmp_path):
    from napari_propsam.models import ArchConfig

    with torch.device("meta"):
        huge = PropMask(ArchConfig(base_channels=4096, max_channels=4096))
    # Every weight is one stored number expanded to a 4096-channel shape: a few KB on disk.
    state = {k: torch.zeros(1).expand(v.shape) for k, v in huge.state_dict().items()}
    p = tmp_path / "propmask.pth"
    torch.save({"model_state_dict": state}, p)
    assert p.stat().st_size < 1_000_000
    before = _peak_rss_mb()
    with pytest.raises(CheckpointError, match="stores only") as err:
        load_pam_checkpoint(p)
    assert str(p) in str(err.value)
    assert _peak_rss_mb() - before < 500


def test_a_negative_width_is_a_checkpoint_error_naming_the_file(tmp_path):
    path = save_checkpoint(tmp_path / "pm.safetensors", PropMask(TINY))
    _rewrite_metadata(path, arch=json.dumps(TINY.to_dict() | {"base_channels": -4}))
    with pytest.raises(CheckpointError, match="cannot be built") as err:
        load_network(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("key", ["provenance", "preprocessing"])
def test_bad_metadata_json_is_a_checkpoint_error_naming_file_and_key(tmp_path, key):
    path = save_checkpoint(tmp_path / "pm.safetensors", PropMask(TINY))
    _rewrite_metadata(path, **{key: "{not json"})
    with pytest.raises(CheckpointError, match=f"'{key}' metadata is not valid JSON") as err:
        load_network(path)
    assert str(path) in str(err.value)


def test_the_weights_only_refusal_never_advises_unpickling(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {"x": Evil()}}, p)
    with pytest.raises(CheckpointError) as err:
        load_pam_checkpoint(p)
    msg = str(err.value)
    assert "weights_only=False" not in msg and "never unpickles" in msg and str(p) in msg
    assert ".safetensors" in msg  # says what is supported instead


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_damaged_pth_is_a_checkpoint_error_naming_the_file(tmp_path, damage):
    p = tmp_path / "propmask.pth"
    torch.save({"model_state_dict": PropMask(TINY).state_dict()}, p)
    data = p.read_bytes()
    p.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as err:
        load_network(p)
    assert str(p) in str(err.value)


def test_a_folder_as_model_says_it_is_a_folder(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        resolve_model(str(tmp_path))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "cannot read checkpoint"),
        ("list", "holds a list"),
        ("partial", "lacks"),
    ],
)
def test_a_bad_resume_state_is_refused_with_its_name(tmp_path, content, match):
    from napari_propsam.weights import check_resume_state

    p = tmp_path / "last.pt"
    if content == "list":
        torch.save([1, 2], p)
    elif content == "partial":
        torch.save({"model": PropMask(TINY).state_dict(), "step": 3}, p)
    else:
        p.write_bytes(content)
    with pytest.raises(CheckpointError, match=match) as err:
        check_resume_state(p)
    assert str(p) in str(err.value) and "start over" in str(err.value)
    check_resume_state(tmp_path / "absent.pt")  # nothing to resume: nothing to refuse
