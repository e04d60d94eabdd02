"""``propsam find-similar`` and ``propsam series``: files in, labels out, stand-in predictor."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage import io

import napari_propsam.series as series_mod
import napari_propsam.similar._volume as volume_mod
from napari_propsam.cli import build_parser, main

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ThresholdPredictor, make_tiny_bundle  # noqa: E402
from test_series import disc_series  # noqa: E402
from test_similar import balls_volume  # noqa: E402


@pytest.fixture
def stand_in(monkeypatch):
    """Every PropMask built by the commands is the threshold stand-in; models are tiny."""
    bundle = make_tiny_bundle(fg_bias=10.0)
    for mod in (volume_mod, series_mod):
        monkeypatch.setattr(mod, "PropMaskPredictor", lambda *a, **k: ThresholdPredictor())
        monkeypatch.setattr(mod, "resolve_model", lambda *a, **k: bundle)


def test_find_similar_from_sparse_examples(tmp_path, stand_in, capsys):
    image, labels = balls_volume()
    tifffile.imwrite(tmp_path / "img.tif", image)
    sparse = np.zeros_like(labels)
    sparse[10][labels[10] == 1] = 1
    tifffile.imwrite(tmp_path / "ex.tif", sparse)
    out = tmp_path / "out.tif"
    rc = main(
        [
            "find-similar",
            str(tmp_path / "img.tif"),
            "--examples",
            str(tmp_path / "ex.tif"),
            "--out",
            str(out),
            "--thickness",
            "3",
            "--min-area",
            "5",
        ]
    )
    assert rc == 0 and "4 object(s)" in capsys.readouterr().out
    got = tifffile.imread(out)
    assert got.shape == labels.shape and got.dtype == np.uint8
    assert set(np.unique(got)) == {0, 1, 2, 3, 4}
    assert (got[labels == 1] == 1).mean() > 0.95


def test_find_similar_boxes_2d_only(tmp_path, stand_in):
    image, labels = balls_volume()
    tifffile.imwrite(tmp_path / "img.tif", image)
    out = tmp_path / "out.npy"
    rc = main(
        [
            "find-similar",
            str(tmp_path / "img.tif"),
            "--slice",
            "10",
            "--box",
            "16",
            "16",
            "25",
            "25",
            "--box",
            "66",
            "21",
            "75",
            "30",
            "--no-3d",
            "--out",
            str(out),
        ]
    )
    got = np.load(out)
    assert rc == 0 and set(np.unique(got[10])) == {0, 1, 2, 3, 4} and not got[11].any()


def test_find_similar_examples_on_two_slices_is_a_user_error(tmp_path, stand_in):
    image, labels = balls_volume()
    tifffile.imwrite(tmp_path / "img.tif", image)
    sparse = np.zeros_like(labels)
    sparse[10][labels[10] == 1] = 1
    sparse[11][labels[11] == 2] = 2
    tifffile.imwrite(tmp_path / "ex.tif", sparse)
    rc = main(
        [
            "find-similar",
            str(tmp_path / "img.tif"),
            "--examples",
            str(tmp_path / "ex.tif"),
            "--out",
            str(tmp_path / "o.tif"),
        ]
    )
    assert rc == 2 and not (tmp_path / "o.tif").exists()


def test_find_similar_workers_send_the_objects_to_the_batch_engine(tmp_path, stand_in, monkeypatch):
    batch = pytest.importorskip("napari_propsam.batch")
    calls = []
    monkeypatch.setattr(batch, "run_batch", lambda *a, **k: calls.append((a, k)))
    image, labels = balls_volume()
    tifffile.imwrite(tmp_path / "img.tif", image)
    rc = main(
        [
            "find-similar",
            str(tmp_path / "img.tif"),
            "--slice",
            "10",
            "--box",
            "16",
            "16",
            "25",
            "25",
            "--workers",
            "2",
            "--out",
            str(tmp_path / "o.tif"),
        ]
    )
    assert rc == 0 and len(calls) == 1
    (path, prompts, out), kw = calls[0]
    assert path == str(tmp_path / "img.tif") and str(out) == str(tmp_path / "o.tif")
    assert [p.label_id for p in prompts] == [1, 2, 3, 4] and kw["workers"] == 2


def test_series_folder_to_folder_and_stack(tmp_path, stand_in):
    images, truth = disc_series(n=4)
    src = tmp_path / "imgs"
    src.mkdir()
    for i, im in enumerate(images):
        io.imsave(
            src / f"s{i + 1}.png", np.clip(im * 2, 0, 255).astype(np.uint8), check_contrast=False
        )
    io.imsave(tmp_path / "ann.png", (truth[1] * 3).astype(np.uint8), check_contrast=False)
    rc = main(
        [
            "series",
            str(src),
            "--annotations",
            f"1:{tmp_path / 'ann.png'}",
            "--out",
            str(tmp_path / "masks"),
        ]
    )
    assert rc == 0
    written = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert written == ["s1.tif", "s2.tif", "s3.tif", "s4.tif"]
    m4 = tifffile.imread(tmp_path / "masks" / "s4.tif")
    assert set(np.unique(m4)) == {0, 3} and ((m4 == 3) & truth[3]).sum() > 0.9 * truth[3].sum()
    # A stack in, a sparse annotation stack, a stack out.
    tifffile.imwrite(tmp_path / "stack.tif", images)
    sparse = np.zeros(truth.shape, np.uint8)
    sparse[0] = truth[0]
    tifffile.imwrite(tmp_path / "sparse.tif", sparse)
    rc = main(
        [
            "series",
            str(tmp_path / "stack.tif"),
            "--annotations",
            str(tmp_path / "sparse.tif"),
            "--out",
            str(tmp_path / "out.tif"),
        ]
    )
    got = tifffile.imread(tmp_path / "out.tif")
    assert rc == 0 and got.shape == (4, 64, 64) and (got[2] > 0).sum() > 0.9 * truth[2].sum()


def test_series_bad_input_is_a_user_error(tmp_path, stand_in):
    (tmp_path / "empty").mkdir()
    assert (
        main(
            [
                "series",
                str(tmp_path / "empty"),
                "--annotations",
                "x.tif",
                "--out",
                str(tmp_path / "o.tif"),
            ]
        )
        == 2
    )


def test_parser_lists_the_new_subcommands():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"find-similar", "series"} <= set(sub.choices)
