"""Batch runs with several prompts per object, and the per-object report (score, slices to
review) that a run writes next to its labels, resumed objects included."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_propsam as ps
from napari_propsam.batch import (
    REPORT_COLUMNS,
    BatchPrompt,
    SlicePrompt,
    iter_batch,
    parts_dir,
    read_prompts,
    read_prompts_csv,
    read_report,
    report_path,
    run_batch,
    to_review,
)
from napari_propsam.batch._report import ObjectReport
from napari_propsam.batch._store import prompt_digest
from test_batch import CENTERS, SHAPE, blobs_image, save_tiny_model
from test_batch import write_csv as write


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("batch_multi")
    image = blobs_image()
    tifffile.imwrite(root / "image.tif", image)
    return {"image": image, "tif": str(root / "image.tif"), "model": save_tiny_model(root / "m")}


# --- CSV rows sharing an id ------------------------------------------------------------------


def test_csv_rows_with_one_id_are_one_object(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "p.csv",
        "id,slice,row0,col0,row1,col1,name\n"
        "5,14,8,8,18,18,\n"
        "2,9,24,24,36,36,single\n"
        "5,10,6,6,18,18,kidney\n",
    )
    prompts = read_prompts_csv(csv, SHAPE)
    assert [p.label_id for p in prompts] == [2, 5]
    single, multi = prompts
    assert single.extra == () and single.name == "single"
    # One object, both rows, in slice order whatever the row order; the name is the one given.
    assert multi.indices == [10, 14] and multi.name == "kidney"
    assert [e.box for e in multi.entries] == [(6.0, 6.0, 18.0, 18.0), (8.0, 8.0, 18.0, 18.0)]
    unnamed = write(tmp_path / "u.csv", "id,slice,row0,col0,row1,col1\n1,3,0,0,9,9\n1,6,0,0,9,9\n")
    assert read_prompts(unnamed, SHAPE)[0].name == "u.csv lines 2, 3"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("1,0,12,6,6,18,18,\n1,1,9,6,6,18,18,\n", r"line 3: id 1 is on axis 1 here but on axis 0 "
         r"on line 2; the prompts of one object must share an axis"),
        ("1,0,12,6,6,18,18,\n1,0,12,7,7,18,18,\n", r"line 3: id 1 already has a prompt on slice "
         r"12 \(line 2\)"),
        ("1,0,12,6,6,18,18,\n1,0,9,,,,,7\n", r"line 3: id 1 mixes a box with a label"),
        ("1,0,12,6,6,18,18,\n1,0,11,36,36,46,46,\n", r"lines 2, 3 \(id 1\): the prompts on "
         r"slices 11 and 12 do not overlap in projection"),
    ],
)  # fmt: skip
def test_csv_rows_of_one_id_must_fit_together(tmp_path: Path, rows: str, message: str) -> None:
    from test_batch import sketches_volume

    csv = write(tmp_path / "p.csv", "id,axis,slice,row0,col0,row1,col1,label\n" + rows)
    with pytest.raises(ValueError, match=message):
        read_prompts_csv(csv, SHAPE, sketches=sketches_volume())


def test_csv_label_rows_of_one_id_give_several_sketches(tmp_path: Path) -> None:
    from test_batch import sketches_volume

    csv = write(tmp_path / "p.csv", "id,slice,label\n8,12,3\n8,5,3\n")
    (p,) = read_prompts_csv(csv, SHAPE, sketches=sketches_volume())
    assert p.label_id == 8 and p.indices == [5, 12]
    assert [int(e.plane_mask(SHAPE[1:]).sum()) for e in p.entries] == [9, 81]


# --- Running them ------------------------------------------------------------------------------


def two_slice_prompts() -> tuple[BatchPrompt, list[int], list[tuple]]:
    cz, cy, cx = CENTERS[1]
    slices = [cz - 3, cz + 3]
    boxes = [(cy - 5, cx - 5, cy + 5, cx + 5), (cy - 6, cx - 6, cy + 6, cx + 6)]
    entries = [SlicePrompt(s, b) for s, b in zip(slices, boxes, strict=True)]
    return BatchPrompt.combine(7, 0, entries[::-1], "two slices"), slices, boxes


def test_several_prompts_reach_the_engine_as_lists(data) -> None:
    prompt, slices, boxes = two_slice_prompts()
    kw = dict(model=data["model"], device="cpu")
    (result,) = iter_batch(data["tif"], [prompt], **kw)
    expected = ps.segment(data["image"], slice_index=slices, box=boxes, **kw)
    assert expected.any()
    np.testing.assert_array_equal(result.roi.to_volume(SHAPE), expected)
    one = ps.segment(data["image"], slice_index=slices[0], box=boxes[0], **kw)
    assert not np.array_equal(one, expected)  # the second prompt did change the object
    assert result.quality is not None and 0.0 <= result.quality.score <= 1.0


def test_one_prompt_digest_is_unchanged_and_extra_slices_change_it() -> None:
    single = BatchPrompt(1, 0, 12, (6, 6, 18, 18))
    # The digest parts stored before several prompts existed: resuming them must still match.
    old = hashlib.sha256(json.dumps([0, 12, [6.0, 6.0, 18.0, 18.0]]).encode()).hexdigest()[:32]
    assert prompt_digest(single) == old
    more = BatchPrompt(1, 0, 12, (6, 6, 18, 18), extra=(SlicePrompt(15, (6, 6, 18, 18)),))
    moved = BatchPrompt(1, 0, 12, (6, 6, 18, 18), extra=(SlicePrompt(16, (6, 6, 18, 18)),))
    assert len({prompt_digest(single), prompt_digest(more), prompt_digest(moved)}) == 3


# --- The per-object report -------------------------------------------------------------------


def test_report_lists_score_and_review_slices_and_survives_resume(data, tmp_path: Path) -> None:
    out = tmp_path / "labels.zarr"
    prompt, _, _ = two_slice_prompts()
    cz, cy, cx = CENTERS[0]
    prompts = [
        BatchPrompt(1, 0, cz, (cy - 6, cx - 6, cy + 6, cx + 6)),
        BatchPrompt(2, 0, 12, (0, 0, 8, 8)),  # a constant region: this object fails
        prompt,
    ]
    kw = dict(model=data["model"], device="cpu")
    computed = {}
    run_batch(data["tif"], prompts, out, on_result=lambda r: computed.update({r.label_id: r}), **kw)
    path = report_path(out)
    assert path == tmp_path / "labels.zarr.objects.csv"
    assert path.read_text().splitlines()[0] == ",".join(REPORT_COLUMNS)
    rows = {r.label_id: r for r in read_report(path)}
    assert [rows[i].status for i in (1, 2, 7)] == ["computed", "failed", "computed"]
    assert "constant inside the box" in rows[2].error and np.isnan(rows[2].score)
    assert any(rows[i].review for i in (1, 7))  # the column is filled, not just empty
    labels = np.asarray(ps.io.read_volume(out)[:])
    for i in (1, 7):
        q = computed[i].quality
        assert rows[i].score == pytest.approx(q.score, abs=1e-4)
        assert rows[i].review == tuple(q.review_indices)  # worst first, as the engine ranks
        assert rows[i].voxels == int((labels == i).sum()) > 0
    # The failed object is retried on resume; the others come from their parts, with their
    # score and slices to review (stored with the part), and the same report rows.
    run_batch(data["tif"], prompts, out, resume=True, **kw)
    again = {r.label_id: r for r in read_report(path)}
    assert [again[i].status for i in (1, 2, 7)] == ["resumed", "failed", "resumed"]
    for i in (1, 7):
        assert (again[i].score, again[i].review, again[i].voxels) == (
            rows[i].score,
            rows[i].review,
            rows[i].voxels,
        )
    # A part stored before quality was kept still resumes: it reports no score.
    part = parts_dir(out) / "1.npz"
    with np.load(part) as z:
        old = {k: z[k] for k in z.files if k not in ("score", "review")}
    with open(part, "wb") as f:
        np.savez_compressed(f, **old)
    run_batch(data["tif"], prompts, out, resume=True, report=tmp_path / "r.csv", **kw)
    first = read_report(tmp_path / "r.csv")[0]
    assert first.status == "resumed" and np.isnan(first.score) and first.review == ()


def test_to_review_is_the_low_scores_worst_first() -> None:
    rows = [
        ObjectReport(1, "a", "computed", 0, 10, 0.9, (3,), 1.0),
        ObjectReport(2, "b", "resumed", 0, 10, 0.4, (5, 4), 1.0),
        ObjectReport(3, "c", "computed", 0, 10, 0.6, (), 1.0),
        ObjectReport(4, "d", "failed", 0, 0, float("nan"), (), 1.0, "no object"),
        ObjectReport(5, "e", "resumed", 0, 10, float("nan"), (), 1.0),
    ]
    assert [r.label_id for r in to_review(rows)] == [2, 3]
    assert [r.label_id for r in to_review(rows, below=0.5)] == [2]
