"""The `mfrec` command line: train, serve, recommend, similar, evaluate, tune and demo."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from mfrec.server.recommender import Limits

FORMATS = ("ml-100k", "ml-csv", "ml-dat", "csv")
ALGORITHMS = ("als-explicit", "bpmf", "als-implicit")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="ratings file")
    parser.add_argument("--format", required=True, choices=FORMATS, help="file format")
    parser.add_argument("--sep", help="separator for --format csv (default ',')")
    parser.add_argument("--user-col", help="user id column for --format csv (default user_id)")
    parser.add_argument("--item-col", help="item id column for --format csv (default item_id)")
    parser.add_argument("--rating-col", help="rating column for --format csv (default rating)")
    parser.add_argument("--timestamp-col", help="optional timestamp column for --format csv")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="als-explicit")
    parser.add_argument("--factors", type=int, default=0, help="embedding size (0: default)")
    parser.add_argument("--iterations", type=int, default=0, help="sweeps (0: default)")
    parser.add_argument("--regularization", type=float, default=0.0, help="L2 (0: default)")
    parser.add_argument("--alpha", type=float, default=0.0, help="implicit confidence weight")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0: default 42)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mfrec", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model and save it as a new version")
    _add_data_options(train)
    train.add_argument("--model-dir", required=True, type=Path)
    train.add_argument("--keep-versions", type=int, default=3)
    _add_model_options(train)
    train.add_argument("--validation-fraction", type=float, default=None,
                       help="rows held out for validation metrics (default 0.1; 0 for none)")

    serve = commands.add_parser("serve", help="serve the newest model in --model-dir over gRPC")
    serve.add_argument("--model-dir", required=True, type=Path)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=50051)
    serve.add_argument("--data-dir", type=Path, default=None,
                       help="the only folder Train's dataset_path may read from")
    serve.add_argument("--max-k", type=int, default=1000)
    serve.add_argument("--keep-versions", type=int, default=3)
    serve.add_argument("--max-batch", type=int, default=1000)
    serve.add_argument("--max-id-bytes", type=int, default=256)
    serve.add_argument("--max-exclude", type=int, default=10_000)
    serve.add_argument("--max-allowed", type=int, default=10_000)
    serve.add_argument("--max-inline-ratings", type=int, default=2_000_000)
    serve.add_argument("--max-message-mib", type=int, default=64)
    serve.add_argument("--threads", type=int, default=8, help="request threads per process")
    serve.add_argument("--grace-seconds", type=float, default=10.0)
    serve.add_argument("--rating-range", default=None, metavar="MIN,MAX",
                       help="reject training values outside this range")

    rec = commands.add_parser("recommend", help="ask a running server for recommendations")
    rec.add_argument("--target", default="127.0.0.1:50051")
    rec.add_argument("--user", required=True)
    rec.add_argument("-k", type=int, default=10)
    rec.add_argument("--exclude", action="append", default=[], metavar="ITEM")
    rec.add_argument("--recent", action="append", default=[], metavar="ITEM",
                     help="an item the user just interacted with (fold-in); repeatable")
    rec.add_argument("--allowed", action="append", default=[], metavar="ITEM")
    rec.add_argument("--include-seen", action="store_true")

    sim = commands.add_parser("similar", help="ask a running server for similar items")
    sim.add_argument("--target", default="127.0.0.1:50051")
    sim.add_argument("--item", required=True)
    sim.add_argument("-k", type=int, default=10)
    sim.add_argument("--exclude", action="append", default=[], metavar="ITEM")

    demo = commands.add_parser("demo", help="train on MovieLens 100K, serve, and recommend")
    demo.add_argument("--work-dir", type=Path, default=None, help="default: a temporary folder")
    return parser


def _training_config(args: argparse.Namespace) -> object:
    from mfrec.training.config import TrainingConfig

    return TrainingConfig(
        algorithm=args.algorithm,
        factors=args.factors,
        iterations=args.iterations,
        regularization=args.regularization,
        seed=args.seed,
        validation_fraction=getattr(args, "validation_fraction", None),
        alpha=args.alpha,
    )


def _csv_options(args: argparse.Namespace) -> dict[str, str]:
    names = {
        "separator": args.sep,
        "user_column": args.user_col,
        "item_column": args.item_col,
        "rating_column": args.rating_col,
        "timestamp_column": args.timestamp_col,
    }
    return {key: value for key, value in names.items() if value}


def run_train(args: argparse.Namespace) -> int:
    from mfrec.server.store import ModelStore
    from mfrec.training.loaders import load_ratings
    from mfrec.training.pipeline import Progress, train_and_save

    config = _training_config(args).resolved()  # type: ignore[attr-defined]
    frame = load_ratings(args.data, args.format, **_csv_options(args))
    print(f"loaded {len(frame):,} ratings from {args.data}")

    def progress(update: Progress) -> None:
        report = update.report
        if report is None:
            return
        held = "" if report.validation_rmse is None else f"  validation RMSE {report.validation_rmse:.4f}"
        print(f"  iteration {update.iteration}/{update.total_iterations}  "
              f"train RMSE {report.train_rmse:.4f}{held}  {report.seconds:.2f} s", flush=True)

    summary = train_and_save(frame, config, args.model_dir, progress)
    ModelStore(args.model_dir, args.keep_versions).prune()
    print(f"saved model {summary.model_version} to {summary.path}")
    print(f"  {summary.user_count:,} users, {summary.item_count:,} items, "
          f"{summary.rating_count:,} ratings, {summary.train_seconds:.2f} s")
    for name, value in sorted(summary.metrics.items()):
        print(f"  validation {name}: {value:.4f}")
    return 0


def _rating_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise SystemExit("--rating-range must be MIN,MAX, for example 1,5") from None
    if not low <= high:
        raise SystemExit("--rating-range: MIN must not exceed MAX")
    return low, high


def run_serve(args: argparse.Namespace) -> int:
    from mfrec.server.app import MiB, ServerConfig, serve

    limits = Limits(
        max_k=args.max_k,
        max_id_bytes=args.max_id_bytes,
        max_exclude=args.max_exclude,
        max_allowed=args.max_allowed,
        max_batch=args.max_batch,
    )
    config = ServerConfig(
        model_dir=args.model_dir,
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        keep_versions=args.keep_versions,
        limits=limits,
        threads=args.threads,
        grace_seconds=args.grace_seconds,
        max_message_bytes=args.max_message_mib * MiB,
        max_inline_ratings=args.max_inline_ratings,
        rating_range=_rating_range(args.rating_range),
    )
    return serve(config)


def _print_items(items: Sequence[object], header: str) -> None:
    print(header)
    print(f"  {'rank':>4}  {'item':<24} {'score':>8}")
    for rank, item in enumerate(items, start=1):
        print(f"  {rank:>4}  {item.item_id:<24} {item.score:>8.4f}")  # type: ignore[attr-defined]


def run_recommend(args: argparse.Namespace) -> int:
    from mfrec.client import RecommenderClient

    with RecommenderClient(args.target) as client:
        answer = client.recommend(args.user, k=args.k, exclude=args.exclude,
                                  include_seen=args.include_seen, recent=args.recent,
                                  allowed=args.allowed)
    _print_items(answer.items, f"user {args.user}: {answer.source.value} "
                               f"(model {answer.model_version})")
    if answer.ignored_item_ids:
        print(f"  ignored unknown items: {', '.join(answer.ignored_item_ids)}")
    return 0


def run_similar(args: argparse.Namespace) -> int:
    from mfrec.client import RecommenderClient

    with RecommenderClient(args.target) as client:
        answer = client.similar_items(args.item, k=args.k, exclude=args.exclude)
    _print_items(answer.items, f"items similar to {args.item} (model {answer.model_version})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handlers = {
        "train": run_train,
        "serve": run_serve,
        "recommend": run_recommend,
        "similar": run_similar,
        "demo": _run_demo,
    }
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a clear one-line error for operators, no traceback
        if args.verbose:
            raise
        print(f"mfrec {args.command}: {error}", file=sys.stderr)
        return 1


def _run_demo(args: argparse.Namespace) -> int:
    from mfrec.server.demo import run_demo

    return run_demo(args.work_dir)


if __name__ == "__main__":
    raise SystemExit(main())
