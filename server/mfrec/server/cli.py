"""The `mfrec` command line: train, serve, recommend, similar, evaluate, tune and demo."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfrec.server.recommender import Limits

if TYPE_CHECKING:
    import pandas as pd

    from mfrec.training.config import TrainingConfig

# Each worker holds its own gRPC stack and threads: more than a few per core only thrashes.
MAX_WORKERS = max(4, 4 * (os.cpu_count() or 1))
FORMATS = ("ml-100k", "ml-csv", "ml-dat", "csv")
ALGORITHMS = ("als-explicit", "bpmf", "als-implicit")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="ratings file")
    parser.add_argument("--format", required=True, choices=FORMATS, help="file format")
    parser.add_argument(
        "--sep", help="separator for --format csv (default ','; \\t or a tab for tabs)"
    )
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
    train.add_argument(
        "--model-dir",
        required=True,
        type=Path,
        help="folder of model versions; the new one is saved here",
    )
    train.add_argument(
        "--max-id-bytes",
        type=int,
        default=256,
        help="longest id accepted, in UTF-8 bytes: keep it equal to serve's",
    )
    train.add_argument(
        "--keep-versions",
        type=int,
        default=3,
        help="newest loadable versions kept after saving (default 3)",
    )
    _add_model_options(train)
    train.add_argument(
        "--index",
        choices=("exact", "hnsw"),
        default="exact",
        help="item index served for known users: exact search (default) or an approximate "
        "HNSW graph built now and saved with the version (needs the ann extra, faiss-cpu)",
    )
    train.add_argument(
        "--validation-fraction",
        type=float,
        default=None,
        help="rows held out for validation metrics (default 0.1; 0 for none)",
    )

    serve = commands.add_parser("serve", help="serve the newest model in --model-dir over gRPC")
    serve.add_argument(
        "--model-dir",
        required=True,
        type=Path,
        help="folder of model versions; the newest valid one is served",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument(
        "--port",
        type=int,
        default=50051,
        help="port to listen on (default 50051; 0 picks a free one)",
    )
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the only folder Train's dataset_path may read from",
    )
    serve.add_argument(
        "--max-k",
        type=int,
        default=1000,
        help="largest k a request may ask for (default %(default)s)",
    )
    serve.add_argument(
        "--keep-versions",
        type=int,
        default=3,
        help="newest loadable versions kept after each Train (default 3)",
    )
    serve.add_argument(
        "--max-batch",
        type=int,
        default=1000,
        help="most sub-requests in one RecommendBatch (default %(default)s)",
    )
    serve.add_argument(
        "--max-id-bytes",
        type=int,
        default=256,
        help="longest user or item id, in UTF-8 bytes (default %(default)s)",
    )
    serve.add_argument(
        "--max-exclude",
        type=int,
        default=10_000,
        help="most exclude_item_ids in one request (default %(default)s)",
    )
    serve.add_argument(
        "--max-allowed",
        type=int,
        default=10_000,
        help="most allowed_item_ids in one request (default %(default)s)",
    )
    serve.add_argument(
        "--max-recent",
        type=int,
        default=10_000,
        help="most recent_item_ids in one request (default %(default)s)",
    )
    serve.add_argument(
        "--max-inline-ratings",
        type=int,
        default=2_000_000,
        help="most ratings sent inline in one Train (default %(default)s)",
    )
    serve.add_argument(
        "--max-message-mib",
        type=int,
        default=64,
        help="largest request or response in MiB (default %(default)s); gRPC "
        "itself answers a larger one RESOURCE_EXHAUSTED",
    )
    serve.add_argument("--threads", type=int, default=8, help="request threads per process")
    serve.add_argument(
        "--max-concurrent-rpcs",
        type=int,
        default=0,
        help="calls in progress at once before new ones are refused "
        "RESOURCE_EXHAUSTED (default 0: 4 x --threads)",
    )
    serve.add_argument(
        "--tokens-file",
        type=Path,
        default=None,
        help="require bearer tokens: one role:token per line, role admin or read",
    )
    serve.add_argument("--tls-cert", type=Path, default=None, help="PEM server certificate")
    serve.add_argument("--tls-key", type=Path, default=None, help="PEM key of --tls-cert")
    serve.add_argument(
        "--tls-client-ca",
        type=Path,
        default=None,
        help="PEM CA of client certificates: requires mutual TLS",
    )
    serve.add_argument(
        "--insecure-listen-any",
        action="store_true",
        help="allow a non-loopback --host without --tokens-file",
    )
    serve.add_argument(
        "--grace-seconds",
        type=float,
        default=10.0,
        help="how long SIGTERM waits for calls in flight (default 10)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port (default 1: this process)",
    )
    serve.add_argument(
        "--rating-range",
        default=None,
        metavar="MIN,MAX",
        help="reject training values outside this range",
    )

    rec = commands.add_parser("recommend", help="ask a running server for recommendations")
    rec.add_argument(
        "--target",
        default="127.0.0.1:50051",
        help="host:port of the server (default 127.0.0.1:50051)",
    )
    who = rec.add_mutually_exclusive_group(required=True)
    who.add_argument("--user")
    who.add_argument(
        "--users-file",
        type=Path,
        help="one user id per line; writes CSV (user_id,rank,item_id,score,source)",
    )
    rec.add_argument(
        "--batch-size",
        type=int,
        default=1000,
        help="users per RecommendBatch call with --users-file (default 1000; must not exceed "
        "the server's --max-batch)",
    )
    rec.add_argument("-k", type=int, default=10)
    rec.add_argument("--exclude", action="append", default=[], metavar="ITEM")
    rec.add_argument(
        "--recent",
        action="append",
        default=[],
        metavar="ITEM",
        help="an item the user just interacted with (fold-in); repeatable",
    )
    rec.add_argument("--allowed", action="append", default=[], metavar="ITEM")
    rec.add_argument("--include-seen", action="store_true")

    sim = commands.add_parser("similar", help="ask a running server for similar items")
    sim.add_argument(
        "--target",
        default="127.0.0.1:50051",
        help="host:port of the server (default 127.0.0.1:50051)",
    )
    sim.add_argument("--item", required=True)
    sim.add_argument("-k", type=int, default=10)
    sim.add_argument("--exclude", action="append", default=[], metavar="ITEM")

    evaluate = commands.add_parser(
        "evaluate", help="score a model on the fixed offline protocols (README: Evaluation)"
    )
    _add_data_options(evaluate)
    evaluate.add_argument("--protocol", choices=("rating", "ranking"), default="rating")
    _add_model_options(evaluate)
    evaluate.add_argument(
        "--popularity",
        choices=("damped-mean", "count", "mean-then-count"),
        default=None,
        help="also score this popularity ranking (ranking only)",
    )
    evaluate.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object on a single line instead of a table",
    )

    tune = commands.add_parser("tune", help="search hyper-parameters on a validation split")
    _add_data_options(tune)
    tune.add_argument("--protocol", choices=("rating", "ranking"), default="rating")
    tune.add_argument("--algorithm", choices=ALGORITHMS, default="als-explicit")
    tune.add_argument("--trials", type=int, default=12)
    tune.add_argument("--seed", type=int, default=42)

    demo = commands.add_parser("demo", help="train on MovieLens 100K, serve, and recommend")
    demo.add_argument("--work-dir", type=Path, default=None, help="default: a temporary folder")
    return parser


def _training_config(args: argparse.Namespace) -> TrainingConfig:
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


def _csv_options(args: argparse.Namespace) -> dict[str, Any]:
    # A literal backslash-t, as typed in most shells, means a tab.
    separator = "\t" if args.sep == "\\t" else args.sep
    names = {
        "separator": separator,
        "user_column": args.user_col,
        "item_column": args.item_col,
        "rating_column": args.rating_col,
        "timestamp_column": args.timestamp_col,
    }
    return {key: value for key, value in names.items() if value}


def run_train(args: argparse.Namespace) -> int:
    from mfrec.server.store import ModelStore
    from mfrec.server.trainer import check_id_lengths
    from mfrec.training.loaders import load_ratings
    from mfrec.training.pipeline import Progress, train_and_save

    config = _training_config(args).resolved()
    if args.index == "hnsw":
        from mfrec.training.ann import faiss_available

        if not faiss_available():
            raise SystemExit("--index hnsw needs faiss-cpu: pip install 'mfrec[ann]'")
    frame = load_ratings(args.data, args.format, **_csv_options(args))
    print(f"loaded {len(frame):,} ratings from {args.data}")
    # The same check as the Train RPC's: every trained id must be one a request can name.
    check_id_lengths(frame, args.max_id_bytes, str(args.data))

    def progress(update: Progress) -> None:
        report = update.report
        if report is None:
            return
        held = (
            ""
            if report.validation_rmse is None
            else f"  validation RMSE {report.validation_rmse:.4f}"
        )
        print(
            f"  iteration {update.iteration}/{update.total_iterations}  "
            f"train RMSE {report.train_rmse:.4f}{held}  {report.seconds:.2f} s",
            flush=True,
        )

    summary = train_and_save(frame, config, args.model_dir, progress, index=args.index)
    ModelStore(args.model_dir, args.keep_versions).prune()
    print(f"saved model {summary.model_version} to {summary.path}")
    print(
        f"  {summary.user_count:,} users, {summary.item_count:,} items, "
        f"{summary.rating_count:,} ratings, {summary.train_seconds:.2f} s"
    )
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


def _check_serve_flags(args: argparse.Namespace) -> None:
    """Refuses settings that cannot work, before anything starts."""
    problems = []
    if not 0 <= args.port <= 65535:
        problems.append("--port must be between 1 and 65535 (0 picks a free port)")
    for flag in ("max_k", "max_batch", "max_id_bytes", "threads", "keep_versions"):
        if getattr(args, flag) < 1:
            problems.append(f"--{flag.replace('_', '-')} must be at least 1")
    for flag in ("max_exclude", "max_allowed", "max_recent", "max_inline_ratings"):
        if getattr(args, flag) < 0:
            problems.append(f"--{flag.replace('_', '-')} must be at least 0")
    if args.max_message_mib < 1:
        problems.append("--max-message-mib must be at least 1")
    if not args.grace_seconds >= 0:
        problems.append("--grace-seconds must be at least 0")
    if args.model_dir.exists() and not args.model_dir.is_dir():
        problems.append(f"--model-dir {args.model_dir} is not a directory")
    if args.data_dir is not None and not args.data_dir.is_dir():
        problems.append(f"--data-dir {args.data_dir} is not an existing directory")
    if problems:
        raise SystemExit("mfrec serve: " + "; ".join(problems))


def run_serve(args: argparse.Namespace) -> int:
    from mfrec.server.app import MiB, ServerConfig, serve
    from mfrec.server.tls import tls_files

    _check_serve_flags(args)
    limits = Limits(
        max_k=args.max_k,
        max_id_bytes=args.max_id_bytes,
        max_exclude=args.max_exclude,
        max_allowed=args.max_allowed,
        max_recent=args.max_recent,
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
        max_concurrent_rpcs=args.max_concurrent_rpcs or None,
        tokens_file=args.tokens_file,
        tls=tls_files(args.tls_cert, args.tls_key, args.tls_client_ca),
        insecure_listen_any=args.insecure_listen_any,
    )
    if not 1 <= args.workers <= MAX_WORKERS:
        raise SystemExit(
            f"--workers must be between 1 and {MAX_WORKERS} (this machine has "
            f"{os.cpu_count() or 1} cores; one worker per core is usually best)"
        )
    if args.workers > 1:
        from mfrec.server.supervisor import run_supervisor

        return run_supervisor(config, args.workers)
    return serve(config)


def _print_items(items: Sequence[object], header: str) -> None:
    print(header)
    print(f"  {'rank':>4}  {'item':<24} {'score':>8}")
    for rank, item in enumerate(items, start=1):
        print(f"  {rank:>4}  {item.item_id:<24} {item.score:>8.4f}")  # type: ignore[attr-defined]


def run_recommend(args: argparse.Namespace) -> int:
    from mfrec.client import RecommenderClient

    if args.users_file is not None:
        return _recommend_file(args)
    with RecommenderClient(args.target) as client:
        answer = client.recommend(
            args.user,
            k=args.k,
            exclude=args.exclude,
            include_seen=args.include_seen,
            recent=args.recent,
            allowed=args.allowed,
        )
    _print_items(
        answer.items, f"user {args.user}: {answer.source.value} (model {answer.model_version})"
    )
    if answer.ignored_item_ids:
        print(f"  ignored unknown items: {', '.join(answer.ignored_item_ids)}")
    return 0


def _recommend_file(args: argparse.Namespace) -> int:
    """Answers every user of --users-file with RecommendBatch calls, as CSV on stdout."""
    import csv

    from mfrec.client import RecommenderClient, RecommenderError

    if args.batch_size < 1:
        raise SystemExit("--batch-size must be at least 1")
    numbered = _read_users(args.users_file)
    users = [user for _, user in numbered]
    options = {
        "k": args.k,
        "exclude": args.exclude,
        "include_seen": args.include_seen,
        "recent": args.recent,
        "allowed": args.allowed,
    }
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(("user_id", "rank", "item_id", "score", "source"))
    with RecommenderClient(args.target, timeout=60.0) as client:
        for start in range(0, len(users), args.batch_size):
            chunk = users[start : start + args.batch_size]
            try:
                answers = client.recommend_batch([{"user_id": u, **options} for u in chunk])
            except RecommenderError as error:
                raise _on_line(error, numbered, start, args.users_file) from None
            for user, answer in zip(chunk, answers, strict=True):
                for rank, item in enumerate(answer.items, start=1):
                    writer.writerow(
                        (user, rank, item.item_id, f"{item.score:.6g}", answer.source.value)
                    )
    return 0


def _read_users(path: Path) -> list[tuple[int, str]]:
    """Returns (line number, user id) for every non-blank line of a users file."""
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise SystemExit(f"--users-file {path} is a directory") from None
    except FileNotFoundError:
        raise SystemExit(f"--users-file {path} does not exist") from None
    except UnicodeDecodeError as error:
        raise SystemExit(f"--users-file {path} is not UTF-8 text ({error.reason})") from None
    lines = enumerate(text.splitlines(), start=1)
    return [(number, line.strip()) for number, line in lines if line.strip()]


def _on_line(
    error: Exception, numbered: list[tuple[int, str]], start: int, path: Path
) -> BaseException:
    """Names the file line of a batch's bad sub-request instead of its index in the batch."""
    found = re.search(r"requests\[(\d+)\]", str(error))
    if found is None:
        return error
    line = numbered[start + int(found.group(1))][0]
    return SystemExit(f"--users-file {path}, line {line}: {str(error)[found.end() + 2 :]}")


def run_similar(args: argparse.Namespace) -> int:
    from mfrec.client import RecommenderClient

    with RecommenderClient(args.target) as client:
        answer = client.similar_items(args.item, k=args.k, exclude=args.exclude)
    _print_items(answer.items, f"items similar to {args.item} (model {answer.model_version})")
    return 0


def _load_frame(args: argparse.Namespace) -> pd.DataFrame:
    from mfrec.training.loaders import load_ratings

    return load_ratings(args.data, args.format, **_csv_options(args))


def _json_ready(value: object) -> object:
    """Replaces NaN and infinities (not valid JSON) by null, recursively."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_evaluate(args: argparse.Namespace) -> int:
    from mfrec.training.evaluation import evaluate, format_table

    result = evaluate(
        _load_frame(args),
        args.protocol,
        _training_config(args),
        popularity_method=args.popularity,
    )
    if args.json:
        print(json.dumps(_json_ready(result), sort_keys=True, allow_nan=False))
    else:
        print(format_table(result))
        popularity = result.get("popularity")
        if popularity:
            print(
                format_table(
                    {
                        **popularity,
                        **{k: result[k] for k in ("protocol", "train_rows", "test_rows")},
                        "fit_seconds": 0.0,
                    }
                )
            )
    return 0


def run_tune(args: argparse.Namespace) -> int:
    from mfrec.training.tuning import Trial, format_trials, tune

    def progress(trial: Trial) -> None:
        c = trial.config
        print(
            f"  factors {c.factors} iterations {c.iterations} regularization "
            f"{c.regularization:g} alpha {c.alpha:g}: {trial.metric} {trial.value:.4f} "
            f"({trial.seconds:.1f} s)",
            flush=True,
        )

    result = tune(
        _load_frame(args),
        args.protocol,
        args.algorithm,
        trials=args.trials,
        seed=args.seed,
        progress=progress,
    )
    print(format_trials(result))
    print(f"best configuration: {json.dumps(result.best.to_dict(), sort_keys=True)}")
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
        "evaluate": run_evaluate,
        "tune": run_tune,
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
