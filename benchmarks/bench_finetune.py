"""Fine-tuning demonstration: adapt the bundled weights to a family they never saw.

The ``cysts`` family (hollow cysts: a bright wall around a dark lumen, the whole cyst is the
target) is in ``napari_propsam.devtools.synthetic.HELDOUT_FAMILIES``: no bundled weights were
trained on it. The script

1. scores the bundled model on held-out cyst volumes (mask and box prompts, several objects);
2. fine-tunes PropMask and Box2Mask on a few *other* cyst volumes with
   :func:`napari_propsam.training.finetune` (what ``propsam finetune`` runs);
3. scores the fine-tuned model on the same held-out volumes and prints the gain.

    python benchmarks/bench_finetune.py [--train-volumes 3] [--steps 300] [--out runs/ft-cysts]

The fine-tuning run is resumable: rerunning with the same ``--out`` continues where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from napari_propsam.devtools.evaluation import evaluate, heldout_volumes, summarise
from napari_propsam.devtools.synthetic import make_volume
from napari_propsam.training import finetune, from_synthetic

# Seeds of the fine-tuning volumes: disjoint from training (0+), validation (50,000+) and the
# held-out evaluation volumes (100,000+).
FINETUNE_SEED = 300_000


def _mean_dsc(results: list, prompt: str) -> float:
    return float(np.mean([r.dsc for r in results if r.method == "propsam" and r.prompt == prompt]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--family", default="cysts")
    ap.add_argument("--train-volumes", type=int, default=3)
    ap.add_argument("--eval-volumes", type=int, default=4)
    ap.add_argument("--objects", type=int, default=3, help="objects scored per held-out volume")
    ap.add_argument("--steps", type=int, default=300, help="PropMask fine-tuning steps")
    ap.add_argument("--box-steps", type=int, default=150, help="Box2Mask fine-tuning steps")
    ap.add_argument("--out", default="runs/ft-cysts")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    import torch

    torch.set_num_threads(args.threads)

    evals = heldout_volumes(args.eval_volumes // 2 or 1, [args.family])
    evals += heldout_volumes(args.eval_volumes - len(evals), [args.family], seed_base=100_050)
    kw = dict(axes=(0,), baseline=False, max_objects=args.objects)
    t0 = time.perf_counter()
    before = evaluate(evals, **kw)
    t_eval = time.perf_counter() - t0

    train_vols = [
        from_synthetic(make_volume(args.family, FINETUNE_SEED + i, anisotropy=1.0 + 2.0 * (i % 2)))
        for i in range(args.train_volumes)
    ]
    n_obj = sum(len(v.targets) for v in train_vols)
    t0 = time.perf_counter()
    paths = {}
    for net, steps in (("propmask", args.steps), ("box2mask", args.box_steps)):
        paths.update(finetune(train_vols, args.out, networks=(net,), steps=steps, seed=0))
    t_ft = time.perf_counter() - t0
    after = evaluate(evals, model=paths["propmask"], **kw)

    print(f"family {args.family!r} (never in the bundled weights' training data)")  # noqa: T201
    print(  # noqa: T201
        f"fine-tuned on {len(train_vols)} volumes ({n_obj} objects), PropMask {args.steps} + "
        f"Box2Mask {args.box_steps} steps in {t_ft / 60:.1f} min; scored on {len(evals)} other "
        f"volumes ({len(before) // 2} prompts per kind; {t_eval:.0f} s per evaluation)"
    )
    print("\n--- bundled lite weights ---\n" + summarise(before))  # noqa: T201
    print("\n--- fine-tuned ---\n" + summarise(after))  # noqa: T201
    for prompt in ("mask", "box"):
        b, a = _mean_dsc(before, prompt), _mean_dsc(after, prompt)
        print(f"{prompt:4s} prompt DSC: {b:.3f} -> {a:.3f} ({a - b:+.3f})")  # noqa: T201


if __name__ == "__main__":
    main()
