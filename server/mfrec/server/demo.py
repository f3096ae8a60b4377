"""`mfrec demo`: train on MovieLens 100K, start a real server, and ask it for recommendations."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

from mfrec.client import Recommendations, RecommenderClient, Source
from mfrec.server.launch import free_port, serve_command, wait_serving

_KNOWN_USERS = ("196", "186", "22")
_UNKNOWN_USER = "new-user-42"
# Star Wars, The Empire Strikes Back, Return of the Jedi: a new user folded in from them.
_RECENT_ITEMS = ("50", "172", "181")


def _dataset() -> tuple[object, dict[str, str], str]:
    """Returns (ratings frame, titles, description), falling back to synthetic data offline."""
    from mfrec.training.datasets import DatasetUnavailable, fetch_movielens, load_item_titles
    from mfrec.training.loaders import load_ratings
    from mfrec.training.synthetic import synthetic_ratings

    try:
        dataset = fetch_movielens("ml-100k")
    except DatasetUnavailable as error:
        print(f"MovieLens 100K is not available ({error}); using a synthetic data set instead")
        return synthetic_ratings(943, 1682, 100_000, seed=42), {}, "synthetic ratings"
    frame = load_ratings(dataset.ratings_path, dataset.format)
    return frame, load_item_titles(dataset), f"MovieLens 100K ({dataset.ratings_path})"


def _show(answer: Recommendations, user_id: str, titles: dict[str, str], note: str = "") -> None:
    print(f"\nuser {user_id}{note}: {answer.source.value} (model {answer.model_version})")
    popular = answer.source is Source.POPULAR
    for rank, item in enumerate(answer.items, start=1):
        title = titles.get(item.item_id, "")
        score = f"{item.score:6.0f} ratings" if popular else f"{item.score:6.3f} predicted"
        print(f"  {rank:>2}. {score}  [{item.item_id:>5}] {title}")


def run_demo(work_dir: Path | None = None) -> int:
    """Runs the whole path end to end; returns the process exit code."""
    from mfrec.training.config import TrainingConfig
    from mfrec.training.pipeline import train_and_save

    with tempfile.TemporaryDirectory(prefix="mfrec-demo-") as scratch:
        root = work_dir or Path(scratch)
        model_dir = root / "models"
        frame, titles, description = _dataset()
        print(f"training on {description}: {len(frame):,} ratings")  # type: ignore[arg-type]
        summary = train_and_save(frame, TrainingConfig(), model_dir)  # type: ignore[arg-type]
        rmse = summary.validation_rmse
        print(
            f"model {summary.model_version}: {summary.user_count} users, "
            f"{summary.item_count} items, validation RMSE "
            f"{'n/a' if rmse is None else f'{rmse:.4f}'}, {summary.train_seconds:.1f} s"
        )
        port = free_port()
        target = f"127.0.0.1:{port}"
        command = serve_command(model_dir, port)
        server = subprocess.Popen(command, env=dict(os.environ))
        try:
            wait_serving(target, server)
            print(f"server listening on {target}")
            with RecommenderClient(target) as client:
                users = [u for u in _KNOWN_USERS if description.startswith("MovieLens")]
                users = users or [str(frame["user_id"].iloc[0])]  # type: ignore[index]
                for user_id in [*users, _UNKNOWN_USER]:
                    _show(client.recommend(user_id, k=5), user_id, titles)
                if users[0] in _KNOWN_USERS:
                    answer = client.recommend(_UNKNOWN_USER, k=5, recent=_RECENT_ITEMS)
                    _show(answer, _UNKNOWN_USER, titles, " after watching the Star Wars trilogy")
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=30)
        print(f"\nserver stopped (exit code {code})")
        return 0 if code == 0 else 1
