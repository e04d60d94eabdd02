"""``propsam bench`` and ``propsam models``: held-out accuracy and the model list."""

from __future__ import annotations

import argparse
import logging

from ._common import add_engine_options, engine_configs

logger = logging.getLogger("napari_propsam")


def cmd_bench(args: argparse.Namespace) -> int:
    import datetime
    import time

    from ..devtools.evaluation import OFFSETS, evaluate, heldout_volumes, quality_report, summarise

    counts = sorted(set(args.prompts_per_object))
    if counts[0] < 1:
        raise ValueError(f"--prompts-per-object must be 1 or more, got {counts[0]}")
    vols = heldout_volumes(args.per_family, args.families)
    logger.info(
        "held-out set: %d volumes; axes %s; prompts %s; prompts per object %s",
        len(vols), args.axes, args.prompts, counts,
    )  # fmt: skip
    # One object per volume; one prompt per offset, axis and kind (twice with the baseline), or
    # one run per prompt count (the baseline takes one prompt: only with count 1).
    per_axis = (
        len(OFFSETS) * (1 if args.no_baseline else 2)
        if counts == [1]
        else len(counts) + (0 if args.no_baseline or 1 not in counts else 1)
    )
    total = len(vols) * len(args.axes) * len(args.prompts) * per_axis
    done = []
    start = last = time.perf_counter()

    def progress(r) -> None:
        nonlocal last
        done.append(r)
        now = time.perf_counter()
        if now - last > 30 and len(done) < total:
            last = now
            eta = (now - start) / len(done) * (total - len(done))
            logger.info(
                "%d/%d runs done, ETA %s", len(done), total, datetime.timedelta(seconds=int(eta))
            )
        if args.verbose:
            logger.info(
                "%s %s %s axis %d %+.1f, %d prompt(s): DSC %.3f (%.2f s)",
                r.case.volume,
                r.method,
                r.prompt,
                r.case.axis,
                r.case.offset,
                r.case.n_prompts,
                r.dsc,
                r.seconds,
            )

    prop, _ = engine_configs(args)
    results = evaluate(
        vols,
        config=prop,
        model=args.model,
        device=args.device,
        axes=args.axes,
        prompts=args.prompts,
        baseline=not args.no_baseline,
        on_result=progress,
        prompts_per_object=counts,
    )
    report = summarise(results)
    print(report)  # noqa: T201 - the benchmark's output is the report
    for kind in args.prompts:
        q = quality_report([r for r in results if r.prompt == kind])
        if q:
            print(  # noqa: T201 - part of the report
                f"quality ({kind}, n={int(q['n'])}): Spearman(score, DSC) {q['spearman']:.3f}; "
                f"lowest-scored 10% catch {q['caught']:.0%} of {int(q['failures'])} failures "
                f"(DSC < 0.7); flagged slices hold {q['error_share']:.0%} of wrong voxels on "
                f"{q['slice_fraction']:.0%} of the object's slices"
            )
    _print_refused(results)
    if args.csv:
        _write_csv(args.csv, results)
    return 0


def _print_refused(results) -> None:
    """How many PropSAM runs were refused or failed (scored as empty), per prompt kind and count,
    e.g. several prompts that do not overlap in projection."""
    from collections import Counter

    refused = Counter((r.prompt, r.case.n_prompts) for r in results if r.error)
    for (kind, n), k in sorted(refused.items()):
        runs = sum(1 for r in results if r.method == "propsam" and r.prompt == kind
                   and r.case.n_prompts == n)  # fmt: skip
        reasons = Counter(
            r.error.split(",")[0] for r in results
            if r.error and r.prompt == kind and r.case.n_prompts == n
        )  # fmt: skip
        print(  # noqa: T201 - part of the report
            f"refused or failed ({kind}, {n} prompt(s)): {k} of {runs} runs, scored as empty; "
            + "; ".join(f"{c}x {why}" for why, c in reasons.most_common(2))
        )


_CSV_COLUMNS = (
    "volume family label axis offset slice anisotropic method prompt dsc nsd hd95 seconds "
    "slices score flagged_error_share flagged_slice_fraction n_prompts prompt_slices error"
).split()


def _write_csv(path: str, results) -> None:
    """Every result of ``propsam bench`` as one CSV row."""
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(_CSV_COLUMNS)
        for r in results:
            c = r.case
            w.writerow(
                [c.volume, c.family, c.label, c.axis, c.offset, c.slice_index, c.anisotropic,
                 r.method, r.prompt, f"{r.dsc:.4f}", f"{r.nsd:.4f}", f"{r.hd95:.3f}",
                 f"{r.seconds:.3f}", r.slices, f"{r.score:.4f}", f"{r.flagged_error_share:.4f}",
                 f"{r.flagged_slice_fraction:.4f}", c.n_prompts,
                 ";".join(str(i) for i in c.prompt_slices or (c.slice_index,)), r.error]
            )  # fmt: skip


def cmd_models(args: argparse.Namespace) -> int:
    from ..registry import list_models

    for m in list_models():
        state = "installed" if m.available else "missing"
        print(f"{m.name:10s} {state:9s} {m.description}")  # noqa: T201 - CLI output
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the ``propsam`` parser."""
    p = sub.add_parser("bench", help="held-out accuracy vs the random-walker baseline")
    p.add_argument("--per-family", type=int, default=2, help="volumes per synthetic family")
    p.add_argument("--families", nargs="*", default=None)
    p.add_argument("--axes", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--prompts", nargs="+", default=["mask", "box"], choices=("mask", "box"))
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument(
        "--prompts-per-object",
        type=int,
        nargs="+",
        default=[1],
        metavar="N",
        help="compare prompt counts, e.g. 1 2 3: each object is prompted on its largest "
        "cross-section plus N-1 slices spread over its extent (evaluation.spread_slices), one "
        "run per N; default 1 = one prompt at each of the usual offsets",
    )
    p.add_argument("--csv", default=None, help="also write every result to this CSV")
    add_engine_options(p, spacing=False)  # the held-out volumes carry their own spacing
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("models", help="list bundled models")
    p.set_defaults(func=cmd_models)
