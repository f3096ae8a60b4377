"""Bad requests over RPC: each gets its status and reason, and the server keeps serving.

Every row of a table is one request. After each, the server must still answer and still
serve the model version it served before, except where the row is valid data that trains.
The same inputs without gRPC are in tests/unit/test_bad_inputs.py.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mfrec.client import JobState, RecommenderClient, RecommenderError, Source, TrainingConfig
from mfrec.server.app import MiB, RunningServer, ServerConfig, build_server
from mfrec.server.recommender import Limits
from mfrec.training.pipeline import TrainingSummary
from tests.integration.conftest import ServerFactory

pytestmark = pytest.mark.integration

FAST = TrainingConfig(factors=2, iterations=2, validation_fraction=0.0)
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
OK = grpc.StatusCode.OK
RATING_RANGE = (0.5, 5.0)
MAX_INLINE = 1000


@dataclass
class Served:
    running: RunningServer
    client: RecommenderClient
    data_dir: Path
    outside: Path


def _write_files(data_dir: Path, outside: Path) -> None:
    header = b"user_id,item_id,rating\n"
    files = {
        "empty.csv": b"",
        "truncated.csv": header + b"a,b,5\nc,d",
        "semicolons.csv": b"user_id;item_id;rating\na;b;5\n",
        "header-only.csv": header,
        "latin1.csv": header + "café,b,5\n".encode("latin-1"),
        "nan.csv": header + b"a,b,5\nc,d,nan\n",
        "above-range.csv": header + b"a,b,5\nc,d,7\n",
        "long-id.csv": header + b"a,b,5\n" + b"x" * 257 + b",d,3\n",
        "blank-lines.csv": b"\n\n\n",
        "u.data": b"1\t2\t5\t100\n3\t4\t1",
    }
    for name, data in files.items():
        (data_dir / name).write_bytes(data)
    (data_dir / "folder").mkdir()
    outside.write_bytes(header + b"x,y,1\n")
    (data_dir / "out-link.csv").symlink_to(outside)
    (data_dir / "dangling.csv").symlink_to(data_dir / "nothing.csv")


@pytest.fixture(scope="module")
def served(
    shared_model: TrainingSummary, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One server for every row that must leave the model as it is."""
    root = tmp_path_factory.mktemp("bad-requests")
    shutil.copytree(shared_model.path, root / "models" / shared_model.model_version)
    (root / "data").mkdir()
    _write_files(root / "data", root / "outside.csv")
    config = ServerConfig(
        model_dir=root / "models",
        port=0,
        data_dir=root / "data",
        limits=Limits(max_k=100),
        rating_range=RATING_RANGE,
        max_inline_ratings=MAX_INLINE,
        max_message_bytes=1 * MiB,
    )
    running = build_server(config)
    with RecommenderClient(f"127.0.0.1:{running.port}", timeout=20) as client:
        yield Served(running, client, root / "data", root / "outside.csv")
    running.stop(grace=2.0)


def _ids(count: int, width: int = 0) -> list[str]:
    return [f"i{n}".ljust(width, "x") for n in range(count)]


def _rating(value: float, user: str = "a", item: str = "b") -> list[tuple[str, str, float]]:
    return [("u1", "i1", 4.0), (user, item, value)]


Call = Callable[[RecommenderClient], Any]

REQUESTS: dict[str, tuple[Call, grpc.StatusCode, str]] = {
    "recommend: empty user id": (lambda c: c.recommend(""), INVALID, "user_id is required"),
    "recommend: whitespace-only user id": (
        lambda c: c.recommend(" \t\n"),
        INVALID,
        "must not be blank",
    ),
    "recommend: 257-byte user id": (
        lambda c: c.recommend("u" * 257),
        INVALID,
        "longer than 256 bytes",
    ),
    "recommend: 256-byte user id": (lambda c: c.recommend("u" * 256), OK, ""),
    "recommend: k = -1": (lambda c: c.recommend("u1", k=-1), INVALID, "k must be >= 0"),
    "recommend: k = int32 min": (
        lambda c: c.recommend("u1", k=-(2**31)),
        INVALID,
        "k must be >= 0",
    ),
    "recommend: k = int32 max": (lambda c: c.recommend("u1", k=2**31 - 1), INVALID, "at most 100"),
    "recommend: k = 101": (lambda c: c.recommend("u1", k=101), INVALID, "at most 100"),
    "recommend: k = 0": (lambda c: c.recommend("u1", k=0), OK, ""),
    "recommend: 10,000 excluded ids": (lambda c: c.recommend("u1", exclude=_ids(10_000)), OK, ""),
    "recommend: 10,001 excluded ids": (
        lambda c: c.recommend("u1", exclude=_ids(10_001)),
        INVALID,
        "exclude_item_ids has 10001 entries; at most 10000",
    ),
    "recommend: 10,001 allowed ids": (
        lambda c: c.recommend("u1", allowed=_ids(10_001)),
        INVALID,
        "allowed_item_ids has",
    ),
    "recommend: overlong excluded id": (
        lambda c: c.recommend("u1", exclude=["x" * 300]),
        INVALID,
        "exclude_item_ids holds",
    ),
    "recommend: NaN recent value": (
        lambda c: c.recommend("new", recent=["i1"], recent_values=[float("nan")]),
        INVALID,
        "finite",
    ),
    "recommend: recent values without ids": (
        lambda c: c.recommend("new", recent_values=[1.0]),
        INVALID,
        "one value per item",
    ),
    "recommend: over the message size": (
        lambda c: c.recommend("u1", exclude=_ids(5000, width=250)),
        EXHAUSTED,
        "",
    ),
    "batch: 1001 requests": (lambda c: c.recommend_batch(["u1"] * 1001), INVALID, "at most 1000"),
    "batch: a bad sub-request": (
        lambda c: c.recommend_batch(["u1", "u2", {"user_id": "u3", "k": -4}]),
        INVALID,
        "requests[2]: k must be >= 0",
    ),
    "batch: empty": (lambda c: c.recommend_batch([]), OK, ""),
    "similar: empty item id": (lambda c: c.similar_items(""), INVALID, "item_id is required"),
    "similar: unknown item": (lambda c: c.similar_items("nope"), NOT_FOUND, "not in the model"),
    "similar: k = -1": (lambda c: c.similar_items("i1", k=-1), INVALID, "k must be >= 0"),
    "job: empty id": (lambda c: c.training_job(""), INVALID, "job_id is required"),
    "job: unknown id": (lambda c: c.training_job("f" * 32), NOT_FOUND, "does not exist"),
    "train: nothing to train on": (lambda c: c.train(config=FAST), INVALID, "exactly one of"),
    "train: a path and ratings": (
        lambda c: c.train("r.csv", "csv", ratings=_rating(1.0)),
        INVALID,
        "exactly one of",
    ),
    "train: NaN": (
        lambda c: c.train(ratings=_rating(float("nan"))),
        INVALID,
        "ratings[1].value must be finite",
    ),
    "train: infinity": (lambda c: c.train(ratings=_rating(float("inf"))), INVALID, "finite"),
    "train: minus infinity": (lambda c: c.train(ratings=_rating(float("-inf"))), INVALID, "finite"),
    "train: above --rating-range": (
        lambda c: c.train(ratings=_rating(6.0)),
        INVALID,
        "outside the server's rating range",
    ),
    "train: below --rating-range": (lambda c: c.train(ratings=_rating(0.0)), INVALID, "outside"),
    "train: 257-byte user id": (
        lambda c: c.train(ratings=_rating(1.0, user="u" * 257)),
        INVALID,
        "ratings[1].user_id is longer than 256 bytes",
    ),
    "train: blank item id": (
        lambda c: c.train(ratings=_rating(1.0, item="  ")),
        INVALID,
        "ratings[1].item_id",
    ),
    "train: over --max-inline-ratings": (
        lambda c: c.train(ratings=[(f"u{n}", "i", 1.0) for n in range(MAX_INLINE + 1)]),
        INVALID,
        "at most 1000 are allowed inline",
    ),
    "train: no format": (lambda c: c.train("empty.csv"), INVALID, "dataset_format is required"),
    "train: a directory": (lambda c: c.train("folder", "csv"), INVALID, "not a regular file"),
    "train: missing file": (lambda c: c.train("absent.csv", "csv"), NOT_FOUND, "does not exist"),
    "train: dangling link": (lambda c: c.train("dangling.csv", "csv"), NOT_FOUND, "not exist"),
    "train: a .. chain": (
        lambda c: c.train("folder/../../outside.csv", "csv"),
        INVALID,
        "inside the server's data dir",
    ),
    "train: a long .. chain": (
        lambda c: c.train("../" * 30 + "etc/passwd", "ml-100k"),
        INVALID,
        "inside the server's data dir",
    ),
    "train: a link pointing out": (
        lambda c: c.train("out-link.csv", "csv"),
        INVALID,
        "inside the server's data dir",
    ),
    "train: NUL byte": (lambda c: c.train("empty.csv\x00", "csv"), INVALID, "NUL"),
    "train: bad config": (
        lambda c: c.train(ratings=_rating(1.0), config=TrainingConfig(factors=5000)),
        INVALID,
        "factors",
    ),
}


def _outcome(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except RecommenderError as error:
        return error.code, error.message
    return OK, ""


def _assert_still_serving(served: Served, version: str) -> None:
    assert served.client.model_info().model_version == version
    assert served.client.recommend("u1", k=3).model_version == version
    with grpc.insecure_channel(f"127.0.0.1:{served.running.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    assert health.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_bad_request_table(served: Served, case: str) -> None:
    call, code, text = REQUESTS[case]
    version = served.client.model_info().model_version
    got, message = _outcome(lambda: call(served.client))
    assert got == code, message
    assert text in message
    assert str(served.data_dir) not in message and str(served.outside) not in message
    _assert_still_serving(served, version)


FAILED_FILES: dict[str, tuple[str, str, str]] = {
    "empty file": ("empty.csv", "csv", "empty.csv is empty (0 bytes)"),
    "only blank lines": ("blank-lines.csv", "csv", "only blank lines"),
    "truncated mid-line": ("truncated.csv", "csv", "truncated.csv, line 3: expected 3 fields"),
    "u.data truncated mid-line": ("u.data", "ml-100k", "u.data, line 2: expected 4 fields"),
    "wrong separator": ("semicolons.csv", "csv", "is the separator right?"),
    "header only": ("header-only.csv", "csv", "has a header but no data rows"),
    "Latin-1 bytes": ("latin1.csv", "csv", "latin1.csv is not UTF-8: line 2 has the byte 0xe9"),
    "NaN in a file": ("nan.csv", "csv", "line 3: rating 'nan' is not finite"),
    "a file outside --rating-range": ("above-range.csv", "csv", "line 3: rating 7.0 is outside"),
    "a file with an overlong id": ("long-id.csv", "csv", "longer than the server's --max-id"),
}


@pytest.mark.parametrize("case", sorted(FAILED_FILES))
def test_bad_dataset_file_table(served: Served, case: str) -> None:
    path, fmt, text = FAILED_FILES[case]
    version = served.client.model_info().model_version
    job = served.client.train(path, fmt, config=FAST, poll_seconds=0.02, wait_timeout=30)
    assert job.state is JobState.FAILED
    assert text in job.error
    assert str(served.data_dir) not in job.error
    _assert_still_serving(served, version)


def test_overflowing_ratings_fail_the_job_and_keep_the_model(
    start_server: ServerFactory, model_dir: Path
) -> None:
    running = start_server(model_dir)
    with RecommenderClient(f"127.0.0.1:{running.port}", timeout=20) as client:
        version = client.model_info().model_version
        ratings = [(f"u{n % 4}", f"i{n % 5}", 3e38 * (-1) ** n) for n in range(20)]
        job = client.train(ratings=ratings, config=FAST, poll_seconds=0.02, wait_timeout=30)
        assert job.state is JobState.FAILED
        assert "overflow" in job.error and "rescale" in job.error
        assert client.model_info().model_version == version
    assert [p.name for p in model_dir.iterdir()] == [version]  # nothing half-made left


ODD_IDS = ["comma,id", "tab\tid", 'quote"id', "new\nline", "naïve", "日本", "😀", " pad "]


def _odd_rows() -> list[tuple[str, str, float]]:
    return [
        (user, item, float(1 + (a * 3 + b) % 5))
        for a, user in enumerate(ODD_IDS)
        for b, item in enumerate(ODD_IDS)
        if (a + b) % 2
    ]


VALID: dict[str, Callable[[Path], tuple[list[tuple[str, str, float]], str]]] = {
    "one rating": lambda d: ([("only", "x", 3.0)], "only"),
    "one user": lambda d: ([("solo", f"i{n}", 1.0 + n % 5) for n in range(8)], "solo"),
    "one item": lambda d: ([(f"u{n}", "x", 1.0 + n % 5) for n in range(8)], "u1"),
    "every rating identical": lambda d: (
        [(f"u{n % 5}", f"i{n % 7}", 4.0) for n in range(35)],
        "u1",
    ),
    "duplicate pairs": lambda d: ([("a", "x", 1.0), ("a", "x", 5.0), ("b", "y", 2.0)], "a"),
    "odd ids inline": lambda d: (_odd_rows(), "new\nline"),
}


@pytest.mark.parametrize("case", sorted(VALID))
def test_valid_but_unusual_data_trains_a_servable_model(
    start_server: ServerFactory, model_dir: Path, tmp_path: Path, case: str
) -> None:
    running = start_server(model_dir, rating_range=RATING_RANGE)
    ratings, user = VALID[case](tmp_path)
    with RecommenderClient(f"127.0.0.1:{running.port}", timeout=20) as client:
        job = client.train(ratings=ratings, config=FAST, poll_seconds=0.02, wait_timeout=30)
        assert job.state is JobState.SUCCEEDED, job.error
        assert job.rating_count == len({(u, i) for u, i, _ in ratings})
        answer = client.recommend(user, k=50, include_seen=True)
        assert answer.model_version == job.model_version
        assert answer.source is Source.PERSONALIZED and answer.items
        known = {i for _, i, _ in ratings}
        assert set(answer.item_ids) == known
        assert client.recommend("stranger").source is Source.POPULAR


def test_odd_ids_round_trip_through_a_csv_file_and_rpc(
    start_server: ServerFactory, model_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["user", "item", "stars"])
    writer.writerows(_odd_rows())
    (data_dir / "odd.csv").write_bytes(buffer.getvalue().encode("utf-8"))
    running = start_server(model_dir, data_dir=data_dir)
    options = {"user_column": "user", "item_column": "item", "rating_column": "stars"}
    with RecommenderClient(f"127.0.0.1:{running.port}", timeout=20) as client:
        job = client.train(
            str(data_dir / "odd.csv"),
            "csv",
            csv_options=options,
            config=FAST,
            poll_seconds=0.02,
            wait_timeout=30,
        )  # an absolute path inside
        assert job.state is JobState.SUCCEEDED, job.error
        for user in ODD_IDS:
            answer = client.recommend(user, k=50, include_seen=True)
            assert answer.source is Source.PERSONALIZED
            assert sorted(answer.item_ids) == sorted(ODD_IDS)
        similar = client.similar_items('quote"id', k=50)
        assert sorted([*(item.item_id for item in similar.items), 'quote"id']) == sorted(ODD_IDS)
