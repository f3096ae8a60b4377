"""The typed client's failure handling, against a fake server that fails on purpose.

Reads are retried when the server answers UNAVAILABLE, Train never is, every call carries
the default deadline, and a server that is down gives one readable UNAVAILABLE error.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from mfrec.client import DEFAULT_TIMEOUT_SECONDS, RecommenderClient, RecommenderError
from mfrec.v1 import recommender_pb2 as pb
from mfrec.v1 import recommender_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
MAX_ATTEMPTS = 4  # the client's retry policy


@dataclass
class FakeRecommender(pb_grpc.RecommenderServicer):
    """Fails the first `failures` calls of each method with `code`, then answers."""

    failures: int = 0
    code: grpc.StatusCode = UNAVAILABLE
    calls: Counter[str] = field(default_factory=Counter)
    remaining: list[float | None] = field(default_factory=list)
    hold: threading.Event | None = None

    def _answer(self, method: str, context: grpc.ServicerContext, response: Any) -> Any:
        self.calls[method] += 1
        self.remaining.append(context.time_remaining())
        if self.hold is not None:
            self.hold.wait(timeout=30)
        if self.calls[method] <= self.failures:
            context.abort(self.code, f"failing {method} on purpose")
        return response

    def Recommend(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._answer("Recommend", context, pb.RecommendResponse(model_version="v1"))

    def RecommendBatch(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._answer("RecommendBatch", context, pb.RecommendBatchResponse())

    def SimilarItems(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._answer("SimilarItems", context, pb.SimilarItemsResponse(model_version="v1"))

    def GetModelInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._answer("GetModelInfo", context, pb.ModelInfo(model_version="v1"))

    def GetTrainingJob(self, request: Any, context: grpc.ServicerContext) -> Any:
        job = pb.TrainingJob(job_id="j", state=pb.TRAINING_JOB_STATE_SUCCEEDED)
        return self._answer("GetTrainingJob", context, job)

    def Train(self, request: Any, context: grpc.ServicerContext) -> Any:
        job = pb.TrainingJob(job_id="j", state=pb.TRAINING_JOB_STATE_RUNNING)
        return self._answer("Train", context, job)


@pytest.fixture
def fake() -> Iterator[Callable[..., tuple[FakeRecommender, str]]]:
    servers: list[tuple[grpc.Server, FakeRecommender]] = []

    def start(**settings: Any) -> tuple[FakeRecommender, str]:
        servicer = FakeRecommender(**settings)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_RecommenderServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append((server, servicer))
        return servicer, f"127.0.0.1:{port}"

    yield start
    for server, servicer in servers:
        if servicer.hold is not None:
            servicer.hold.set()
        server.stop(None)


READS: dict[str, Callable[[RecommenderClient], Any]] = {
    "Recommend": lambda c: c.recommend("u1"),
    "RecommendBatch": lambda c: c.recommend_batch(["u1"]),
    "SimilarItems": lambda c: c.similar_items("i1"),
    "GetModelInfo": lambda c: c.model_info(),
    "GetTrainingJob": lambda c: c.training_job("j"),
}


@pytest.mark.parametrize("method", sorted(READS))
def test_a_read_is_retried_after_unavailable(
    fake: Callable[..., tuple[FakeRecommender, str]], method: str
) -> None:
    servicer, target = fake(failures=MAX_ATTEMPTS - 1)
    with RecommenderClient(target) as client:
        READS[method](client)
    assert servicer.calls[method] == MAX_ATTEMPTS


def test_a_read_gives_up_after_the_last_attempt(
    fake: Callable[..., tuple[FakeRecommender, str]],
) -> None:
    servicer, target = fake(failures=100)
    with RecommenderClient(target) as client, pytest.raises(RecommenderError) as caught:
        client.recommend("u1")
    assert caught.value.code == UNAVAILABLE and "on purpose" in caught.value.message
    assert servicer.calls["Recommend"] == MAX_ATTEMPTS


def test_train_is_never_retried(fake: Callable[..., tuple[FakeRecommender, str]]) -> None:
    servicer, target = fake(failures=1)
    with RecommenderClient(target) as client, pytest.raises(RecommenderError) as caught:
        client.train(ratings=[("a", "b", 1.0)], wait=False)
    assert caught.value.code == UNAVAILABLE
    assert servicer.calls["Train"] == 1


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INVALID_ARGUMENT,
    ],
)
def test_other_failures_are_not_retried(
    fake: Callable[..., tuple[FakeRecommender, str]], code: grpc.StatusCode
) -> None:
    servicer, target = fake(failures=1, code=code)
    with RecommenderClient(target) as client, pytest.raises(RecommenderError) as caught:
        client.recommend("u1")
    assert caught.value.code == code
    assert servicer.calls["Recommend"] == 1


def test_every_call_carries_the_default_deadline_or_its_own(
    fake: Callable[..., tuple[FakeRecommender, str]],
) -> None:
    servicer, target = fake()
    with RecommenderClient(target) as client:
        client.recommend("u1")
        client.model_info()
        client.recommend("u1", timeout=2.0)
    default, info, custom = servicer.remaining
    slack = 0.1  # the wire encodes a deadline as a rounded-up timeout
    for remaining in (default, info):
        assert remaining is not None and 2.0 + slack < remaining <= DEFAULT_TIMEOUT_SECONDS + slack
    assert custom is not None and 0 < custom <= 2.0 + slack


def test_a_call_past_its_deadline_fails_with_deadline_exceeded(
    fake: Callable[..., tuple[FakeRecommender, str]],
) -> None:
    servicer, target = fake(hold=threading.Event())
    with RecommenderClient(target, timeout=0.2) as client, pytest.raises(RecommenderError) as e:
        client.recommend("u1")
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_server_that_is_down_gives_one_readable_unavailable_error() -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with RecommenderClient(f"127.0.0.1:{port}") as client, pytest.raises(RecommenderError) as e:
        client.model_info()
    assert e.value.code == UNAVAILABLE
    assert f"127.0.0.1:{port}" in e.value.message and "connect" in e.value.message.lower()
    assert str(e.value).startswith("UNAVAILABLE: ")
