"""``memhp study STUDY.toml``: capacity studies on the model (memhp.study).

    memhp study STUDY.toml [--runs N] [--workers N] [--scheduler tcp://HOST:PORT] [-o DIR]

Each run boots the study's machine, hot-adds its DIMMs, onlines them per the
cell's policy, runs the workload for some simulated time and removes the devices
with ``memhp remove``'s algorithm.  Writes DIR/results.json (deterministic by
seed), DIR/timings.json, DIR/summary.md, DIR/results.csv and a PNG plot.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

PROG = "memhp study"


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return n


def _scheduler(text: str) -> str:
    if text.startswith("inproc://"):  # a scheduler in this process (tests)
        return text
    if not text.startswith(("tcp://", "tls://")) or text.count(":") < 2:
        raise argparse.ArgumentTypeError(f"expected tcp://HOST:PORT, got '{text}'")
    return text


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2, got '{text}'") from None
    if any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"expected non-negative seeds, got '{text}'")
    return seeds


def _repeat(text: str) -> int:
    from memhp.bench.scenario import MAX_REPEAT

    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_REPEAT:
        raise argparse.ArgumentTypeError(
            f"expected a number of real runs 1..{MAX_REPEAT}, got '{text}'"
        )
    return n


def _export(args: argparse.Namespace, study: Any) -> int:
    """--export-scenarios DIR: the chosen runs as bench scenarios (memhp.study.export)."""
    from memhp.study.export import export_scenarios
    from memhp.study.spec import StudyError

    try:
        done = export_scenarios(
            study, args.study, args.export_scenarios, args.cell, args.seeds, args.repeat
        )
    except StudyError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PROG}: {args.export_scenarios}: {e.strerror}", file=sys.stderr)
        return 1
    for x in done:
        verdict = " ".join("removed" if ok else "refused" for ok in x.removed)
        print(f"{x.path}: cell {x.cell}, seed {x.seed}: model {verdict}")
    return 0


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import os

    from memhp.study.spec import StudyError, load_study

    try:
        study = load_study(args.study)
    except StudyError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    if args.runs is not None:
        study = dataclasses.replace(study, runs=args.runs)
    if args.export_scenarios is not None:
        return _export(args, study)
    out = args.output or os.path.join("study-results", study.name)
    if os.path.exists(out) and not os.path.isdir(out):
        print(f"{PROG}: {out}: not a directory", file=sys.stderr)
        return 1
    from memhp.study.engine import run_study
    from memhp.study.report import write_outputs

    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        end = "\n" if done == total or not tty else ""
        if tty or done == total or done % max(1, total // 10) == 0:
            sys.stderr.write(f"\r{PROG}: {done}/{total} runs{end}")
            sys.stderr.flush()

    try:
        outcome = run_study(study, args.workers, args.scheduler, progress)
    except StudyError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a Dask scheduler that does not answer
        print(f"{PROG}: {args.scheduler}: {e}", file=sys.stderr)
        return 1
    try:
        paths = write_outputs(out, study, outcome.runs, outcome.timings)
    except OSError as e:
        print(f"{PROG}: {out}: {e.strerror}", file=sys.stderr)
        return 1
    with open(paths[2]) as f:
        sys.stdout.write(f.read())
    print(f"{PROG}: wrote {', '.join(os.path.basename(p) for p in paths)} in {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "study",
        help="capacity study: how much hot-added memory comes out, how often, how fast",
        description="Run a study (a grid of online policies, kernel parameters and workloads "
        "times seeds) on the simulated kernel: each run hot-adds the study's DIMMs, onlines "
        "them, runs the workload for some simulated time and removes them with memhp "
        "remove's algorithm. Writes results.json (identical for the same seeds), "
        "timings.json, summary.md, results.csv and a PNG plot into the output directory.",
    )
    p.add_argument("study", metavar="STUDY.toml", help="the study file (see studies/)")
    p.add_argument(
        "--runs", type=_positive, metavar="N", help="seeds per cell (default: the file's)"
    )
    p.add_argument(
        "--workers", type=_positive, metavar="N", help="local worker processes (default: all cores)"
    )
    p.add_argument(
        "--scheduler",
        type=_scheduler,
        metavar="tcp://HOST:PORT",
        help="run on this Dask scheduler instead of local processes",
    )
    p.add_argument(
        "-o", "--output", metavar="DIR", help="output directory (default: study-results/NAME)"
    )
    p.add_argument(
        "--export-scenarios",
        metavar="DIR",
        help="instead of running, write a bench scenario per cell and seed into DIR: the "
        "same lifecycle on Linux in QEMU (memhp bench diff), the model's verdict as expect_rc",
    )
    p.add_argument(
        "--cell",
        action="append",
        default=[],
        metavar="ID",
        help="with --export-scenarios: a cell (its id or index; repeatable; default: all)",
    )
    p.add_argument(
        "--seeds",
        type=_seeds,
        default=[],
        metavar="S,S,...",
        help="with --export-scenarios: the seeds (default: the study's runs)",
    )
    p.add_argument(
        "--repeat",
        type=_repeat,
        default=1,
        metavar="N",
        help="with --export-scenarios: a probabilistic cell: repeat = N real runs compared "
        "as a set of outcomes with the model over N run-time allocation seeds",
    )
    p.set_defaults(func=run)
