"""docs/errors.md is kept true: each row of its bad-input matrix is a case run here.

The test reads the matrix, runs the case with the row's id and checks that the message column
(the text in backticks) is in what the case really reports, and what the row says happens (the
input unchanged, nothing computed, the output written, ...). Widget rows name their GUI test.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

import napari_propsam as ps
from conftest import TINY, ThresholdPredictor, ellipsoid_volume, make_tiny_bundle
from napari_propsam.batch import BatchPrompt, parts_dir, read_prompts_csv, run_batch
from napari_propsam.cli import main
from napari_propsam.config import BoxConfig, PropagationConfig, split_options
from napari_propsam.models import ArchConfig, PropMask
from napari_propsam.registry import clear_cache, resolve_model
from napari_propsam.weights import CheckpointError, load_network, save_checkpoint

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
ROW = re.compile(r"^\| ([A-Z]\d\d) \| (.*?) \| (.*?) \| (.*) \|$")
SHAPE = (16, 32, 32)


def matrix() -> dict[str, str]:
    """``{id: message excerpt}`` of every row of docs/errors.md."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line.strip())
        if m:
            excerpt = re.search(r"`([^`]+)`", m.group(4))
            assert excerpt, f"row {m.group(1)} has no message in backticks"
            rows[m.group(1)] = excerpt.group(1)
    return rows


class Ctx:
    """What a case gets: a scratch folder, small inputs, a tiny model and the CLI's output."""

    def __init__(self, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys) -> None:
        self.tmp, self.caplog, self.capsys = tmp_path, caplog, capsys
        image, truth = ellipsoid_volume(shape=SHAPE, center=(8, 16, 16), radii=(5, 6, 6))
        self.image, self.truth = image, truth
        self.tif = tmp_path / "stack.tif"
        tifffile.imwrite(self.tif, image)
        self.mask = tmp_path / "mask.tif"
        tifffile.imwrite(self.mask, truth[8].astype(np.uint8))
        self._model: str | None = None

    @property
    def model(self) -> str:
        """Tiny PropMask + Box2Mask files that grow the prompt (fast on the CPU)."""
        if self._model is None:
            bundle = make_tiny_bundle(fg_bias=5)
            save_checkpoint(self.tmp / "m" / "tiny-box2mask.safetensors", bundle.box2mask.model)
            path = save_checkpoint(
                self.tmp / "m" / "tiny-propmask.safetensors", bundle.propmask.model
            )
            self._model = str(path)
        return self._model

    def cli(self, *args: object) -> tuple[int, str]:
        """Run ``propsam``; the exit status and everything it logged and printed."""
        self.caplog.clear()
        self.capsys.readouterr()
        with self.caplog.at_level(logging.INFO, logger="napari_propsam"):
            rc = main([str(a) for a in args])
        text = self.capsys.readouterr().out + "\n".join(r.getMessage() for r in self.caplog.records)
        return rc, text

    def segment(self, out: object, *extra: object) -> tuple[int, str]:
        return self.cli(
            "segment", self.tif, "--slice", 8, "--mask", self.mask, "--out", out,
            "--model", self.model, "--device", "cpu", "--thickness", 2, *extra,
        )  # fmt: skip


def refused(fn: Callable[[], object], kinds=(ValueError, TypeError)) -> str:
    """The message of the exception ``fn`` raises (it must raise one of ``kinds``)."""
    with pytest.raises(kinds) as err:
        fn()
    return str(err.value)


def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a segmentation starts: the case must be refused before any work."""

    def boom(*_a, **_k):
        raise AssertionError("the work started although the input should have been refused")

    monkeypatch.setattr("napari_propsam.api.segment", boom)
    monkeypatch.setattr("napari_propsam.io.read_volume", boom)
    for mod in ("_segment", "_similar", "_series", "_measure"):
        monkeypatch.setattr(f"napari_propsam.cli.{mod}.read_volume", boom)


# --- command line outputs -----------------------------------------------------------------------


def c01(c: Ctx, mp) -> str:
    out = c.tmp / "o.tif"
    out.write_bytes(b"precious")
    no_work(mp)
    rc, text = c.segment(out)
    assert rc == 2 and out.read_bytes() == b"precious"
    return text


def c02(c: Ctx, mp) -> str:
    out = c.tmp / "o.zarr"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    no_work(mp)
    rc, text = c.segment(out)
    assert rc == 2 and (out / "keep.txt").read_text() == "mine"
    return text


def c03(c: Ctx, mp) -> str:
    before = c.tif.read_bytes()
    no_work(mp)
    rc, text = c.segment(c.tif, "--overwrite")
    assert rc == 2 and c.tif.read_bytes() == before
    return text


def c04(c: Ctx, mp) -> str:
    (c.tmp / "sub").mkdir()
    (c.tmp / "link.tif").symlink_to(c.tif)
    no_work(mp)
    rc1, text1 = c.segment(c.tmp / "sub" / ".." / "stack.tif", "--overwrite")
    rc2, text2 = c.segment(c.tmp / "link.tif", "--overwrite")
    assert rc1 == rc2 == 2 and "would overwrite the input" in text1
    return text2


def c05(c: Ctx, mp) -> str:
    no_work(mp)
    rc, text = c.segment(c.tmp / "o.png")
    assert rc == 2 and not (c.tmp / "o.png").exists()
    return text


def c06(c: Ctx, _mp) -> str:
    out = c.tmp / "newdir" / "sub" / "o.tif"
    rc, text = c.segment(out)
    assert rc == 0 and tifffile.imread(out).any()
    return text


def c07(c: Ctx, _mp) -> str:
    out = c.tmp / "o.tif"
    out.write_bytes(b"old")
    rc, text = c.segment(out, "--overwrite")
    assert rc == 0 and tifffile.imread(out).shape == SHAPE
    return text


def c08(c: Ctx, mp) -> str:
    labels = c.tmp / "labels.tif"
    tifffile.imwrite(labels, c.truth.astype(np.uint8))
    out = c.tmp / "objects.csv"
    out.write_text("mine")
    no_work(mp)
    rc, text = c.cli("measure", labels, "--out", out)
    assert rc == 2 and out.read_text() == "mine"
    return text


def c09(c: Ctx, mp) -> str:
    out = c.tmp / "similar.tif"
    out.write_bytes(b"mine")
    no_work(mp)
    rc, text = c.cli("find-similar", c.tif, "--examples", c.mask, "--slice", 8, "--out", out)
    assert rc == 2 and out.read_bytes() == b"mine"
    return text


def c10(c: Ctx, mp) -> str:
    folder = c.tmp / "images"
    folder.mkdir()
    no_work(mp)
    rc, text = c.cli("series", folder, "--annotations", f"0:{c.mask}", "--out", folder)
    assert rc == 2
    return text


def c11(c: Ctx, mp) -> str:
    import zarr

    store = c.tmp / "image.zarr"
    zarr.open_array(str(store), mode="w", shape=SHAPE, dtype="f4")[:] = c.image
    csv = c.tmp / "p.csv"
    csv.write_text("id,slice,row0,col0,row1,col1\n1,8,10,10,22,22\n")
    no_work(mp)
    rc, text = c.cli("segment", store, "--prompts", csv, "--out", store / "labels.zarr")
    assert rc == 2 and not (store / "labels.zarr").exists()
    return text


def c12(c: Ctx, mp) -> str:
    no_work(mp)
    rc, text = c.segment(c.tmp / "o.tif", "--label", 0)
    assert rc == 2 and not (c.tmp / "o.tif").exists()
    return text


def c13(c: Ctx, mp) -> str:
    no_work(mp)
    rc1, text1 = c.segment(c.tmp / "o.tif", "--label", -1)
    rc2, text2 = c.segment(c.tmp / "o.tif", "--label", 2**32)
    assert rc1 == rc2 == 2 and "4294967295" in text1
    return text2


def c14(c: Ctx, _mp) -> str:
    out = c.tmp / "o.tif"
    rc, text = c.segment(out, "--label", 300)
    written = tifffile.imread(out)
    assert rc == 0 and written.dtype == np.uint16 and set(np.unique(written)) == {0, 300}
    return text


# --- batch runs ---------------------------------------------------------------------------------


def _batch(c: Ctx, name: str = "b.tif", **kw) -> Path:
    out = c.tmp / name
    prompts = [BatchPrompt(1, 0, 8, (10, 10, 22, 22)), BatchPrompt(2, 0, 8, (2, 2, 9, 9))]
    run_batch(c.tif, prompts, out, model=c.model, device="cpu", thickness=2, **kw)
    return out


def _resume_after(c: Ctx, damage: Callable[[Path], None], name: str = "b.tif") -> str:
    out = _batch(c, name)
    first = tifffile.imread(out)
    part = parts_dir(out) / "2.npz"
    damage(part)
    c.caplog.clear()
    with c.caplog.at_level(logging.WARNING, logger="napari_propsam"):
        _batch(c, name, resume=True)
    np.testing.assert_array_equal(tifffile.imread(out), first)  # recomputed, not emptied
    text = "\n".join(r.getMessage() for r in c.caplog.records)
    assert str(part) in text and "recomputing" in text
    return text


def b01(c: Ctx, _mp) -> str:
    return _resume_after(c, lambda p: p.write_bytes(b""))


def b02(c: Ctx, _mp) -> str:
    return _resume_after(c, lambda p: p.write_bytes(p.read_bytes()[:64]))


def b03(c: Ctx, _mp) -> str:
    def cut_bits(part: Path) -> None:
        with np.load(part) as z:
            entries = {k: z[k] for k in z.files}
        entries["bits"] = entries["bits"][: max(1, entries["bits"].size // 2)]
        with open(part, "wb") as f:
            np.savez_compressed(f, **entries)

    def cut_and_fix_count(part: Path) -> None:  # same length, other bits: only the checksum sees
        with np.load(part) as z:
            entries = {k: z[k] for k in z.files}
        entries["bits"] = np.zeros_like(entries["bits"])
        with open(part, "wb") as f:
            np.savez_compressed(f, **entries)

    assert "mask bits for a" in _resume_after(c, cut_bits, "cut.tif")
    return _resume_after(c, cut_and_fix_count, "zeroed.tif")


def _bad_manifest(c: Ctx, content: bytes) -> str:
    out = _batch(c)
    manifest = parts_dir(out) / "manifest.json"
    manifest.write_bytes(content)
    text = refused(lambda: _batch(c, resume=True))
    assert str(manifest) in text and "--overwrite" in text
    return text


def b04(c: Ctx, _mp) -> str:
    return _bad_manifest(c, b'{"format": 1, "image": ')


def b05(c: Ctx, _mp) -> str:
    return _bad_manifest(c, b"[1, 2, 3]")


def b06(c: Ctx, _mp) -> str:
    path = c.tmp / "prompts.csv"
    path.write_bytes("slice,row0,col0,row1,col1\n8,1,1,9,9\n# caf\xe9\n".encode("latin-1"))
    text = refused(lambda: read_prompts_csv(path, SHAPE))
    assert str(path) in text
    return text


def b07(c: Ctx, mp) -> str:
    csv = c.tmp / "p.csv"
    csv.write_text("id,slice,row0,col0,row1,col1\n1,8,10,10,22,22\n")
    no_work(mp)
    rc, text = c.cli(
        "segment", c.tif, "--prompts", csv, "--out", c.tmp / "b.tif", "--overwrite", "--resume"
    )
    assert rc == 2
    return text


# --- checkpoints --------------------------------------------------------------------------------


def _with_metadata(c: Ctx, **changes: str) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = save_checkpoint(c.tmp / "pm.safetensors", PropMask(TINY))
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata()) | changes
    save_file(load_file(str(path)), str(path), metadata=meta)
    return path


def _names_file(path: Path, text: str) -> str:
    assert str(path) in text, text
    return text


def k01(c: Ctx, _mp) -> str:
    import time

    arch = TINY.to_dict() | {"base_channels": 4096, "max_channels": 4096}
    path = _with_metadata(c, arch=json.dumps(arch))
    start = time.perf_counter()
    text = refused(lambda: load_network(path), CheckpointError)
    assert time.perf_counter() - start < 5
    return _names_file(path, text)


def k02(c: Ctx, _mp) -> str:
    with torch.device("meta"):
        huge = PropMask(ArchConfig(base_channels=4096, max_channels=4096))
    path = c.tmp / "propmask.pth"
    torch.save({k: torch.zeros(1).expand(v.shape) for k, v in huge.state_dict().items()}, path)
    return _names_file(path, refused(lambda: load_network(path), CheckpointError))


def k03(c: Ctx, _mp) -> str:
    path = _with_metadata(c, arch=json.dumps(TINY.to_dict() | {"base_channels": -4}))
    return _names_file(path, refused(lambda: load_network(path), CheckpointError))


def k04(c: Ctx, _mp) -> str:
    other = _with_metadata(c, preprocessing="{oops")
    assert "'preprocessing' metadata is not valid JSON" in refused(lambda: load_network(other))
    path = _with_metadata(c, provenance="{oops")
    return _names_file(path, refused(lambda: load_network(path), CheckpointError))


class _Code:
    def __reduce__(self):
        return (print, ("this must never run",))


def k05(c: Ctx, _mp) -> str:
    path = c.tmp / "code.pth"
    torch.save({"model_state_dict": {"x": _Code()}}, path)
    text = refused(lambda: load_network(path), CheckpointError)
    assert "weights_only=False" not in text
    return _names_file(path, text)


def k06(c: Ctx, _mp) -> str:
    path = c.tmp / "propmask.pth"
    torch.save({"model_state_dict": PropMask(TINY).state_dict()}, path)
    path.write_bytes(path.read_bytes()[:1000])
    return _names_file(path, refused(lambda: load_network(path), CheckpointError))


def k07(c: Ctx, _mp) -> str:
    return refused(lambda: resolve_model(str(c.tmp)), CheckpointError)


def k08(c: Ctx, mp) -> str:
    state = c.tmp / "run" / "propmask" / "last.pt"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"PK\x03\x04 cut short")
    no_work(mp)
    mp.setattr("napari_propsam.cli._train.read_volume", lambda *_a: pytest.fail("work started"))
    rc, text = c.cli(
        "finetune", "--image", c.tif, "--labels", c.mask, "--out", c.tmp / "run",
        "--network", "propmask",
    )  # fmt: skip
    assert rc == 2 and str(state) in text
    return text


# --- engine options -----------------------------------------------------------------------------


def _option(**kw) -> str:
    return refused(lambda: split_options(kw))


def o01(c, _mp):
    return _option(max_batch=2.5)


def o02(c, _mp):
    return _option(max_batch=math.nan)


def o03(c, _mp):
    return _option(crop_ratio=math.nan)


def o04(c, _mp):
    return _option(min_crop=10**9)


def o05(c, _mp):
    return _option(min_area=math.nan)


def o06(c, _mp):
    return _option(max_neighbours=math.nan)


def o07(c, _mp):
    return refused(lambda: PropagationConfig(thickness=0))


def o08(c, _mp):
    return refused(lambda: BoxConfig(vmin_percentiles=(5.0, math.nan)))


def o09(c: Ctx, _mp) -> str:
    text = refused(lambda: ps.segment(c.image, slice_index=8, mask=c.truth[8], thicknes=3))
    return text


# --- prompts and arguments ----------------------------------------------------------------------


def _seg(c: Ctx, **kw) -> str:
    args = dict(slice_index=8, mask=c.truth[8], model=make_tiny_bundle(fg_bias=5),
                predictor=ThresholdPredictor())  # fmt: skip
    args.update(kw)
    image = args.pop("image", c.image)
    return refused(lambda: list(ps.propagate(image, **args)))


def m01(c, _mp):
    assert "without slice_index, mask must be a (16, 32, 32) volume" in _seg(c, slice_index=None)
    return _seg(c, slice_index=None, mask=None, box=(10, 10, 22, 22))


def m02(c, _mp):
    return _seg(c, slice_index="3")


def m03(c, _mp):
    return _seg(c, image=c.image.tolist())


def m04(c, _mp):
    return _seg(c, axis="0")


def m05(c, _mp):
    return _seg(c, model="/tmp", predictor=None)


def m06(c, _mp):
    return _seg(c, mask=np.full(SHAPE[1:], "x"))


def m07(c, _mp):
    one = np.zeros(SHAPE[1:], bool)
    one[16, 16] = True
    return _seg(c, mask=one)


def m08(c, _mp):
    return _seg(c, mask=None, box=(16, 16, 17, 17))


def m09(c, _mp):
    return _seg(c, mask=None, box="abcd")


def m10(c, _mp):
    return _seg(c, spacing="a")


CASES: dict[str, Callable[[Ctx, pytest.MonkeyPatch], str]] = {
    name.upper(): fn
    for name, fn in dict(globals()).items()
    if re.fullmatch(r"[cbkom]\d\d", name) and callable(fn)
}

#: Widget rows: the GUI test (headless napari, tests/_widgets) that checks each.
WIDGET_TESTS = {
    "W01": "test_a_sketch_never_takes_an_id_the_output_already_holds",
    "W02": "test_repropagation_never_erases_another_object_under_the_same_id",
    "W03": "test_repropagation_refuses_an_id_that_marks_two_objects_on_the_slice",
    "W04": "test_a_hidden_output_layer_is_written_and_undone",
    "W05": "test_choosers_never_default_to_ground_truth_or_output",
    "W06": "test_a_long_message_or_layer_name_does_not_widen_the_dock",
    "W07": "test_a_damaged_resume_state_is_refused_before_fine_tuning",
}


def test_every_row_has_a_case_and_every_case_a_row():
    rows = matrix()
    assert len(rows) >= 50
    assert set(rows) == set(CASES) | set(WIDGET_TESTS)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_matrix_row_is_what_happens(case, tmp_path, caplog, capsys, monkeypatch):
    clear_cache()
    expected = matrix()[case]
    message = CASES[case](Ctx(tmp_path, caplog, capsys), monkeypatch)
    assert expected in message, f"{case}: expected {expected!r} in {message!r}"
    assert "Traceback" not in message


@pytest.mark.parametrize("case", sorted(WIDGET_TESTS))
def test_widget_rows_name_a_gui_test_that_checks_them(case):
    from _widgets import test_nothing_lost

    fn = getattr(test_nothing_lost, WIDGET_TESTS[case])
    source = inspect.getsource(fn).replace("_", " ")
    assert matrix()[case] in source, f"{case}: the test does not check {matrix()[case]!r}"
