"""``propsam segment``: the single-object mode, the batch mode and its error messages."""

from __future__ import annotations

import csv as csv_module
import socket
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from conftest import make_tiny_bundle
from napari_propsam.cli import main as propsam
from napari_propsam.io import read_volume
from napari_propsam.weights import save_checkpoint

SHAPE = (24, 48, 48)
CENTERS = [(12, 12, 12), (12, 30, 30), (9, 14, 34)]
CSV = "id,slice,row0,col0,row1,col1\n" + "".join(
    f"{i + 1},{cz},{cy - 6},{cx - 6},{cy + 6},{cx + 6}\n" for i, (cz, cy, cx) in enumerate(CENTERS)
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An image (tif and zarr), a prompts CSV and tiny model files."""
    root = tmp_path_factory.mktemp("cli_segment")
    rng = np.random.default_rng(1)
    image = rng.normal(0, 5, SHAPE).astype(np.float32)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    for cz, cy, cx in CENTERS:
        image[((z - cz) / 7) ** 2 + ((y - cy) / 6) ** 2 + ((x - cx) / 6) ** 2 < 1] += 100
    image[:, :8, :8] = 0  # a constant corner: a box there has no object
    tifffile.imwrite(root / "image.tif", image)
    zarr.open_array(str(root / "image.zarr"), mode="w", shape=SHAPE, dtype="f4")[:] = image
    (root / "prompts.csv").write_text(CSV)
    bundle = make_tiny_bundle(seed=2)
    save_checkpoint(root / "tiny-box2mask.safetensors", bundle.box2mask.model)
    model = save_checkpoint(root / "tiny-propmask.safetensors", bundle.propmask.model)
    return {
        "root": str(root),
        "tif": str(root / "image.tif"),
        "zarr": str(root / "image.zarr"),
        "csv": str(root / "prompts.csv"),
        "model": str(model),
    }


def main(argv: list[str]) -> int:
    """``propsam segment ARGV``."""
    return propsam(["segment", *argv])


def engine(files: dict[str, str]) -> list[str]:
    return ["--model", files["model"], "--device", "cpu"]


def labels(path: Path) -> np.ndarray:
    return np.asarray(read_volume(path)[:])


def test_single_object_mode_still_works(files, tmp_path: Path) -> None:
    out = tmp_path / "one.tif"
    args = [files["tif"], "--slice", "12", "--box", "24", "24", "36", "36", "--label", "3"]
    assert main([*args, "--out", str(out), *engine(files)]) == 0
    result = tifffile.imread(out)
    assert result.shape == SHAPE and set(np.unique(result)) == {0, 3}
    assert main([files["tif"], "--slice", "12", "--out", str(out), *engine(files)]) == 2
    assert main([files["tif"], "--box", "1", "1", "5", "5", "--out", str(out)]) == 2


def test_batch_in_process_and_on_one_worker_give_the_same_labels(
    files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seq, one = tmp_path / "seq.zarr", tmp_path / "one.tif"
    assert main([files["zarr"], "--prompts", files["csv"], "--out", str(seq), *engine(files)]) == 0
    assert "3 objects (3 computed" in capsys.readouterr().out
    argv = [files["tif"], "--prompts", files["csv"], "--out", str(one), "--workers", "1"]
    assert main([*argv, *engine(files)]) == 0
    result = labels(seq)
    assert set(np.unique(result)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(result, labels(one))


def test_batch_refuses_an_existing_output_then_resumes_or_overwrites(
    files, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "r.tif"
    argv = [files["tif"], "--prompts", files["csv"], "--out", str(out), *engine(files)]
    assert main(argv) == 0
    first, mtime = labels(out), out.stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 2
    assert "exists; pass --overwrite" in caplog.text
    assert out.stat().st_mtime_ns == mtime
    assert main([*argv, "--resume"]) == 0
    report = capsys.readouterr().out
    assert "(0 computed" in report and "3 resumed" in report
    assert main([*argv, "--overwrite", "--discard-parts"]) == 0
    assert "(3 computed" in capsys.readouterr().out
    assert not Path(str(out) + ".parts").exists()
    np.testing.assert_array_equal(labels(out), first)
    assert main([*argv, "--resume", "--overwrite"]) == 2
    assert "exclude each other" in caplog.text


def test_batch_from_a_sparse_labels_file(files, tmp_path: Path) -> None:
    sketch = np.zeros(SHAPE, np.uint8)
    sketch[12, 26:35, 26:35] = 4
    sketch[10, 27:33, 27:33] = 4  # id 4 painted on two slices: both are its prompts
    sketch[9, 10:18, 30:38] = 6
    tifffile.imwrite(tmp_path / "sketch.tif", sketch)
    out = tmp_path / "s.zarr"
    argv = [files["tif"], "--prompts", str(tmp_path / "sketch.tif"), "--out", str(out)]
    assert main([*argv, *engine(files)]) == 0
    result = labels(out)
    assert (result[12][sketch[12] == 4] == 4).all() and (result[9][sketch[9] == 6] == 6).all()
    assert (result[10][sketch[10] == 4] == 4).all()  # each prompt slice keeps its prompt
    assert set(np.unique(result)) == {0, 4, 6}


def test_batch_groups_csv_rows_by_id_and_ends_with_the_objects_to_review(
    files, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import napari_propsam.batch._report as report_module

    csv = tmp_path / "p.csv"
    # Object 2 has two prompts (rows sharing its id); objects 1 and 3 one each.
    csv.write_text(CSV + "2,15,23,23,37,37\n")
    out = tmp_path / "g.tif"
    argv = [files["tif"], "--prompts", str(csv), "--out", str(out), *engine(files)]
    # Every score is below 1.01: the list shows all three, lowest first, with their slices.
    monkeypatch.setattr(report_module, "REVIEW_BELOW", 1.01)
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "3 objects (3 computed" in text
    rows = list(csv_module.DictReader(Path(f"{out}.objects.csv").read_text().splitlines()))
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    assert rows[1]["name"] == "p.csv lines 3, 5" and rows[1]["status"] == "computed"
    for r in rows:
        assert 0.0 <= float(r["score"]) <= 1.0 and int(r["voxels"]) > 0
        assert all(s.isdigit() for s in r["review_slices"].split(";") if s)
    assert any(r["review_slices"] for r in rows)
    assert (
        f"3 objects scored below 1.01 (quality score, slices to review worst first; every "
        f"object in {out}.objects.csv):" in text
    )
    listed = [line.split()[1] for line in text.splitlines() if line.startswith("  object ")]
    by_score = sorted(rows, key=lambda r: (float(r["score"]), int(r["id"])))
    assert listed == [r["id"] for r in by_score]
    first = by_score[0]
    slices = first["review_slices"] or "-"
    assert f"score {float(first['score']):.2f}, review axis-0 slices {slices}" in text
    # Resumed, the objects keep their scores and slices; the default threshold lists fewer.
    monkeypatch.setattr(report_module, "REVIEW_BELOW", 0.7)
    assert main([*argv, "--resume"]) == 0
    again = list(csv_module.DictReader(Path(f"{out}.objects.csv").read_text().splitlines()))
    assert [(r["status"], r["score"], r["review_slices"]) for r in again] == [
        ("resumed", r["score"], r["review_slices"]) for r in rows
    ]
    low = sum(float(r["score"]) < 0.7 for r in rows)
    assert f"{low} objects scored below 0.70" in capsys.readouterr().out


def test_a_failed_object_is_reported_and_the_others_are_written(
    files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text(CSV + "9,12,0,0,8,8\n")  # the constant corner
    out = tmp_path / "f.tif"
    argv = [files["tif"], "--prompts", str(csv), "--out", str(out), *engine(files)]
    assert main(argv) == 1
    report = capsys.readouterr().out
    assert "1 failed" in report and "object 9 failed: the image is constant" in report
    assert set(np.unique(labels(out))) == {0, 1, 2, 3}


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("slice,row0,col0,row1,col1\n12,6,6,18,18\n3,4,five,9,9\n", "p.csv line 3: box coord"),
        ("slice,row0,col0,row1,col1\n40,6,6,18,18\n", "line 2: slice 40 is outside the image"),
        ("slice,label\n12,5\n", "line 2: label 5 is not painted on slice 12"),
        ("axis,slice,row0,col0,row1,col1\n1,60,0,0,5,5\n", "axis 1 has 48 slices"),
    ],
)
def test_bad_prompts_exit_2_with_a_message(
    files, tmp_path: Path, caplog: pytest.LogCaptureFixture, csv: str, message: str
) -> None:
    (tmp_path / "p.csv").write_text(csv)
    tifffile.imwrite(tmp_path / "sketch.tif", np.zeros(SHAPE, np.uint8))
    argv = [files["tif"], "--prompts", str(tmp_path / "p.csv"), "--out", str(tmp_path / "o.tif")]
    assert main([*argv, "--sketches", str(tmp_path / "sketch.tif"), *engine(files)]) == 2
    assert message in caplog.text
    assert not (tmp_path / "o.tif").exists()


def test_unreachable_scheduler_exits_2(files, tmp_path: Path, caplog) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [files["tif"], "--prompts", files["csv"], "--out", str(tmp_path / "o.tif")]
    argv += ["--scheduler", f"tcp://127.0.0.1:{port}", "--connect-timeout", "0.5"]
    assert main([*argv, *engine(files)]) == 2
    assert (
        f"cannot reach the dask scheduler at 'tcp://127.0.0.1:{port}' within 0.5 s" in caplog.text
    )
    argv = [files["tif"], "--slice", "3", "--box", "1", "1", "5", "5", "--workers", "2"]
    assert main([*argv, "--out", str(tmp_path / "o.tif")]) == 2
    assert "--workers needs --prompts" in caplog.text
