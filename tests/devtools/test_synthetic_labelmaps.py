"""Tests of the label-map-first training families and the new held-out families."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import ndimage

from napari_propsam.devtools.synthetic import (
    CLASSIC_FAMILIES,
    FAMILIES,
    HELDOUT_FAMILIES,
    LABELMAP_FAMILIES,
    MIN_EXTENT,
    SyntheticVolume,
    make_volume,
)
from napari_propsam.devtools.synthetic._generate import output_shape
from napari_propsam.devtools.synthetic.appearance import PROFILES, Levels, assign_looks, compose
from napari_propsam.devtools.synthetic.labelmaps import (
    Part,
    make_label_scene,
    partition,
    place_object,
)

SHAPE = (32, 64, 64)
NEW_FAMILIES = LABELMAP_FAMILIES + ("vessels_fluo", "texture")
_FULL = np.ones((3, 3, 3), bool)


def _extent(mask: np.ndarray) -> list[int]:
    return [
        int(np.count_nonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))))
        for ax in range(3)
    ]


def _inside_and_shell(image: np.ndarray, mask: np.ndarray, labels: np.ndarray | None = None):
    """Voxels inside ``mask`` (eroded by one) and in a 2-4 voxel shell around it (background
    of ``labels`` only, if given)."""
    sl = ndimage.find_objects(mask.astype(np.int8))[0]
    sl = tuple(slice(max(s.start - 5, 0), s.stop + 5) for s in sl)
    m = mask[sl]
    inner = ndimage.binary_erosion(m, _FULL)
    shell = ndimage.binary_dilation(m, _FULL, iterations=4) & ~ndimage.binary_dilation(
        m, _FULL, iterations=2
    )
    if labels is not None:
        shell &= labels[sl] == 0
    return image[sl][inner], image[sl][shell]


@pytest.fixture(scope="module")
def volumes() -> dict[str, SyntheticVolume]:
    return {f: make_volume(f, seed=i, shape=SHAPE) for i, f in enumerate(NEW_FAMILIES)}


def test_families_registered() -> None:
    assert FAMILIES[: len(CLASSIC_FAMILIES)] == CLASSIC_FAMILIES
    assert set(LABELMAP_FAMILIES) <= set(FAMILIES)
    assert {"cysts", "vessels_fluo", "texture"} <= set(HELDOUT_FAMILIES)
    assert set(HELDOUT_FAMILIES).isdisjoint(FAMILIES)


def test_training_defaults_never_draw_heldout_families(monkeypatch: pytest.MonkeyPatch) -> None:
    import napari_propsam.devtools.synthetic as syn
    from napari_propsam.training import synthetic_factory

    drawn: list[str] = []

    def fake(family: str, seed: int, shape: tuple[int, int, int]) -> SyntheticVolume:
        drawn.append(family)
        return make_volume("organ", 0, (16, 16, 16))

    monkeypatch.setattr(syn, "make_volume", fake)
    make = synthetic_factory()
    for i in range(2 * len(FAMILIES)):
        make(i)
    assert set(drawn) == set(FAMILIES)
    assert not set(drawn) & set(HELDOUT_FAMILIES)


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_new_family_output_is_valid(volumes: dict[str, SyntheticVolume], family: str) -> None:
    vol = volumes[family]
    shape = output_shape(family, SHAPE)
    assert vol.family == family
    assert vol.image.shape == shape and vol.image.dtype == np.float32
    assert vol.labels.shape == shape and vol.labels.dtype == np.int32
    assert np.isfinite(vol.image).all() and vol.image.min() >= 0 and vol.image.max() > 50
    assert vol.spacing[1:] == (1.0, 1.0) and 1.0 <= vol.spacing[0] <= 6.0
    # Label maps label every voxel (tissue regions too), so 0 may be absent; ids are 1..n.
    ids = np.unique(vol.labels)
    ids = ids[ids > 0]
    assert np.array_equal(ids, np.arange(1, ids.size + 1))
    assert vol.targets and list(vol.targets) == sorted(set(vol.targets))
    for t in vol.targets:
        mask = vol.labels == t
        assert min(_extent(mask)) >= MIN_EXTENT, (t, _extent(mask))
        assert ndimage.label(mask, _FULL)[1] == 1


def test_large_family_doubles_the_plane() -> None:
    assert output_shape("labelmap_large", (64, 128, 128)) == (32, 256, 256)
    assert output_shape("labelmap_large", (20, 40, 40)) == (16, 80, 80)
    assert output_shape("labelmap", (64, 128, 128)) == (64, 128, 128)


@pytest.mark.parametrize("family", ["labelmap", "labelmap_thin", "vessels_fluo", "texture"])
def test_deterministic_per_seed(family: str) -> None:
    a = make_volume(family, 11, shape=SHAPE)
    b = make_volume(family, 11, shape=SHAPE)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert a.targets == b.targets and a.spacing == b.spacing
    c = make_volume(family, 12, shape=SHAPE)
    assert not np.array_equal(a.labels, c.labels)


def test_anisotropy_override() -> None:
    vol = make_volume("labelmap_thin", 3, shape=SHAPE, anisotropy=4.0)
    assert vol.spacing == (4.0, 1.0, 1.0)
    spacings = {make_volume("labelmap", s, shape=(16, 32, 32)).spacing[0] for s in range(10)}
    assert 1.0 in spacings and any(z > 1.5 for z in spacings)


def test_both_polarities_occur() -> None:
    signs = set()
    for seed in range(6):
        vol = make_volume("labelmap", seed, shape=SHAPE)
        for t in vol.targets:
            inside, shell = _inside_and_shell(vol.image, vol.labels == t, vol.labels)
            if inside.size < 20 or shell.size < 20:
                continue
            diff = inside.mean() - shell.mean()
            # Count only clear differences, well above the spread of the surroundings.
            if abs(diff) > shell.std():
                signs.add(np.sign(diff))
    assert signs == {-1.0, 1.0}


def _across(vol: SyntheticVolume) -> list[int]:
    """In-plane bounding-box size (larger of Y and X) of every target."""
    objs = ndimage.find_objects(vol.labels)
    return [
        max(objs[t - 1][1].stop - objs[t - 1][1].start, objs[t - 1][2].stop - objs[t - 1][2].start)
        for t in vol.targets
    ]


def test_target_sizes_span_5_to_over_200_px(volumes: dict[str, SyntheticVolume]) -> None:
    small = [a for f in LABELMAP_FAMILIES[:3] for a in _across(volumes[f])]
    assert min(small) <= 10, small
    large = []
    for seed in (2, 4):
        # Isotropic keeps the label map on the output grid (fast); the default training shape.
        large += _across(make_volume("labelmap_large", seed, (64, 128, 128), anisotropy=1.0))
    assert max(large) > 200, large


@pytest.mark.parametrize("seed", range(6))
def test_equal_mean_target_differs_only_by_texture(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scene = make_label_scene((32, 64, 64), 1.0, rng)
    partition(scene, 1, False)
    placed = place_object(scene, "superquadric", 36.0, Part("superquadric", mode="equal"))
    assert placed is not None
    target = placed[0]
    lv = Levels(low=500.0, span=1000.0, noise=10.0)
    looks = assign_looks(scene, PROFILES["mr"], lv)
    assert looks.mean[target] == looks.mean[1]  # exactly the host's mean
    img = compose(scene, looks, lv)
    mask = scene.labels == target
    inside = img[ndimage.binary_erosion(mask, _FULL)]
    # The whole host, minus a band the PSF-free composite still shares with the target.
    outside = img[~ndimage.binary_dilation(mask, _FULL, iterations=2)]
    d_mean = abs(inside.mean() - outside.mean())
    d_std = abs(inside.std() - outside.std())
    assert d_std > 0.02 * lv.span, (seed, d_std)
    assert d_mean < 0.2 * d_std, (seed, d_mean, d_std)


def test_texture_family_has_equal_mean_and_std() -> None:
    checked = 0
    for seed in range(3):
        vol = make_volume("texture", seed, shape=(32, 96, 96), anisotropy=1.0)
        for t in vol.targets:
            mask = vol.labels == t
            if np.count_nonzero(mask) < 2000:
                continue
            inside, shell = _inside_and_shell(vol.image, mask)
            spread = shell.std()
            assert abs(inside.mean() - shell.mean()) < 0.25 * spread
            assert 0.7 < inside.std() / spread < 1.45
            checked += 1
    assert checked >= 2


def test_vessels_are_hollow() -> None:
    # The lumen is part of the vessel's label but as dark as the background around it.
    vol = make_volume("vessels_fluo", 4, shape=(48, 96, 96), anisotropy=1.0)
    biggest = max(vol.targets, key=lambda t: int(np.count_nonzero(vol.labels == t)))
    mask = vol.labels == biggest
    depth = ndimage.distance_transform_edt(mask)
    wall = mask & (depth <= 1.5)
    core = depth >= max(2.5, 0.7 * depth.max())
    assert core.any()
    assert vol.image[wall].mean() > 1.5 * vol.image[core].mean()


def test_classic_families_unchanged() -> None:
    # The benchmark's volumes: adding families must not change what a classic seed gives.
    expected = {"organ": "dedaa71419e0", "tubes": "be57568c113a", "cysts": "b4a1598d46e4"}
    for family, digest in expected.items():
        vol = make_volume(family, 7, (32, 64, 64), 3.0)
        assert hashlib.sha1(vol.labels.tobytes()).hexdigest()[:12] == digest, family
