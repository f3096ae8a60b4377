"""Hot swaps under load: client processes keep asking while three trainings replace the model.

No request may fail, and every answer must be exactly what one model version answers: a
response never mixes two versions. Each training makes a different item the most popular,
so the versions are told apart by their answers as well as by the version they name.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mfrec.client import JobState, RecommenderClient, RecommenderError, TrainingConfig
from mfrec.server.model import ServingModel
from mfrec.server.recommender import Limits, RecommendQuery, recommend
from tests.integration.conftest import ServerFactory

pytestmark = pytest.mark.integration

WORKERS = 3
RUN_SECONDS = 10.0  # the longest any worker sends for
USERS = ("u1", "u6", "stranger")  # two known users (personalized) and one popular answer
K = 5
CONFIG = TrainingConfig(factors=3, iterations=2, validation_fraction=0.0)


def _worker(target: str, out: str, stop: Any, ready: Any, sent: Any) -> None:
    """Sends Recommend until told to stop (or RUN_SECONDS pass); writes what it saw."""
    records: list[tuple[str, str, list[tuple[str, float]]]] = []
    failures: list[str] = []
    deadline = time.monotonic() + RUN_SECONDS
    with RecommenderClient(target, timeout=10) as client:
        for number in range(1_000_000):
            if stop.is_set() or time.monotonic() > deadline:
                break
            user = USERS[number % len(USERS)]
            try:
                answer = client.recommend(user, k=K, include_seen=True)
            except RecommenderError as error:
                failures.append(str(error))
            else:
                items = [(item.item_id, item.score) for item in answer.items]
                records.append((answer.model_version, user, items))
                ready.set()
            with sent.get_lock():
                sent.value += 1
    Path(out).write_text(json.dumps({"records": records, "failures": failures}))


def _ratings(favourite: int) -> list[tuple[str, str, float]]:
    """Block ratings where item i{favourite} is rated by every user, so it is most popular."""
    rows = []
    for user in range(12):
        for item in range(10):
            if item == favourite or (user + item) % 3 == 0:
                value = 5.0 if item == favourite else float(1 + (user * item) % 4)
                rows.append((f"u{user}", f"i{item}", value))
    return rows


def _wait_until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_recommendations_under_load_are_each_from_exactly_one_version(
    start_server: ServerFactory, model_dir: Path, tmp_path: Path
) -> None:
    running = start_server(model_dir, keep_versions=10, threads=4)
    initial = running.store.require().version
    target = f"127.0.0.1:{running.port}"
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    ready = [context.Event() for _ in range(WORKERS)]
    sent = [context.Value("l", 0) for _ in range(WORKERS)]
    outputs = [tmp_path / f"worker-{n}.json" for n in range(WORKERS)]
    workers = [
        context.Process(target=_worker, args=(target, str(outputs[n]), stop, ready[n], sent[n]))
        for n in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    try:
        assert all(event.wait(timeout=30) for event in ready), "a worker never got an answer"
        with RecommenderClient(target, timeout=20) as client:
            jobs = [
                client.train(ratings=_ratings(n), config=CONFIG, poll_seconds=0.02, wait_timeout=30)
                for n in (1, 2, 3)
            ]
        assert all(job.state is JobState.SUCCEEDED for job in jobs), [j.error for j in jobs]
        after_last = [counter.value for counter in sent]
        # Let every worker send a few requests to the last model before stopping.
        assert _wait_until(
            lambda: all(
                c.value >= a + 3 * len(USERS) for c, a in zip(sent, after_last, strict=True)
            ),
            30,
        )
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert all(worker.exitcode == 0 for worker in workers)

    results = [json.loads(path.read_text()) for path in outputs]
    failures = [failure for result in results for failure in result["failures"]]
    records = [tuple(record) for result in results for record in result["records"]]
    versions = Counter(version for version, _, _ in records)
    print(
        f"hot swap: {len(records) + len(failures)} requests, {len(failures)} failed, "
        f"by version {dict(sorted(versions.items()))}"
    )
    assert failures == []
    assert set(versions) <= {initial, *(job.model_version for job in jobs)}
    assert initial in versions and jobs[-1].model_version in versions

    limits = Limits(max_k=100)
    models = {version: ServingModel.load(model_dir / version) for version in versions}
    expected = {
        (version, user): recommend(
            models[version], RecommendQuery(user, K, include_seen=True), limits
        ).items
        for version in versions
        for user in USERS
    }
    for version, user, items in records:
        want = expected[(version, user)]
        assert [item for item, _ in items] == [item for item, _ in want], (version, user)
        assert [score for _, score in items] == pytest.approx([s for _, s in want], rel=1e-6)
    for job, favourite in zip(jobs, ("i1", "i2", "i3"), strict=True):
        assert expected[(job.model_version, "stranger")][0][0] == favourite
