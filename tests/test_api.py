"""End-to-end API runs with tiny random models, laziness, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

import napari_propsam as ps
from conftest import ThresholdPredictor, dice, ellipsoid_volume, make_tiny_bundle
from napari_propsam.registry import ModelBundle


def _bundle(prop_bias: float, box_bias: float) -> ModelBundle:
    a, b = make_tiny_bundle(fg_bias=prop_bias), make_tiny_bundle(fg_bias=box_bias)
    return ModelBundle("tiny", a.propmask, b.box2mask)


class GuardedArray:
    """Array-like that records reads and refuses to be converted whole."""

    def __init__(self, data) -> None:
        self.data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.voxels_read = 0

    def __getitem__(self, idx):
        out = np.asarray(self.data[idx])
        self.voxels_read += out.size
        return out

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole volume was materialised")


@pytest.mark.parametrize("axis", [0, 2])
def test_mask_prompt_with_a_model_that_predicts_nothing_keeps_the_prompt(axis, ellipsoid):
    image, truth = ellipsoid
    idx = (24, 32, 30)[axis]
    prompt = truth.take(idx, axis=axis)
    out = ps.segment(image, slice_index=idx, axis=axis, mask=prompt, model=_bundle(-5, -5))
    assert out.dtype == bool and out.shape == image.shape
    np.testing.assert_array_equal(out.take(idx, axis=axis), prompt)
    assert out.sum() == prompt.sum()


def test_mask_prompt_with_a_model_that_predicts_everything_grows(ellipsoid):
    image, truth = ellipsoid
    out = ps.segment(image, slice_index=24, mask=truth[24], model=_bundle(5, 5), thickness=4)
    assert out[truth].all()  # everything predicted: the object is inside the union of crops
    assert out[0].any() and out[-1].any()  # fronts ran to both volume ends


def test_box_prompt_goes_through_box2mask(ellipsoid):
    image, _ = ellipsoid
    box = (20, 18, 44, 42)
    out = ps.segment(image, slice_index=24, box=box, model=_bundle(-5, 5))
    expected = np.zeros(image.shape[1:], bool)
    expected[20:44, 18:42] = True  # Box2Mask says "all of the box", PropMask adds nothing
    np.testing.assert_array_equal(out[24], expected)
    assert out.sum() == expected.sum()


def test_box_on_axis_1_in_plane_coordinates(ellipsoid):
    image, _ = ellipsoid
    out = ps.segment(image, slice_index=30, axis=1, box=(10, 5, 20, 25), model=_bundle(-5, 5))
    assert out[10:20, 30, 5:25].all() and out.sum() == 200


def test_box2mask_finding_nothing_is_a_clear_error(ellipsoid):
    image, _ = ellipsoid
    with pytest.raises(ValueError, match="Box2Mask found no object"):
        ps.segment(image, slice_index=24, box=(20, 18, 44, 42), model=_bundle(-5, -5))


def test_random_tiny_model_runs_on_every_axis_and_dtype(tiny_bundle):
    image, truth = ellipsoid_volume(shape=(24, 40, 44), center=(12, 20, 22), radii=(8, 8, 8))
    for axis in range(3):
        c = (12, 20, 22)[axis]
        out = ps.segment(
            image.astype(np.uint16),
            slice_index=c,
            axis=axis,
            mask=truth.take(c, axis=axis),
            model=tiny_bundle,
            device="cpu",
            thickness=3,
            max_rounds=2,
        )
        assert out.shape == image.shape and out.dtype == bool


def test_oracle_predictor_segments_accurately(ellipsoid):
    image, truth = ellipsoid
    out = ps.segment(image, slice_index=24, mask=truth[24], model=_bundle(-5, -5), thickness=4)
    gen = ps.propagate(
        image, slice_index=24, mask=truth[24], predictor=ThresholdPredictor(), thickness=4
    )
    full = np.zeros_like(out)
    for u in gen:
        if u.final:
            ps.apply_update(full, u)
    assert dice(full, truth) > 0.97


def test_inputs_are_not_modified(ellipsoid):
    image, truth = ellipsoid
    img0, prompt = image.copy(), truth[24].copy()
    ps.segment(image, slice_index=24, mask=prompt, model=_bundle(5, 5), thickness=4)
    np.testing.assert_array_equal(image, img0)
    np.testing.assert_array_equal(prompt, truth[24])


def test_spacing_sets_neighbours(ellipsoid):
    image, truth = ellipsoid
    pred = ThresholdPredictor()
    list(
        ps.propagate(
            image, slice_index=24, mask=truth[24], predictor=pred, spacing=(2.0, 1, 1), thickness=10
        )
    )
    assert pred.calls[0] == [10]  # K = 10 / 2 = 5 per side


def test_reads_only_what_it_needs():
    image, truth = ellipsoid_volume(shape=(96, 128, 128), center=(48, 40, 40), radii=(8, 8, 8))
    # Another bright structure through the stack, as real scans have: slices past the object's
    # ends find their intensity range there instead of being read whole.
    image[:, 70:74, 70:74] = 300.0
    guarded = GuardedArray(image)
    list(
        ps.propagate(
            guarded, slice_index=48, mask=truth[48], predictor=ThresholdPredictor(), thickness=4
        )
    )
    assert 0 < guarded.voxels_read < 0.1 * image.size


def test_zarr_and_dask_inputs_match_numpy(tmp_path):
    import dask.array as da

    image, truth = ellipsoid_volume(shape=(40, 64, 64), center=(20, 30, 30), radii=(9, 9, 9))
    z = zarr.open_array(
        str(tmp_path / "v.zarr"), mode="w", shape=image.shape, chunks=(8, 32, 32), dtype="f4"
    )
    z[:] = image
    kw = dict(slice_index=20, mask=truth[20], predictor=ThresholdPredictor(), thickness=4)
    ref = [u.mask for u in ps.propagate(image, **kw) if u.final]
    for arr in (z, da.from_array(image, chunks=(8, 32, 32))):
        got = [u.mask for u in ps.propagate(arr, **kw) if u.final]
        assert len(got) == len(ref) and all(
            np.array_equal(a, b) for a, b in zip(got, ref, strict=True)
        )


def test_volume_larger_than_ram_is_never_read_whole(tmp_path):
    """A 512 x 4096 x 4096 float32 zarr (32 GiB logical) with one object written into it."""
    shape = (512, 4096, 4096)
    z = zarr.open_array(
        str(tmp_path / "big.zarr"),
        mode="w",
        shape=shape,
        chunks=(16, 256, 256),
        dtype="f4",
        fill_value=0.0,
    )
    image, truth = ellipsoid_volume(shape=(32, 64, 64), center=(16, 32, 32), radii=(8, 10, 10))
    z[300:332, 2000:2064, 3000:3064] = image
    # A bright neighbour outside every crop window: slices whose window lacks the upper clipping
    # bound are searched around the window (the released procedure scales each whole slice by
    # its own range) and the search must end at this neighbour, not read the whole slice.
    z[288:344, 2100:2108, 3000:3064] = float(image.max()) * 2
    prompt = np.zeros(shape[1:], bool)
    prompt[2000:2064, 3000:3064] = truth[16]
    guarded = GuardedArray(z)
    found = np.zeros((32, 64, 64), bool)
    for u in ps.propagate(
        guarded, slice_index=316, mask=prompt, predictor=ThresholdPredictor(), thickness=4
    ):
        if u.final:
            r, c = u.offset[0] - 2000, u.offset[1] - 3000
            found[u.index - 300, r : r + u.mask.shape[0], c : c + u.mask.shape[1]] = u.mask
    assert dice(found, truth) > 0.95
    assert guarded.voxels_read < 5e6



# ---- bad input: a clear error, nothing changed -------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mask": np.zeros((64, 64), bool)}, "empty"),
        ({"box": (10, 10, 10, 30)}, "zero area"),
        ({"box": (100, 100, 120, 120)}, "outside"),
        ({"box": (1, 2, 3)}, "row0, col0, row1, col1"),
        ({}, "exactly one prompt"),
        ({"box": (1, 1, 9, 9), "mask": np.ones((64, 64), bool)}, "exactly one prompt"),
        ({"mask": np.ones((10, 10), bool)}, "must have the prompt plane.s shape .64, 64."),
        ({"mask": np.ones((64, 64), bool), "slice_index": 48}, "out of range"),
        ({"mask": np.ones((64, 64), bool), "slice_index": -1}, "out of range"),
        ({"mask": np.ones((64, 64), bool), "spacing": (1, 0, 1)}, "positive"),
        ({"mask": np.ones((64, 64), bool), "spacing": (1, 1)}, "3 values"),
        ({"mask": np.ones((64, 64), bool), "thicknes": 3}, "unknown option"),
    ],
)
def test_bad_prompts(ellipsoid, kwargs, match):
    image, _ = ellipsoid
    kwargs = {"slice_index": 24, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        ps.propagate(image, model=_bundle(-5, -5), **kwargs)


def test_bad_axis(ellipsoid):
    image, truth = ellipsoid
    with pytest.raises(ValueError, match="axis"):
        ps.segment(image, slice_index=1, axis=3, mask=truth[24], model=_bundle(-5, -5))


@pytest.mark.parametrize(
    ("shape", "match"),
    [((64, 64), "2D"), ((8, 64, 64, 2), "4D"), ((64, 64, 3), "RGB"), ((2, 2, 2, 2, 2), "3D")],
)
def test_image_must_be_3d_greyscale(shape, match):
    with pytest.raises(ValueError, match=match):
        ps.segment(np.zeros(shape, np.float32), slice_index=0, box=(0, 0, 1, 1))


def test_nan_and_constant_images(ellipsoid):
    image, truth = ellipsoid
    bad = image.copy()
    bad[3, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ps.segment(bad, slice_index=24, mask=truth[24], model=_bundle(-5, -5))
    with pytest.raises(ValueError, match="constant|zero"):
        ps.segment(np.ones_like(image), slice_index=24, mask=truth[24], model=_bundle(-5, -5))
    with pytest.raises(ValueError, match="constant"):
        ps.segment(np.ones_like(image), slice_index=24, box=(5, 5, 30, 30), model=_bundle(-5, 5))


def test_memmapped_float_volume_is_not_read_whole_for_the_nan_check(ellipsoid, tmp_path):
    image, truth = ellipsoid
    mm = np.lib.format.open_memmap(tmp_path / "v.npy", "w+", np.float32, image.shape)
    mm[:] = image
    mm[0, 0, 0] = np.nan  # far from the object: the windows the object needs never hold it
    with pytest.raises(ValueError, match="NaN"):  # in RAM: checked whole, up front
        ps.segment(np.array(mm), slice_index=24, mask=truth[24], model=_bundle(5, -5))
    out = ps.segment(mm, slice_index=24, mask=truth[24], model=_bundle(-5, -5))
    assert out[24].sum() == truth[24].sum()  # only the prompt slice (the model predicts nothing)


def test_cuda_without_cuda_is_a_clear_error(monkeypatch, ellipsoid):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    image, truth = ellipsoid
    with pytest.raises(RuntimeError, match="CUDA"):
        ps.segment(image, slice_index=24, mask=truth[24], model=_bundle(-5, -5), device="cuda")


def test_missing_model_file_is_a_clear_error(ellipsoid, tmp_path):
    image, truth = ellipsoid
    with pytest.raises(ps.CheckpointError, match="neither a file nor a bundled model"):
        ps.segment(image, slice_index=24, mask=truth[24], model=str(tmp_path / "nope.pth"))


# --- config= and box_config= (options declared once, issue 16) ------------------------------

_SMALL = {"shape": (24, 40, 44), "center": (12, 20, 22), "radii": (8, 8, 8)}
#: Non-default engine options, each of which changes the result on the tiny random model.
_PROP = {"thickness": 2, "max_rounds": 1, "crop_ratio": 2.5, "min_area": 5, "stop_rule": "released"}
_BOX = {"vmin_percentiles": (1.0,), "refine": False}


def test_segment_with_configs_equals_the_same_keyword_options(tiny_bundle):
    image, truth = ellipsoid_volume(**_SMALL)
    run = dict(slice_index=12, mask=truth[12], model=tiny_bundle, device="cpu")
    by_kwargs = ps.segment(image, **run, **_PROP)
    by_config = ps.segment(image, **run, config=ps.PropagationConfig(**_PROP))
    np.testing.assert_array_equal(by_config, by_kwargs)
    # the options matter, so equality above is not two default runs
    assert (ps.segment(image, **run) != by_kwargs).any()
    roi = ps.segment_roi(image, **run, config=ps.PropagationConfig(**_PROP))
    np.testing.assert_array_equal(roi.to_volume(image.shape), by_kwargs)


def test_box_config_reaches_box2mask():
    image, _ = ellipsoid_volume(**_SMALL)
    run = dict(slice_index=12, box=(11, 13, 30, 32), model=make_tiny_bundle(2), device="cpu")
    prop = ps.PropagationConfig(thickness=3, max_rounds=2)
    by_kwargs = ps.segment(image, **run, thickness=3, max_rounds=2, **_BOX)
    by_config = ps.segment(image, **run, config=prop, box_config=ps.BoxConfig(**_BOX))
    np.testing.assert_array_equal(by_config, by_kwargs)
    assert (ps.segment(image, **run, config=prop) != by_kwargs).any()
    roi, q = ps.segment_roi(
        image, **run, config=prop, box_config=ps.BoxConfig(**_BOX), with_quality=True
    )
    np.testing.assert_array_equal(roi.to_volume(image.shape), by_kwargs)
    assert q is not None


def test_keyword_options_override_the_config_fields(tiny_bundle):
    image, truth = ellipsoid_volume(**_SMALL)
    run = dict(slice_index=12, mask=truth[12], model=tiny_bundle, device="cpu")
    base = ps.PropagationConfig(**{**_PROP, "thickness": 6, "max_rounds": 3})
    mixed = ps.segment(image, **run, config=base, thickness=2, max_rounds=1)
    np.testing.assert_array_equal(mixed, ps.segment(image, **run, **_PROP))
    assert (ps.segment(image, **run, config=base) != mixed).any()


def test_configs_of_the_wrong_class_are_refused(ellipsoid):
    image, truth = ellipsoid
    run = dict(slice_index=24, mask=truth[24], predictor=ThresholdPredictor())
    with pytest.raises(TypeError, match=r"config must be a PropagationConfig.*box_config="):
        ps.segment(image, **run, config=ps.BoxConfig())
    with pytest.raises(TypeError, match=r"box_config must be a BoxConfig.*as config="):
        ps.segment_roi(image, **run, box_config=ps.PropagationConfig())
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['thicknes'\]"):
        ps.segment(image, **run, config=ps.PropagationConfig(), thicknes=3)
