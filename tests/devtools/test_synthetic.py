"""Tests of the procedural training-data generator (napari_propsam.devtools.synthetic)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from napari_propsam.devtools.synthetic import (
    CLASSIC_FAMILIES,
    FAMILIES,
    HELDOUT_FAMILIES,
    MIN_EXTENT,
    SyntheticVolume,
    make_dataset,
    make_sample_stack,
    make_volume,
)
from napari_propsam.devtools.synthetic.textures import SKIMAGE_TEXTURES, skimage_texture

# Smaller than the training default to keep the suite fast; every family must work here too.
SHAPE = (40, 96, 96)


@pytest.fixture(scope="module")
def volumes() -> dict[str, SyntheticVolume]:
    """One volume per classic family; seeds chosen so isotropic and thick-slice volumes both
    occur. The label-map families are tested in test_synthetic_labelmaps.py."""
    return {f: make_volume(f, seed=i, shape=SHAPE) for i, f in enumerate(CLASSIC_FAMILIES)}


def _extent(mask: np.ndarray) -> list[int]:
    """Number of indices along each axis where ``mask`` (3D bool) has voxels."""
    return [
        int(np.count_nonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))))
        for ax in range(3)
    ]


def _inside_and_shell(vol: SyntheticVolume, label: int) -> tuple[float, float, float]:
    """Mean intensity inside ``label``, mean and std in a 1-3 voxel shell of background."""
    sl = ndimage.find_objects((vol.labels == label).astype(np.int8))[0]
    sl = tuple(slice(max(s.start - 5, 0), s.stop + 5) for s in sl)
    mask = vol.labels[sl] == label
    full = np.ones((3, 3, 3), bool)
    near = ndimage.binary_dilation(mask, full, iterations=1)
    far = ndimage.binary_dilation(mask, full, iterations=3)
    shell = far & ~near & (vol.labels[sl] == 0)
    img = vol.image[sl]
    return float(img[mask].mean()), float(img[shell].mean()), float(img[shell].std())


def test_families_constant() -> None:
    assert FAMILIES[: len(CLASSIC_FAMILIES)] == CLASSIC_FAMILIES
    assert CLASSIC_FAMILIES == (
        "glomeruli",
        "organ",
        "lesion",
        "tubes",
        "plates",
        "touching",
        "dark",
        "lowcontrast",
    )


def test_heldout_cysts_have_a_dark_lumen_inside_a_bright_wall() -> None:
    # The held-out family must never leak into training's round-robin.
    assert set(HELDOUT_FAMILIES).isdisjoint(FAMILIES) and "cysts" in HELDOUT_FAMILIES
    vol = make_volume("cysts", seed=3, shape=SHAPE, anisotropy=1.0)
    assert vol.family == "cysts" and vol.targets
    np.testing.assert_array_equal(vol.image, make_volume("cysts", 3, SHAPE, 1.0).image)
    big = max(vol.targets, key=lambda t: int(np.count_nonzero(vol.labels == t)))
    mask = vol.labels == big
    dist = ndimage.distance_transform_edt(mask)
    wall = mask & (dist <= 1.5)
    lumen = dist >= 0.6 * dist.max()
    _, shell, _ = _inside_and_shell(vol, big)
    # Bright wall, lumen darker than both the wall and the surrounding tissue.
    assert vol.image[wall].mean() > shell > vol.image[lumen].mean()


@pytest.mark.parametrize("family", CLASSIC_FAMILIES)
def test_family_output_is_valid(volumes: dict[str, SyntheticVolume], family: str) -> None:
    vol = volumes[family]
    assert vol.family == family
    assert vol.image.shape == SHAPE and vol.image.dtype == np.float32
    assert vol.labels.shape == SHAPE and vol.labels.dtype == np.int32
    assert np.isfinite(vol.image).all() and vol.image.min() >= 0
    # Raw grey values, not normalised.
    assert vol.image.max() > 50
    assert len(vol.spacing) == 3 and vol.spacing[1:] == (1.0, 1.0)
    assert 1.0 <= vol.spacing[0] <= 5.0
    ids = np.unique(vol.labels)
    assert ids[0] == 0 and np.array_equal(ids, np.arange(ids.size))  # consecutive ids
    assert len(vol.targets) >= 1
    assert list(vol.targets) == sorted(set(vol.targets))
    for t in vol.targets:
        mask = vol.labels == t
        assert mask.any()
        ext = _extent(mask)
        assert min(ext) >= MIN_EXTENT, (t, ext)
        assert all(e <= s for e, s in zip(ext, SHAPE, strict=True))
        # Targets are one 26-connected piece.
        assert ndimage.label(mask, np.ones((3, 3, 3), bool))[1] == 1
        inside, shell, spread = _inside_and_shell(vol, t)
        if family != "lowcontrast":
            assert abs(inside - shell) > 0.3 * spread, (t, inside, shell, spread)
        if family == "dark":
            assert inside < shell, (t, inside, shell)


def test_both_polarities_occur() -> None:
    signs = set()
    for seed in range(4):
        vol = make_volume("lesion", seed, shape=SHAPE)
        for t in vol.targets:
            inside, shell, _ = _inside_and_shell(vol, t)
            signs.add(np.sign(inside - shell))
    assert signs == {-1.0, 1.0}


@pytest.mark.parametrize("family", ["glomeruli", "touching"])
def test_deterministic(family: str) -> None:
    a = make_volume(family, 7, shape=SHAPE)
    b = make_volume(family, 7, shape=SHAPE)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.labels, b.labels)
    assert a.targets == b.targets and a.spacing == b.spacing
    c = make_volume(family, 8, shape=SHAPE)
    assert not np.array_equal(a.image, c.image)


def test_anisotropy_gives_fewer_slices_per_object() -> None:
    def z_over_xy(aniso: float) -> float:
        ratios = []
        for seed in range(3):
            vol = make_volume("touching", seed, shape=SHAPE, anisotropy=aniso)
            assert vol.spacing == (aniso, 1.0, 1.0)
            objs = ndimage.find_objects(vol.labels)
            for t in vol.targets:
                ez, ey, ex = (s.stop - s.start for s in objs[t - 1])
                ratios.append(ez / ((ey + ex) / 2))
        return float(np.median(ratios))

    iso, thick = z_over_xy(1.0), z_over_xy(4.0)
    assert thick < 0.5 * iso, (iso, thick)


def test_anisotropy_drawn_from_seed() -> None:
    spacings = {make_volume("plates", s, shape=(24, 48, 48)).spacing[0] for s in range(8)}
    assert 1.0 in spacings
    assert any(1.5 <= z <= 5.0 for z in spacings)


def test_make_dataset_round_robin() -> None:
    vols = list(make_dataset([3, 4, 5], families=("plates", "dark"), shape=(24, 48, 48)))
    assert [v.family for v in vols] == ["plates", "dark", "plates"]
    assert [v.seed for v in vols] == [3, 4, 5]
    assert all(v.image.shape == (24, 48, 48) for v in vols)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="family"):
        make_volume("cats", 0)
    with pytest.raises(ValueError, match="shape"):
        make_volume("organ", 0, shape=(8, 64, 64))
    with pytest.raises(ValueError, match="anisotropy"):
        make_volume("organ", 0, anisotropy=0.0)
    with pytest.raises(ValueError, match="family"):
        next(make_dataset([0], families=("dogs",)))
    with pytest.raises(ValueError, match="empty"):
        next(make_dataset([0], families=()))


def test_sample_stack() -> None:
    vol = make_sample_stack()
    assert vol.family == "glomeruli"
    assert vol.image.shape == (64, 192, 192) and vol.image.dtype == np.float32
    assert vol.labels.shape == vol.image.shape and vol.labels.dtype == np.int32
    assert vol.image.min() >= 0 and vol.image.max() <= np.iinfo(np.uint16).max
    assert np.array_equal(vol.image, np.rint(vol.image))  # lossless as uint16
    assert vol.spacing == (1.0, 1.0, 1.0)
    assert len(vol.targets) >= 2


def test_shipped_sample_matches_the_generator() -> None:
    # A generator edit must come with `python scripts/make_sample_data.py`, or napari's sample
    # and the documented figures drift apart from the code.
    from importlib.resources import files

    with np.load(str(files("napari_propsam") / "_sample" / "glomeruli.npz")) as shipped:
        vol = make_sample_stack(int(shipped["seed"]))
        np.testing.assert_array_equal(shipped["image"], vol.image.astype(np.uint16))
        np.testing.assert_array_equal(shipped["labels"], vol.labels)


def test_skimage_textures_load_offline() -> None:
    loaded = [skimage_texture(name) for name in SKIMAGE_TEXTURES]
    assert all(t is not None and t.ndim == 2 and t.dtype == np.float32 for t in loaded)


def test_no_gui_imports() -> None:
    code = (
        "import sys, napari_propsam.devtools.synthetic; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt5', "
        "'magicgui')]; print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
