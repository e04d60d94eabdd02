"""Find similar and image series on held-out synthetic data, with the bundled lite model.

Find similar: held-out kidney-cortex volumes (``glomeruli`` family, seeds >= 100000 as in
``evaluation.heldout_volumes``). On the slice crossing the most glomeruli, ONE example (the
largest cross-section, as a mask) is given; the search must find the other glomeruli on that
slice (2D match at IoU >= 0.5) and each object is then propagated in 3D (3D match at IoU >= 0.5,
DSC of the matched objects). Ground truth on the slice = target cross-sections whose area lies in
the searched size range (>= ``min_area_factor`` x the example's area; smaller caps of glomeruli
that end next to the slice are listed separately).

Series: separate but similar 2D images, two kinds: (a) slices 4 apart through the main object
of held-out organ/tubes/lesion volumes (one series per volume); (b) the largest cross-section of
a glomerulus from each of 10 different volumes, cropped around its centre (different shapes,
textures and intensities). The middle image (or first, middle and last) is annotated with its
true mask; mean DSC over the other images.

    python benchmarks/bench_similar.py [--volumes 8] [--size 48 192 192] [--series-volumes 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from napari_propsam.api import apply_update
from napari_propsam.devtools.evaluation import heldout_volumes
from napari_propsam.labeling import ObjectUpdate
from napari_propsam.metrics import dice
from napari_propsam.predictors import PropMaskPredictor
from napari_propsam.registry import resolve_model
from napari_propsam.series import propagate_series
from napari_propsam.similar import SimilarConfig, SimilarFound, find_similar_stream


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return float((a & b).sum()) / union if union else 0.0


def greedy_match(pred: list[np.ndarray], truth: list[np.ndarray], thr: float = 0.5) -> list:
    """One-to-one ``(pred index, truth index, IoU)`` pairs with IoU >= thr, best first."""
    pairs = []
    for i, p in enumerate(pred):
        for j, t in enumerate(truth):
            if (p & t).any():
                v = iou(p, t)
                if v >= thr:
                    pairs.append((v, i, j))
    used_p, used_t, out = set(), set(), []
    for v, i, j in sorted(pairs, reverse=True):
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            out.append((i, j, v))
    return out


def bench_similar(n_volumes: int, shape: tuple[int, int, int], predictor, bundle) -> dict:
    cfg = SimilarConfig()
    totals = dict(
        all3=0, gt2=0, found2=0, hit2=0, gt3=0, found3=0, hit3=0, small=0, seconds=0.0, n=0
    )
    dscs: list[float] = []
    for vol in heldout_volumes(n_volumes, families=("glomeruli",), shape=shape):
        lab = vol.labels
        targets = [t for t in vol.targets]
        counts = [sum(int((lab[z] == t).sum()) >= 20 for t in targets) for z in range(lab.shape[0])]
        z = int(np.argmax(counts))
        areas = {t: int((lab[z] == t).sum()) for t in targets}
        example = max(areas, key=areas.get)
        lo = cfg.min_area_factor * areas[example]
        gt2 = [lab[z] == t for t in targets if t != example and areas[t] >= lo]
        # 3D: the glomeruli crossing the example slice in the size range (the search sees those).
        gt3 = [lab == t for t in targets if t != example and areas[t] >= lo]
        totals["all3"] += len(targets) - 1
        totals["small"] += sum(1 for t in targets if t != example and 0 < areas[t] < lo)
        t0 = time.perf_counter()
        objects: dict[int, np.ndarray] = {}
        found = None
        for ev in find_similar_stream(
            vol.image,
            slice_index=z,
            examples_mask=(lab[z] == example),
            spacing=vol.spacing,
            model=bundle,
            predictor=predictor,
            config=cfg,
        ):
            if isinstance(ev, SimilarFound):
                found = ev
                t_search = time.perf_counter() - t0
            elif isinstance(ev, ObjectUpdate) and ev.update.final:
                obj = objects.setdefault(ev.position, np.zeros(lab.shape, bool))
                apply_update(obj, ev.update)
        dt = time.perf_counter() - t0
        new2 = [p.mask for p in found.prompts[found.n_examples :]]
        new3 = [objects.get(i, np.zeros(lab.shape, bool)) for i in range(1, len(found.prompts))]
        m2 = greedy_match(new2, gt2)
        m3 = greedy_match(new3, gt3)
        ex_dsc = dice(objects.get(0, np.zeros(lab.shape, bool)), lab == example)
        dscs.extend(dice(new3[i], gt3[j]) for i, j, _ in m3)
        totals["gt2"] += len(gt2)
        totals["found2"] += len(new2)
        totals["hit2"] += len(m2)
        totals["gt3"] += len(gt3)
        totals["found3"] += len(new3)
        totals["hit3"] += len(m3)
        totals["seconds"] += dt
        totals["n"] += len(found.prompts)
        print(
            f"  {vol.family}-{vol.seed} z={z} spacing={vol.spacing[0]:.0f}: example area "
            f"{areas[example]}, {len(gt2)} others on the slice, found {len(new2)}, 2D matched "
            f"{len(m2)}; 3D matched {len(m3)}/{len(gt3)}; example DSC {ex_dsc:.3f}; search "
            f"{t_search:.1f} s, total {dt:.1f} s for {len(found.prompts)} objects"
        )
    totals["dsc"] = float(np.mean(dscs)) if dscs else float("nan")
    return totals


def _score_series(images: np.ndarray, truth: np.ndarray, predictor) -> dict:
    """Mean and worst DSC of the non-annotated images, with 1 and with 3 annotated."""
    n = len(images)
    out = {}
    for annotated in ([n // 2], [0, n // 2, n - 1]):
        labels = propagate_series(images, {i: truth[i] for i in annotated}, predictor=predictor)
        out[len(annotated)] = [
            dice(labels[i] > 0, truth[i]) for i in range(n) if i not in annotated
        ]
    return out


def _main_object(vol) -> np.ndarray:
    sizes = {t: int((vol.labels == t).sum()) for t in vol.targets}
    return vol.labels == max(sizes, key=sizes.get)


def series_spaced(families, n_vol: int, step: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Slices ``step`` apart through the main object of each volume: one series per volume."""
    out = []
    for vol in heldout_volumes(n_vol, families=families, shape=(64, 128, 128)):
        obj = _main_object(vol)
        zs = np.flatnonzero(obj.sum(axis=(1, 2)) >= 50)[::step]
        if len(zs) >= 5:
            out.append((vol.image[zs], obj[zs]))
    return out


def series_volumes(family: str, n: int, half: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """One series of ``n`` images from ``n`` different volumes: the main object's largest
    cross-section, cropped ``2 * half`` square around its centre (like a set of centred
    micrographs of one structure)."""
    images, truth = [], []
    for vol in heldout_volumes(n, families=(family,), shape=(32, 160, 160)):
        obj = _main_object(vol)
        z = int(np.argmax(obj.sum(axis=(1, 2))))
        r, c = np.argwhere(obj[z]).mean(0).round().astype(int)
        img, tr = np.pad(vol.image[z], half, mode="reflect"), np.pad(obj[z], half)
        images.append(img[r : r + 2 * half, c : c + 2 * half])
        truth.append(tr[r : r + 2 * half, c : c + 2 * half])
    return [(np.stack(images), np.stack(truth))]


def report_series(name: str, series: list, predictor) -> None:
    scores: dict[int, list[float]] = {1: [], 3: []}
    for images, truth in series:
        for k, v in _score_series(images, truth, predictor).items():
            scores[k].extend(v)
    for k, v in scores.items():
        print(
            f"  {name}, {k} annotated: mean DSC {np.mean(v):.3f} (worst {np.min(v):.3f}) over "
            f"{len(v)} images of {len(series)} series"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=8, help="glomeruli volumes")
    ap.add_argument("--size", type=int, nargs=3, default=(48, 192, 192), metavar=("Z", "Y", "X"))
    ap.add_argument("--series-volumes", type=int, default=2, help="volumes per family")
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    bundle = resolve_model(args.model)
    predictor = PropMaskPredictor(bundle.propmask.model, "cpu")
    print(f"find similar: {args.volumes} held-out glomeruli volumes {tuple(args.size)}")
    t = bench_similar(args.volumes, tuple(args.size), predictor, bundle)
    print(
        f"2D on the example slice: recall {t['hit2'] / max(1, t['gt2']):.3f} "
        f"({t['hit2']}/{t['gt2']}), precision {t['hit2'] / max(1, t['found2']):.3f} "
        f"({t['hit2']}/{t['found2']}); {t['small']} smaller caps not counted"
    )
    print(
        f"3D (IoU >= 0.5, same objects): recall "
        f"{t['hit3'] / max(1, t['gt3']):.3f} ({t['hit3']}/{t['gt3']}), precision "
        f"{t['hit3'] / max(1, t['found3']):.3f} ({t['hit3']}/{t['found3']}); mean DSC of matched "
        f"objects {t['dsc']:.3f}; {t['seconds'] / max(1, t['n']):.2f} s per object (search "
        "included, 1 CPU thread)"
    )
    print(f"  ({t['all3']} glomeruli in all, most of them not crossing the example slice)")
    print("series (each image guided by the nearest annotated one):")
    fams = ("organ", "tubes", "lesion")
    report_series(
        "slices 4 apart, " + "/".join(fams), series_spaced(fams, args.series_volumes, 4), predictor
    )
    report_series(
        "10 different glomeruli volumes, centred crops",
        series_volumes("glomeruli", 10, 32),
        predictor,
    )


if __name__ == "__main__":
    main()
