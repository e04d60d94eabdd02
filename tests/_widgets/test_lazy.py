"""Huge volumes: the widget never reads a lazy image whole, and big outputs are zarr-backed."""

from __future__ import annotations

import dask.array as da
import numpy as np
import zarr

from conftest import ObjectPredictor, dice, ellipsoid_volume
from napari_propsam import labeling
from napari_propsam._widgets import _storage

from ._helpers import show_slice

SHAPE = (96, 64, 64)
CENTER = (48, 32, 30)
CENTER_SMALL = (24, 32, 30)  # the env fixture's ellipsoid


class CountingVolume:
    """Array-like behind a dask array: records every block that dask reads from it."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.reads: list[tuple[slice, ...]] = []

    def __getitem__(self, key):
        out = self.data[key]
        if out.size:  # dask probes metadata with empty reads
            self.reads.append(key)
        return out

    def voxels_read(self) -> int:
        return sum(self.data[k].size for k in self.reads)

    def slices_read(self) -> set[int]:
        return {z for k in self.reads for z in range(*k[0].indices(self.shape[0]))}


def test_lazy_image_is_read_in_parts_and_the_output_is_zarr(env, monkeypatch):
    monkeypatch.setattr(_storage, "LAZY_LABELS_BYTES", 1024)
    image, truth = ellipsoid_volume(shape=SHAPE, center=CENTER)
    source = CountingVolume(image)
    lazy = env.viewer.add_image(
        da.from_array(source, chunks=(1, 64, 64)), name="lazy", contrast_limits=(0, 100)
    )
    env.widget.image_layer = lazy
    env.widget._new_sketch_layer()  # "New sketch layer": zarr-backed above the threshold
    sketch = env.widget.prompt_layer
    assert isinstance(sketch.data, zarr.Array)
    sketch.data[CENTER[0]] = truth[CENTER[0]].astype(np.int32)
    show_slice(env.viewer, 0, CENTER[0])
    env.widget.configure(thickness=4)
    source.reads.clear()  # from here on only the widget and the core read the image

    result = env.widget.run(block=True)

    assert result.label_ids == [1] and result.ok, env.msgs["error"]
    out = env.widget.output_layer
    assert isinstance(out.data, zarr.Array)
    assert out.data.shape == SHAPE and out.data.chunks == (8, 64, 64)
    labels = out.data[:]
    assert dice(labels == 1, truth) > 0.9
    # Only slices around the object were read, each read at most one plane.
    plane = SHAPE[1] * SHAPE[2]
    assert max(source.data[k].size for k in source.reads) <= plane
    z = np.nonzero(truth.any(axis=(1, 2)))[0]
    assert source.slices_read() <= set(range(z.min() - 6, z.max() + 7))
    assert source.voxels_read() < image.size / 2

    # Undo works on the zarr-backed layer, and so does measuring it (chunk by chunk).
    table = env.widget.measure.measure(block=True).table
    assert list(table["label"]) == [1] and table["voxel_count"][0] == (labels == 1).sum()
    out.undo()
    assert not out.data[:].any()
    assert source.voxels_read() < image.size / 2  # measuring read object boxes only


def test_small_outputs_stay_in_memory():
    assert isinstance(_storage.new_labels_data((4, 8, 8)), np.ndarray)
    assert _storage.new_labels_data((4, 8, 8)).dtype == np.int32
    view = labeling.chunked_view(zarr.zeros((4, 8, 8), chunks=(2, 8, 8), dtype="i4"))
    assert isinstance(view, da.Array) and view.chunks == ((2, 2), (8,), (8,))


def test_multiscale_image_is_segmented_at_full_resolution(env):
    # An OME-Zarr pyramid opens as a multiscale layer; PropSAM works on level 0, lazily.
    from ._helpers import add_box

    image = env.image.data
    levels = [da.from_array(image, chunks=(8, 64, 64))]
    levels.append(levels[0][:, ::2, ::2])
    levels.append(levels[0][:, ::4, ::4])
    pyramid = env.viewer.add_image(levels, multiscale=True, name="pyramid")
    env.widget.image_layer = pyramid
    add_box(env, 0, CENTER_SMALL[0])
    show_slice(env.viewer, 0, CENTER_SMALL[0])
    env.widget.configure(thickness=4)
    # The box normalises over background too: threshold mid-way between 0 and 100.
    env.widget.predictor_override = ObjectPredictor()

    result = env.widget.run(block=True)

    assert result.ok and result.label_ids == [1], env.msgs["error"]
    out = env.widget.output_layer
    assert out.data.shape == image.shape  # full resolution, not a pyramid level
    assert dice(np.asarray(out.data) == 1, env.truth) > 0.9
    table = env.widget.measure.measure(block=True).table
    assert table["mean_intensity"][0] > 50  # intensities read from level 0 of the pyramid
