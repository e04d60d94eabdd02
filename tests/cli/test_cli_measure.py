"""``propsam measure``: label volume (+ image) in, one CSV row per object out."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from napari_propsam.cli import main


def _labels() -> np.ndarray:
    labels = np.zeros((12, 20, 24), np.uint16)
    labels[1:5, 2:8, 3:13] = 3  # 4 x 6 x 10 box
    labels[6:11, 10:18, 14:22] = 8  # 5 x 8 x 8 box
    return labels


def _read(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_measure_tif_with_image_and_spacing(tmp_path, capsys: pytest.CaptureFixture[str]):
    labels = _labels()
    image = np.where(labels == 3, 50.0, 5.0).astype(np.float32)
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    tifffile.imwrite(tmp_path / "image.tif", image)
    out = tmp_path / "objects.csv"

    code = main(
        [
            "measure",
            str(tmp_path / "labels.tif"),
            "--image",
            str(tmp_path / "image.tif"),
            "--spacing",
            "2",
            "0.5",
            "0.5",
            "--out",
            str(out),
        ]
    )

    assert code == 0
    assert "2 objects measured" in capsys.readouterr().out
    rows = _read(out)
    assert [r["label"] for r in rows] == ["3", "8"]
    assert float(rows[0]["volume"]) == pytest.approx(4 * 6 * 10 * 2 * 0.5 * 0.5)
    assert float(rows[1]["extent_z"]) == pytest.approx(10.0)
    assert rows[1]["n_slices"] == "5"
    assert float(rows[0]["mean_intensity"]) == pytest.approx(50.0)
    assert float(rows[1]["mean_intensity"]) == pytest.approx(5.0)


def test_measure_npy_without_image(tmp_path):
    np.save(tmp_path / "labels.npy", _labels())
    out = tmp_path / "objects.csv"
    assert main(["measure", str(tmp_path / "labels.npy"), "--out", str(out)]) == 0
    rows = _read(out)
    assert rows[0]["voxel_count"] == str(4 * 6 * 10)
    assert "mean_intensity" not in rows[0]


def test_measure_bad_spacing_is_a_user_error(tmp_path):
    np.save(tmp_path / "labels.npy", _labels())
    out = tmp_path / "objects.csv"
    args = ["measure", str(tmp_path / "labels.npy"), "--spacing", "1", "0", "1"]
    assert main([*args, "--out", str(out)]) == 2
    assert not out.exists()


def test_measure_takes_the_spacing_an_ome_zarr_records(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from test_io import write_ome_zarr

    path = write_ome_zarr(tmp_path / "labels.ome.zarr", _labels()[None], (1, 2.0, 0.5, 0.5), "czyx")
    out = tmp_path / "objects.csv"
    assert main(["measure", str(path), "--out", str(out)]) == 0
    rows = _read(out)
    assert float(rows[0]["volume"]) == pytest.approx(4 * 6 * 10 * 2 * 0.5 * 0.5)
    # --spacing wins over the metadata (the existing CSV is replaced only with --overwrite)
    again = ["measure", str(path), "--spacing", "1", "1", "1", "--out", str(out)]
    assert main(again) == 2
    assert main([*again, "--overwrite"]) == 0
    assert float(_read(out)[0]["volume"]) == pytest.approx(4 * 6 * 10)
