"""Batch segmentation: segment_roi, prompts files, merge rule, resume, and dask workers.

Volumes are tiny (24 x 48 x 48) and the networks are tiny random-init models saved to
safetensors files, so dask worker processes load them by path like real weights.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

import napari_propsam as ps
from conftest import make_tiny_bundle
from napari_propsam.batch import (
    BatchPrompt,
    iter_batch,
    parts_dir,
    prompts_from_sketches,
    read_prompts,
    read_prompts_csv,
    run_batch,
    start_local_cluster,
)
from napari_propsam.io import read_spacing, read_volume
from napari_propsam.labeling import ObjectPrompt
from napari_propsam.weights import save_checkpoint

SHAPE = (24, 48, 48)
CENTERS = [(12, 12, 12), (12, 30, 30), (9, 14, 34)]


def save_tiny_model(directory: Path, seed: int = 1, fg_bias: float | None = None) -> str:
    """Tiny PropMask + Box2Mask files; returns the PropMask path (Box2Mask is its sibling)."""
    bundle = make_tiny_bundle(seed=seed, fg_bias=fg_bias)
    directory.mkdir(parents=True, exist_ok=True)
    save_checkpoint(directory / "tiny-box2mask.safetensors", bundle.box2mask.model)
    return str(save_checkpoint(directory / "tiny-propmask.safetensors", bundle.propmask.model))


def blobs_image() -> np.ndarray:
    """Three bright ellipsoids in noise; the corner ``[:, :8, :8]`` is exactly constant."""
    rng = np.random.default_rng(0)
    image = rng.normal(0, 5, SHAPE).astype(np.float32)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    for cz, cy, cx in CENTERS:
        image[((z - cz) / 7) ** 2 + ((y - cy) / 6) ** 2 + ((x - cx) / 6) ** 2 < 1] += 100
    image[:, :8, :8] = 0
    return image


def box_prompts(ids=(1, 2, 3)) -> list[BatchPrompt]:
    return [
        BatchPrompt(i, 0, cz, (cy - 6, cx - 6, cy + 6, cx + 6))
        for i, (cz, cy, cx) in zip(ids, CENTERS, strict=True)
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("batch")
    image = blobs_image()
    tifffile.imwrite(root / "image.tif", image)
    return {
        "root": root,
        "image": image,
        "tif": str(root / "image.tif"),
        "model": save_tiny_model(root / "random"),
        "grow": save_tiny_model(root / "grow", fg_bias=5.0),
    }


@pytest.fixture(scope="module")
def scheduler():
    """A 2-worker LocalCluster on loopback (as ``workers=2`` starts), shared by several tests."""
    pytest.importorskip("distributed")
    cluster = start_local_cluster(2)
    assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    yield cluster.scheduler_address
    cluster.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- segment_roi -----------------------------------------------------------------------------


@pytest.mark.parametrize(("axis", "prompt"), [(0, "box"), (0, "mask"), (2, "mask"), (1, "box")])
def test_segment_roi_equals_segment_and_is_tight(data, axis, prompt) -> None:
    image = data["image"]
    cz, cy, cx = CENTERS[1]
    index = (cz, cy, cx)[axis]
    plane = np.zeros(SHAPE, bool)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    plane[((z - cz) / 7) ** 2 + ((y - cy) / 6) ** 2 + ((x - cx) / 6) ** 2 < 1] = True
    sketch = plane.take(index, axis=axis)
    rows, cols = np.nonzero(sketch)
    kw = (
        {"box": (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)}
        if prompt == "box"
        else {"mask": sketch}
    )
    args = dict(slice_index=index, axis=axis, model=data["model"], device="cpu", **kw)
    full = ps.segment(image, **args)
    roi = ps.segment_roi(image, **args)
    assert full.any()
    np.testing.assert_array_equal(roi.to_volume(SHAPE), full)
    assert roi.mask.dtype == bool and roi.mask.shape == tuple(s.stop - s.start for s in roi.bbox)
    assert roi.voxels == int(full.sum())
    for ax in range(3):  # tight: every face of the box touches the object
        assert roi.mask.take(0, axis=ax).any() and roi.mask.take(-1, axis=ax).any()


def test_segment_roi_rejects_spacing_of_the_wrong_length(data) -> None:
    with pytest.raises(ValueError, match="spacing must have 3 values"):
        ps.segment_roi(data["image"], slice_index=12, box=(6, 6, 18, 18), spacing=(1.0, 2.0))


# --- Prompts files ---------------------------------------------------------------------------


def sketches_volume() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint16)
    labels[5, 10:13, 10:13] = 3  # id 3 is painted on three slices: three prompts
    labels[12, 8:17, 8:17] = 3
    labels[14, 8:17, 8:17] = 3
    labels[9, 27:33, 27:33] = 7
    return labels


def test_sparse_labels_prompt_every_painted_slice_of_an_id() -> None:
    prompts = prompts_from_sketches(sketches_volume(), 0, SHAPE, block=4)
    assert [(p.label_id, p.indices) for p in prompts] == [(3, [5, 12, 14]), (7, [9])]
    three = prompts[0]
    assert [(e.index, e.offset, e.mask.shape) for e in three.entries] == [
        (5, (10, 10), (3, 3)),
        (12, (8, 8), (9, 9)),
        (14, (8, 8), (9, 9)),
    ]
    assert (three.index, three.offset) == (5, (10, 10))  # the main prompt is the lowest slice
    assert prompts[1].extra == () and prompts[1].mask.shape == (6, 6)
    along_x = prompts_from_sketches(sketches_volume(), 2, SHAPE)
    # Along x, id 3 is painted on x = 8..16 (each slice holds its z 5, 12, 14 pixels).
    assert [(p.label_id, p.indices) for p in along_x] == [
        (3, list(range(8, 17))),
        (7, list(range(27, 33))),
    ]
    assert along_x[0].plane_mask((24, 48))[[12, 14], 10].all()  # x = 8: z 12 and 14 only
    assert along_x[0].entries[2].plane_mask((24, 48))[[5, 12, 14], 10].all()  # x = 10


def test_sparse_labels_refuse_an_id_painted_apart() -> None:
    labels = sketches_volume()
    labels[10, 40:44, 40:44] = 7  # next to id 7's sketch on slice 9, but far from it in-plane
    with pytest.raises(
        ValueError,
        match=r"label 7 \(id 7\): the prompts on slices 9 and 10 do "
        "not overlap in projection",
    ):
        prompts_from_sketches(labels, 0, SHAPE)


def test_sparse_labels_must_match_the_image() -> None:
    with pytest.raises(ValueError, match="differs from the image"):
        prompts_from_sketches(sketches_volume()[:10], 0, SHAPE)
    with pytest.raises(ValueError, match="no object is painted"):
        prompts_from_sketches(np.zeros(SHAPE, np.uint8), 0, SHAPE)


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_prompts_with_boxes_labels_and_comments(tmp_path: Path) -> None:
    csv = write_csv(
        tmp_path / "p.csv",
        "# prompts for the blobs\n"
        "slice,row0,col0,row1,col1,label,axis\n"
        "12,6,6,18,18,,\n"
        "\n"
        "9,,,,,7,0\n"
        "20,2,30,9,40,,2\n",
    )
    prompts = read_prompts_csv(csv, SHAPE, sketches=sketches_volume())
    assert [(p.label_id, p.axis, p.index, p.box) for p in prompts] == [
        (1, 0, 12, (6.0, 6.0, 18.0, 18.0)),
        (2, 0, 9, None),
        (3, 2, 20, (2.0, 30.0, 9.0, 40.0)),
    ]
    assert prompts[1].plane_mask((48, 48)).sum() == 36
    ids = write_csv(
        tmp_path / "ids.csv", "id,slice,row0,col0,row1,col1\n9,1,0,0,4,4\n4,2,0,0,4,4\n"
    )
    assert [p.label_id for p in read_prompts(ids, SHAPE)] == [4, 9]  # ascending, as painted


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("12,6,6,18,x\n", r"p\.csv line 3: box coordinates must be numbers"),
        ("12.5,6,6,18,18\n", r"line 3: slice must be an integer"),
        ("12,6,6,18\n", r"line 3: 4 fields, but the header has 5"),
        ("24,6,6,18,18\n", r"line 3: slice 24 is outside the image \(axis 0 has 24 slices\)"),
        ("3,60,60,70,70\n", r"line 3: box .* lies outside the slice"),
        ("12,6,6,,\n", r"line 3: a box needs all of row0, col0, row1, col1"),
        (",6,6,18,18\n", r"line 3: column 'slice' is empty"),
    ],
)
def test_malformed_csv_rows_name_their_line(tmp_path: Path, rows: str, message: str) -> None:
    csv = write_csv(tmp_path / "p.csv", "# a comment\nslice,row0,col0,row1,col1\n" + rows)
    with pytest.raises(ValueError, match=message):
        read_prompts(csv, SHAPE)


def test_csv_label_errors(tmp_path: Path) -> None:
    head = "id,slice,label\n"
    with pytest.raises(ValueError, match=r"line 2: label 7 is not painted on slice 10"):
        read_prompts_csv(
            write_csv(tmp_path / "a.csv", head + "1,10,7\n"), SHAPE, sketches=sketches_volume()
        )
    with pytest.raises(ValueError, match=r"line 2: label 99 is not painted"):
        read_prompts_csv(
            write_csv(tmp_path / "b.csv", head + "1,9,99\n"), SHAPE, sketches=sketches_volume()
        )
    with pytest.raises(ValueError, match=r"line 2: label 7 needs a sparse labels file"):
        read_prompts_csv(write_csv(tmp_path / "c.csv", head + "1,9,7\n"), SHAPE)
    # A row without an id defaults to its row number; that never joins another row's object.
    with pytest.raises(ValueError, match=r"line 3: id 1 is already used on line 2"):
        read_prompts_csv(
            write_csv(tmp_path / "d.csv", head + ",9,7\n1,12,3\n"),
            SHAPE,
            sketches=sketches_volume(),
        )
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['colour'\]"):
        read_prompts_csv(write_csv(tmp_path / "e.csv", "slice,colour\n1,red\n"), SHAPE)


# --- run_batch / iter_batch ------------------------------------------------------------------


def read_labels(path: Path) -> np.ndarray:
    return np.asarray(read_volume(path)[:])


def test_results_identical_in_process_and_on_2_workers(data, scheduler, tmp_path: Path) -> None:
    # (tests/cli/test_cli_segment.py runs --workers 1, which starts its own LocalCluster.)
    prompts = box_prompts()
    kw = dict(model=data["model"], device="cpu")
    seq = read_labels(run_batch(data["tif"], prompts, tmp_path / "w0.tif", **kw))
    two = read_labels(
        run_batch(data["tif"], prompts[::-1], tmp_path / "w2.zarr", scheduler=scheduler, **kw)
    )
    assert set(np.unique(seq)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(seq, two)
    # Each object is exactly what the single-object API gives (where no lower id took it).
    for p in prompts:
        obj = ps.segment(data["image"], slice_index=p.index, box=p.box, **kw)
        lower = np.isin(seq, [q.label_id for q in prompts if q.label_id < p.label_id])
        np.testing.assert_array_equal(seq == p.label_id, obj & ~lower)


def test_iter_batch_streams_rois_and_reports_failed_prompts(data, scheduler) -> None:
    image = data["image"]
    plane = np.zeros(SHAPE[1:], bool)
    plane[26:35, 26:35] = True
    prompts = [
        ObjectPrompt(axis=0, index=12, label_id=4, mask=plane, name="sketch"),
        ObjectPrompt(axis=0, index=12, label_id=2, box=(0, 0, 8, 8)),  # constant: no object
    ]
    results = {r.label_id: r for r in iter_batch(data["tif"], prompts, model=data["model"])}
    assert not results[2].ok and "constant inside the box" in results[2].error
    expected = ps.segment(image, slice_index=12, mask=plane, model=data["model"])
    np.testing.assert_array_equal(results[4].roi.to_volume(SHAPE), expected)
    assert results[4].mask.shape == tuple(s.stop - s.start for s in results[4].bbox)
    remote = list(iter_batch(data["tif"], prompts[:1], scheduler=scheduler, model=data["model"]))
    np.testing.assert_array_equal(remote[0].mask, results[4].mask)
    assert remote[0].bbox == results[4].bbox


def test_overlaps_go_to_the_lowest_id(data, tmp_path: Path) -> None:
    # The "grow" model predicts everything in every crop, so neighbouring objects overlap.
    kw = dict(model=data["grow"], device="cpu", thickness=3)
    prompts = box_prompts(ids=(5, 2, 9))
    out = read_labels(run_batch(data["tif"], prompts, tmp_path / "o.zarr", **kw))
    objects = {
        p.label_id: ps.segment(data["image"], slice_index=p.index, box=p.box, **kw) for p in prompts
    }
    assert (objects[2] & objects[5]).any() and (objects[2] & objects[9]).any()
    expected = np.zeros(SHAPE, np.uint8)
    for lid in sorted(objects, reverse=True):  # painted last = lowest id = on top
        expected[objects[lid]] = lid
    np.testing.assert_array_equal(out, expected)


def test_tif_and_zarr_outputs_hold_the_same_labels(data, tmp_path: Path) -> None:
    prompts = box_prompts(ids=(1, 300, 7))
    kw = dict(model=data["model"], device="cpu")
    tif = run_batch(data["tif"], prompts, tmp_path / "l.tiff", **kw)
    zar = run_batch(data["tif"], prompts, tmp_path / "l.zarr", **kw)
    assert tifffile.imread(tif).dtype == np.uint16 and tifffile.imread(tif).shape == SHAPE
    assert isinstance(zarr.open(str(zar), mode="r"), zarr.Array)
    np.testing.assert_array_equal(read_labels(tif), read_labels(zar))
    assert set(np.unique(read_labels(tif))) == {0, 1, 7, 300}
    ome = run_batch(data["tif"], prompts, tmp_path / "l.ome.zarr", **kw)
    np.testing.assert_array_equal(read_labels(tif), read_labels(ome))
    assert read_spacing(ome) == (1.0, 1.0, 1.0)
    kw["spacing"] = (2, 1, 1)  # an OME-Zarr records the run's voxel size
    ome = run_batch(data["tif"], prompts, tmp_path / "s.ome.zarr", **kw)
    zar = run_batch(data["tif"], prompts, tmp_path / "s.zarr", **kw)
    np.testing.assert_array_equal(read_labels(zar), read_labels(ome))
    assert read_spacing(ome) == (2.0, 1.0, 1.0)


def test_sparse_labels_file_as_prompts(data, tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "sketch.tif", sketches_volume())
    prompts = read_prompts(tmp_path / "sketch.tif", SHAPE)
    out = read_labels(run_batch(data["tif"], prompts, tmp_path / "s.tif", model=data["model"]))
    for p in prompts:
        assert (out[p.index][p.plane_mask(SHAPE[1:])] == p.label_id).all()  # the sketch is kept


def test_resume_skips_finished_objects(data, tmp_path: Path) -> None:
    out = tmp_path / "r.tif"
    kw = dict(model=data["model"], device="cpu")
    prompts = box_prompts()
    calls: list[int] = []

    def stop_after_one(result) -> None:
        calls.append(result.label_id)
        raise KeyboardInterrupt  # the run is killed after its first object

    with pytest.raises(KeyboardInterrupt):
        run_batch(data["tif"], prompts, out, on_result=stop_after_one, **kw)
    assert not out.exists() and calls == [1]
    part = parts_dir(out) / "1.npz"
    mtime = part.stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="--resume"):
        run_batch(data["tif"], prompts, out, **kw)
    calls.clear()
    run_batch(
        data["tif"], prompts, out, resume=True, on_result=lambda r: calls.append(r.label_id), **kw
    )
    assert calls == [2, 3] and part.stat().st_mtime_ns == mtime
    first = read_labels(out)
    # Nothing left to do; a changed prompt and a new one are the only objects computed.
    calls.clear()
    run_batch(data["tif"], prompts, out, resume=True, on_result=calls.append, **kw)
    assert calls == [] and np.array_equal(read_labels(out), first)
    new = BatchPrompt(4, 0, 9, (8, 28, 20, 40))
    moved = [prompts[0], BatchPrompt(2, 0, 11, prompts[1].box), prompts[2], new]
    run_batch(
        data["tif"], moved, out, resume=True, on_result=lambda r: calls.append(r.label_id), **kw
    )
    assert calls == [2, 4]
    with pytest.raises(ValueError, match="cannot resume: .* different options"):
        run_batch(data["tif"], prompts, out, resume=True, thickness=3, **kw)
    run_batch(data["tif"], prompts, out, overwrite=True, keep_parts=False, **kw)
    assert not parts_dir(out).exists()
    np.testing.assert_array_equal(read_labels(out), first)


def test_bad_batch_inputs_are_refused(data, tmp_path: Path) -> None:
    kw = dict(model=data["model"], device="cpu")
    prompts = box_prompts()
    out = tmp_path / "x.tif"
    out.write_bytes(b"not labels")
    with pytest.raises(FileExistsError, match="exists; pass --overwrite"):
        run_batch(data["tif"], prompts, out, **kw)
    assert out.read_bytes() == b"not labels"
    with pytest.raises(ValueError, match="spacing must have 3 values"):
        run_batch(data["tif"], prompts, tmp_path / "y.tif", spacing=(1.0, 1.0), **kw)
    with pytest.raises(ValueError, match="must end in .tif, .tiff, .zarr or .ome.zarr"):
        run_batch(data["tif"], prompts, tmp_path / "y.png", **kw)
    with pytest.raises(ValueError, match="slice 30 is outside the image"):
        run_batch(data["tif"], [BatchPrompt(1, 0, 30, (1, 1, 5, 5))], tmp_path / "y.tif", **kw)
    with pytest.raises(ValueError, match="object id 2 is used twice"):
        run_batch(data["tif"], box_prompts(ids=(2, 2, 3)), tmp_path / "y.tif", **kw)
    with pytest.raises(ValueError, match="either workers .* or scheduler"):
        run_batch(data["tif"], prompts, tmp_path / "y.tif", workers=2, scheduler="tcp://x:1")
    assert not (tmp_path / "y.tif").exists() and not parts_dir(tmp_path / "y.tif").exists()


def test_unreachable_scheduler_is_a_clear_error(data, tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(OSError, match=f"cannot reach the dask scheduler at '{address}' within"):
        run_batch(
            data["tif"],
            box_prompts(),
            tmp_path / "u.tif",
            scheduler=address,
            connect_timeout=0.5,
            model=data["model"],
        )
    assert not (tmp_path / "u.tif").exists()


# --- resuming after damage (issue 13, item 7) -------------------------------------------------


def _finished_run(data, out: Path) -> np.ndarray:
    run_batch(data["tif"], box_prompts(), out, model=data["grow"], device="cpu")
    return read_labels(out)


def _truncate_bits(part: Path) -> None:
    """Keep every entry (and so the prompt digest) but cut the packed mask bits in half."""
    with np.load(part) as z:
        entries = {k: z[k] for k in z.files}
    entries["bits"] = entries["bits"][: entries["bits"].size // 2]
    with open(part, "wb") as f:
        np.savez_compressed(f, **entries)


@pytest.mark.parametrize("damage", ["empty", "truncated file", "truncated bits", "no checksum"])
def test_resume_recomputes_a_damaged_part_and_names_it(data, tmp_path, caplog, damage) -> None:
    out = tmp_path / "d.tif"
    first = _finished_run(data, out)
    part = parts_dir(out) / "2.npz"
    if damage == "empty":
        part.write_bytes(b"")
    elif damage == "truncated file":
        part.write_bytes(part.read_bytes()[:100])
    elif damage == "truncated bits":
        _truncate_bits(part)
    else:  # a part of an older version (no checksum) whose bits were cut: still caught
        with np.load(part) as z:
            entries = {k: z[k] for k in z.files if k != "bits_sha256"}
        entries["bits"] = entries["bits"][:-3]
        with open(part, "wb") as f:
            np.savez_compressed(f, **entries)
    calls: list[int] = []
    with caplog.at_level("WARNING", logger="napari_propsam"):
        run_batch(
            data["tif"], box_prompts(), out, resume=True, model=data["grow"], device="cpu",
            on_result=lambda r: calls.append(r.label_id),
        )  # fmt: skip
    assert calls == [2]  # only the damaged object is computed again
    assert any(str(part) in r.getMessage() and "recomputing" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert not any("overlaps" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(read_labels(out), first)  # nothing silently emptied


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"{not json", "is damaged .not valid JSON"), (b"[1, 2]", "is not a napari-propsam manifest"),
     (b'{"format": 1}', "different image, model, options"), (b"\xff\xfe", "is damaged")],
)  # fmt: skip
def test_a_bad_manifest_is_named_and_refused(data, tmp_path, content, match) -> None:
    out = tmp_path / "m.tif"
    _finished_run(data, out)
    manifest = parts_dir(out) / "manifest.json"
    manifest.write_bytes(content)
    with pytest.raises(ValueError, match=match) as err:
        run_batch(data["tif"], box_prompts(), out, resume=True, model=data["grow"], device="cpu")
    if "different" not in match:
        assert str(manifest) in str(err.value) and "--overwrite" in str(err.value)


def test_a_non_utf8_csv_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "prompts.csv"
    path.write_bytes("slice,row0,col0,row1,col1\n12,1,1,9,9  # caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not a UTF-8 text file") as err:
        read_prompts_csv(path, SHAPE)
    assert str(path) in str(err.value)
