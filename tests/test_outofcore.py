"""Out of core at the storage level: which zarr chunks a segmentation actually requests.

``test_api.py`` counts the voxels the engine slices out of a 32 GiB logical zarr with a mask
prompt and a stand-in predictor. Here the count is one level lower, on the store: every chunk
key zarr asks for (whether stored or not) is recorded, while the bundled model segments an
object from a box prompt (so Box2Mask's read is covered too) in a 1024^3 uint16 volume
(2 GiB logical) of which only 8 chunks exist.
"""

from __future__ import annotations

import numpy as np
import pytest

import napari_propsam as ps
from conftest import dice, ellipsoid_volume

# Store wrappers and create_array are zarr 3 API; the package itself also reads zarr 2.
zarr = pytest.importorskip("zarr", minversion="3")
from zarr.storage import LocalStore, WrapperStore  # noqa: E402

CHUNK = 64
SHAPE = (1024, 1024, 1024)
ORIGIN = (512, 448, 640)  # chunk-aligned corner of the written 128^3 block


class CountingStore(WrapperStore):
    """Store wrapper that records every key read (chunk keys look like ``c/8/7/10``)."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.keys: list[str] = []

    async def get(self, key, prototype=None, byte_range=None):
        self.keys.append(key)
        return await self._store.get(key, prototype, byte_range)

    def chunks(self) -> set[tuple[int, int, int]]:
        """Distinct chunk grid positions requested so far."""
        return {tuple(int(v) for v in k.split("/")[1:]) for k in self.keys if k.startswith("c/")}


@pytest.fixture(scope="module")
def big_zarr(tmp_path_factory):
    """1024^3 uint16 zarr (fill value 300) with one bright ellipsoid in a 128^3 noisy block."""
    path = tmp_path_factory.mktemp("ooc") / "big.zarr"
    big = zarr.create_array(
        store=str(path), shape=SHAPE, chunks=(CHUNK,) * 3, dtype="uint16", fill_value=300
    )
    image, truth = ellipsoid_volume(
        shape=(128, 128, 128), center=(64, 60, 66), radii=(16, 14, 12), noise=8.0
    )
    block = (image * 8 + 300).astype(np.uint16)
    # Another bright structure beside the object, as real scans have: where a crop window does
    # not hold the upper clipping bound (the object's dim ends), the whole slice's range is
    # searched outwards from the window and must stop here, not read the whole slice.
    block[:, 90:94, 30:34] = 3000
    big[tuple(slice(o, o + 128) for o in ORIGIN)] = block
    return path, truth


def test_segmentation_requests_only_chunks_around_the_object(big_zarr):
    path, truth = big_zarr
    store = CountingStore(LocalStore(str(path), read_only=True))
    volume = zarr.open_array(store=store, mode="r")
    z = ORIGIN[0] + 64
    rows, cols = np.nonzero(truth[64])
    box = (
        ORIGIN[1] + rows.min() - 2,
        ORIGIN[2] + cols.min() - 2,
        ORIGIN[1] + rows.max() + 3,
        ORIGIN[2] + cols.max() + 3,
    )

    found = np.zeros(truth.shape, bool)
    for update in ps.propagate(volume, slice_index=z, box=box, device="cpu"):
        if update.final:
            r, c = update.offset[0] - ORIGIN[1], update.offset[1] - ORIGIN[2]
            h, w = update.mask.shape
            found[update.index - ORIGIN[0], r : r + h, c : c + w] = update.mask

    assert dice(found, truth) > 0.9
    requested = store.chunks()
    # The object (and the windows around it, about 1.5x its extent in-plane and one
    # propagation thickness past its ends along z) lies inside the 128^3 block, which is the
    # 2 x 2 x 2 chunks 8..9, 7..8, 10..11: nothing else of the 4096 chunks may be requested.
    first = np.array(ORIGIN) // CHUNK
    block = {tuple(int(v) for v in first + d) for d in np.ndindex(2, 2, 2)}
    assert requested and requested <= block, sorted(requested - block)


def test_measure_labels_reads_only_the_objects_boxes(tmp_path):
    """After the chunkwise bounding-box scan, measuring reads each object's box, not the volume."""
    from napari_propsam.measure import measure_labels

    path = tmp_path / "labels.zarr"
    shape = (256, 256, 256)
    labels = zarr.create_array(
        store=str(path), shape=shape, chunks=(CHUNK,) * 3, dtype="uint16", fill_value=0
    )
    labels[70:90, 10:30, 200:230] = 4
    labels[130:140, 130:140, 130:140] = 9
    store = CountingStore(LocalStore(str(path), read_only=True))
    table = measure_labels(zarr.open_array(store=store, mode="r"), spacing=(2, 1, 1))
    assert table["label"].tolist() == [4, 9]
    assert table["volume"].tolist() == [20 * 20 * 30 * 2.0, 1000 * 2.0]
    # The scan requests every chunk once (4^3 = 64); the measuring pass adds one chunk per
    # object here (each box lies inside one chunk).
    assert len(store.chunks()) == 64
    assert sum(k.startswith("c/") for k in store.keys) == 64 + 2
