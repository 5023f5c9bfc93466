"""Subcommands export | evaluate | predict | bench-infer | serve | promote | rollback.

They are part of the ``trainer`` command line: examples/pyproject.toml registers this module
under trainer's entry point group (trainer/cli.py: ``EXTENSION_GROUP``), and trainer/cli.py
calls ``add_commands(subparsers)`` and ``dispatch(args)``; its ``classify`` maps the
exceptions to exit codes (2 bad input, 4 refused bundle, 1 failed). trainer never imports
this package. ``python -m preflight_examples.serving.cli`` runs them on their own. Heavy
imports (torch, uvicorn) happen inside each command, so `trainer rollback` starts fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from preflight.durable import BadInputError

EXIT_OK = 0
EXIT_FAILED = 1
BENCH_OUT_DEFAULT = "reports/bench-infer.json"


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None
    if not sizes or not all(1 <= s <= 4096 for s in sizes) or len(sizes) > 32:
        raise argparse.ArgumentTypeError("batch sizes must be 1 to 32 integers in [1, 4096]")
    return sizes


def _metric_names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _add_export(sub: Any) -> None:
    from preflight_examples.serving.export import EVAL_SAMPLES_DEFAULT

    p = sub.add_parser("export", help="export a finished run as a verified model bundle")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--bundle", required=True, metavar="DIR", help="bundle directory to create")
    p.add_argument(
        "--data",
        help="dataset giving input shape and class names (default: the dataset RUN was trained on)",
    )
    p.add_argument(
        "--eval-samples",
        type=int,
        default=EVAL_SAMPLES_DEFAULT,
        help=f"samples of --data scored into bundle.json's metrics (0: none; default "
        f"{EVAL_SAMPLES_DEFAULT})",
    )
    p.add_argument("--no-onnx", action="store_true", help="skip model.onnx")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at DIR")


def _add_evaluate(sub: Any) -> None:
    from preflight_examples.serving.evaluate import (
        EVAL_BATCH_DEFAULT,
        GATE_METRICS_DEFAULT,
        MARGIN_DEFAULT,
    )

    p = sub.add_parser("evaluate", help="accuracy, MCC, per-class metrics; regression gate")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--data", required=True, metavar="DATASET", help="labelled dataset")
    p.add_argument(
        "--baseline",
        metavar="OLD_BUNDLE",
        help="fail (exit 1) when BUNDLE is worse than OLD_BUNDLE by more than --margin",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=MARGIN_DEFAULT,
        help=f"allowed absolute drop per gated metric (default {MARGIN_DEFAULT})",
    )
    p.add_argument(
        "--gate-metrics",
        type=_metric_names,
        default=GATE_METRICS_DEFAULT,
        help="comma-separated: accuracy, mcc, macro_f1 (default accuracy,mcc)",
    )
    p.add_argument("--limit", type=int, help="score only the first N samples")
    p.add_argument("--batch-size", type=int, default=EVAL_BATCH_DEFAULT)
    p.add_argument("--out", metavar="FILE", help="also write the report here (atomically)")


def _add_predict(sub: Any) -> None:
    p = sub.add_parser("predict", help="batch inference to JSON or CSV")
    p.add_argument("bundle", metavar="BUNDLE")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", metavar="DATASET", help="predict every sample of a dataset")
    source.add_argument(
        "--input",
        metavar="FILE",
        help=".npy uint8 [N,T,C,H,W] or JSON in the /predict request format",
    )
    p.add_argument("--format", choices=("json", "csv"), default="json")
    p.add_argument("--out", metavar="FILE", help="output file (default: stdout)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, help="--data: only the first N samples")
    p.add_argument("--engine", choices=("torchscript", "onnx"), default="torchscript")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")


def _add_bench(sub: Any) -> None:
    p = sub.add_parser("bench-infer", help="p50/p95/p99 latency and throughput per batch size")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--batch-sizes", type=_batch_sizes, default=(1, 8, 32))
    p.add_argument("--iterations", type=int, default=200, help="timed calls per batch size")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--budget-s", type=float, default=30.0, help="time bound per batch size")
    p.add_argument("--engine", choices=("torchscript", "onnx"), default="torchscript")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", default=BENCH_OUT_DEFAULT, metavar="FILE")


def _add_serve(sub: Any) -> None:
    from preflight_examples.serving.deploy import POLL_S_DEFAULT
    from preflight_examples.serving.request import (
        BODY_BYTES_MAX,
        SERVE_QUEUE_MAX_DEFAULT,
        SERVE_WORKERS_DEFAULT,
        VIDEOS_PER_REQUEST_MAX,
    )

    p = sub.add_parser("serve", help="HTTP JSON predictions (/predict, /healthz, /metrics)")
    p.add_argument(
        "source",
        metavar="BUNDLE_OR_DEPLOY_DIR",
        help="a bundle, or a deploy dir whose 'current' is followed (hot swap)",
    )
    p.add_argument("--port", type=int, default=8000, help="0: any free port (printed)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--engine", choices=("torchscript", "onnx"), default="torchscript")
    p.add_argument("--threads", type=int, default=1, help="torch threads per inference")
    p.add_argument("--workers", type=int, default=SERVE_WORKERS_DEFAULT, help="inference threads")
    p.add_argument(
        "--queue-max",
        type=int,
        default=SERVE_QUEUE_MAX_DEFAULT,
        help="requests in flight before 503",
    )
    p.add_argument("--body-bytes-max", type=int, default=BODY_BYTES_MAX)
    p.add_argument(
        "--batch-max", type=int, default=VIDEOS_PER_REQUEST_MAX, help="videos per request"
    )
    p.add_argument(
        "--poll-s",
        type=float,
        default=POLL_S_DEFAULT,
        help="how often a deploy dir's 'current' is checked",
    )


def add_commands(subparsers: Any) -> None:
    """Add this module's subcommands to trainer's argparse subparsers."""
    _add_export(subparsers)
    _add_evaluate(subparsers)
    _add_predict(subparsers)
    _add_bench(subparsers)
    _add_serve(subparsers)
    p = subparsers.add_parser("promote", help="make BUNDLE the one DEPLOY_DIR serves")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--to", required=True, metavar="DEPLOY_DIR", dest="deploy_dir")
    p = subparsers.add_parser("rollback", help="return DEPLOY_DIR to the previous bundle")
    p.add_argument("deploy_dir", metavar="DEPLOY_DIR")


def _emit(value: Any) -> None:
    print(json.dumps(value), flush=True)


def _warn(message: str) -> None:
    print(f"trainer: {message}", file=sys.stderr, flush=True)


def _set_threads(threads: int) -> None:
    import torch

    if not 1 <= threads <= 256:
        raise BadInputError(f"--threads: must be in [1, 256], got {threads}")
    torch.set_num_threads(threads)


def _positive(value: int, option: str, limit: int = 1 << 20) -> None:
    if not 1 <= value <= limit:
        raise BadInputError(f"{option}: must be in [1, {limit}], got {value}")


def cmd_export(args: argparse.Namespace) -> int:
    from preflight_examples.serving.export import export

    ref = export(
        args.run_dir,
        args.bundle,
        data=args.data,
        eval_samples=args.eval_samples,
        force=args.force,
        with_onnx=not args.no_onnx,
    )
    raw = ref.info.raw
    _emit(
        {
            "event": "exported",
            "bundle": str(ref.root),
            "id": ref.info.id,
            "files": [e.path for e in ref.committed.files],
            "parity": raw["parity"],
            "accuracy": (raw.get("metrics") or {}).get("accuracy"),
        }
    )
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from preflight.durable import atomic_write
    from preflight_examples.serving.evaluate import failure_message, run_evaluate

    report = run_evaluate(
        args.bundle,
        args.data,
        baseline_dir=args.baseline,
        margin=args.margin,
        gated=args.gate_metrics,
        limit=args.limit,
        batch_size=args.batch_size,
    )
    if args.out:
        atomic_write(args.out, report)
    _emit(report)
    verdict = report.get("gate")
    if verdict is not None and not verdict["passed"]:
        _warn(f"evaluate: {failure_message(verdict)}")
        return EXIT_FAILED
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from preflight_examples.serving import infer
    from preflight_examples.serving.bundle import load_bundle

    _positive(args.batch_size, "--batch-size", 4096)
    if args.limit is not None:
        _positive(args.limit, "--limit", 1 << 40)
    _set_threads(args.threads)
    predictor = infer.Predictor(load_bundle(args.bundle), args.engine)
    if args.data is not None:
        from preflight_examples.serving.evaluate import check_fits
        from preflight_examples.trainer.data import open_dataset

        dataset = open_dataset(args.data)
        check_fits(predictor.bundle.info, dataset, "--data")
        batches = infer.dataset_batches(dataset, args.limit, args.batch_size)
    else:
        videos = infer.read_input_file(Path(args.input), predictor.bundle.info.input_shape)
        batches = infer.array_batches(videos, args.batch_size)
    rows = infer.predict_rows(predictor, batches)
    infer.write_output(infer.render(rows, predictor, args.format), args.out)
    return EXIT_OK


def cmd_bench_infer(args: argparse.Namespace) -> int:
    from pathlib import Path

    from preflight.durable import atomic_write
    from preflight_examples.serving import bench, infer
    from preflight_examples.serving.bundle import load_bundle

    _positive(args.iterations, "--iterations", 1_000_000)
    if not 0 <= args.warmup <= 10_000:
        raise BadInputError(f"--warmup: must be in [0, 10000], got {args.warmup}")
    if not 0 < args.budget_s <= 3600:
        raise BadInputError(f"--budget-s: must be in (0, 3600], got {args.budget_s}")
    _set_threads(args.threads)
    predictor = infer.Predictor(load_bundle(args.bundle), args.engine)
    plan = bench.BenchPlan(args.batch_sizes, args.iterations, args.warmup, args.budget_s)
    results = bench.bench_infer(predictor, plan)
    report = bench.bench_report(predictor, plan, results, args.threads)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, report)
    for row in results:
        _emit(row)
    _warn(
        f"bench-infer: wrote {args.out}; single-sample p99 "
        f"{report['target']['measured']} ms (target {report['target']['target']})"
    )
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from preflight_examples.serving import serve, server

    _positive(args.workers, "--workers", 64)
    _positive(args.queue_max, "--queue-max", 100_000)
    _positive(args.body_bytes_max, "--body-bytes-max", 1 << 30)
    _positive(args.batch_max, "--batch-max", 4096)
    if not 0 <= args.port <= 65535:
        raise BadInputError(f"--port: must be in [0, 65535], got {args.port}")
    if not 0.01 <= args.poll_s <= 60:
        raise BadInputError(f"--poll-s: must be in [0.01, 60], got {args.poll_s}")
    _set_threads(args.threads)
    state = serve.initial_state(
        args.source,
        args.engine,
        body_bytes_max=args.body_bytes_max,
        batch_max=args.batch_max,
        queue_max=args.queue_max,
        workers=args.workers,
    )
    server.serve_forever(state, args.host, args.port, args.poll_s, _emit)
    return EXIT_OK


def cmd_promote(args: argparse.Namespace) -> int:
    from preflight_examples.serving.deploy import promote

    _emit(promote(args.bundle, args.deploy_dir))
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    from preflight_examples.serving.deploy import rollback

    _emit(rollback(args.deploy_dir))
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "export": cmd_export,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "bench-infer": cmd_bench_infer,
    "serve": cmd_serve,
    "promote": cmd_promote,
    "rollback": cmd_rollback,
}


def dispatch(args: argparse.Namespace) -> int | None:
    """Run ``args.command`` when it is one of ours; None otherwise (trainer's own command)."""
    command = COMMANDS.get(getattr(args, "command", None) or "")
    return None if command is None else command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainer", description=__doc__.splitlines()[0])
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry with trainer's exit-code mapping."""
    from preflight_examples.trainer.cli import classify

    args = build_parser().parse_args(argv)
    try:
        code = dispatch(args)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message and an exit code
        code, expected = classify(exc)
        if not expected:
            import traceback

            traceback.print_exc()
        _warn(str(exc))
        return code
    assert code is not None
    return code


if __name__ == "__main__":
    sys.exit(main())
