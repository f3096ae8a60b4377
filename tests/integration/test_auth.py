"""Bearer tokens over a real server: who may call what, open health and reflection, start-up."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from mfrec.client import JobState, RecommenderClient, RecommenderError, TrainingConfig
from mfrec.server.app import RunningServer, ServerConfig, StartupError, build_server
from mfrec.training.pipeline import TrainingSummary
from mfrec.v1 import recommender_pb2 as pb
from mfrec.v1 import recommender_pb2_grpc as pb_grpc
from tests.integration.conftest import ServerFactory

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "admin-7c1d9e44b2a05f3e"
READ_TOKEN = "read-52a0f8c6d13e9b47"
WRONG_TOKEN = "read-52a0f8c6d13e9b48"
ROOT = Path(__file__).resolve().parents[2]


def write_tokens(directory: Path) -> Path:
    path = directory / "tokens"
    path.write_text(f"# test tokens\nadmin:{ADMIN_TOKEN}\n\nread:{READ_TOKEN}\n")
    return path


@pytest.fixture(scope="module")
def guarded(
    shared_model: TrainingSummary, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One token-protected server for the whole table (its calls do not change the model)."""
    root = tmp_path_factory.mktemp("auth")
    shutil.copytree(shared_model.path, root / "models" / shared_model.model_version)
    config = ServerConfig(model_dir=root / "models", port=0, tokens_file=write_tokens(root))
    running = build_server(config)
    yield running
    running.stop(grace=2.0)


Call = Callable[[pb_grpc.RecommenderStub, tuple[tuple[str, str], ...]], Any]

CALLS: dict[str, Call] = {
    "Recommend": lambda s, m: s.Recommend(
        pb.RecommendRequest(user_id="u1"), metadata=m, timeout=10
    ),
    "RecommendBatch": lambda s, m: s.RecommendBatch(
        pb.RecommendBatchRequest(requests=[pb.RecommendRequest(user_id="u1")]),
        metadata=m,
        timeout=10,
    ),
    "SimilarItems": lambda s, m: s.SimilarItems(
        pb.SimilarItemsRequest(item_id="i1"), metadata=m, timeout=10
    ),
    "GetModelInfo": lambda s, m: s.GetModelInfo(pb.GetModelInfoRequest(), metadata=m, timeout=10),
    # An empty Train passes the token check and then fails validation: it never trains.
    "Train": lambda s, m: s.Train(pb.TrainRequest(), metadata=m, timeout=10),
    "GetTrainingJob": lambda s, m: s.GetTrainingJob(
        pb.GetTrainingJobRequest(job_id="nope"), metadata=m, timeout=10
    ),
}
OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
# What each token gets from each RPC; admin's Train and GetTrainingJob get past the check and
# fail on the request itself.
EXPECTED = {
    "admin": {
        "Train": grpc.StatusCode.INVALID_ARGUMENT,
        "GetTrainingJob": grpc.StatusCode.NOT_FOUND,
    },
    "read": {"Train": DENIED, "GetTrainingJob": DENIED},
}
HEADERS = {
    "admin": f"Bearer {ADMIN_TOKEN}",
    "admin, lower-case scheme": f"bearer {ADMIN_TOKEN}",
    "read": f"Bearer {READ_TOKEN}",
    "none": None,
    "wrong": f"Bearer {WRONG_TOKEN}",
    "no scheme": ADMIN_TOKEN,
    "basic scheme": f"Basic {ADMIN_TOKEN}",
    "scheme only": "Bearer",
    "token with a suffix": f"Bearer {ADMIN_TOKEN}x",
}


def _expected(header: str, method: str) -> grpc.StatusCode:
    role = header.split(",")[0]
    if role not in EXPECTED:
        return UNAUTHENTICATED
    return EXPECTED[role].get(method, OK)


def _code(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return OK, ""


@pytest.mark.parametrize("method", sorted(CALLS))
@pytest.mark.parametrize("header", sorted(HEADERS))
def test_each_rpc_with_each_kind_of_token(
    guarded: RunningServer, header: str, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    value = HEADERS[header]
    metadata = () if value is None else (("authorization", value),)
    version = guarded.store.require().version
    caplog.set_level(logging.DEBUG)
    with grpc.insecure_channel(f"127.0.0.1:{guarded.port}") as channel:
        code, message = _code(lambda: CALLS[method](pb_grpc.RecommenderStub(channel), metadata))
    assert code == _expected(header, method), message
    if code == UNAUTHENTICATED:
        assert "authorization: Bearer" in message
    if code == DENIED:
        assert "needs an admin token" in message
    for token in (ADMIN_TOKEN, READ_TOKEN, WRONG_TOKEN):
        assert token not in message and token not in caplog.text
    assert guarded.store.require().version == version


def test_health_and_reflection_need_no_token(guarded: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{guarded.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"mfrec.v1.Recommender", "grpc.health.v1.Health"} <= services


def test_the_typed_client_sends_its_token(guarded: RunningServer) -> None:
    target = f"127.0.0.1:{guarded.port}"
    with RecommenderClient(target, token=READ_TOKEN) as reader:
        assert reader.recommend("u1", k=3).items
        with pytest.raises(RecommenderError) as caught:
            reader.training_job("nope")
        assert caught.value.code == DENIED
    with RecommenderClient(target) as anonymous, pytest.raises(RecommenderError) as caught:
        anonymous.model_info()
    assert caught.value.code == UNAUTHENTICATED


def test_an_admin_token_trains_and_a_read_token_sees_the_new_model(
    start_server: ServerFactory, model_dir: Path, tmp_path: Path
) -> None:
    running = start_server(model_dir, tokens_file=write_tokens(tmp_path))
    target = f"127.0.0.1:{running.port}"
    ratings = [(f"u{u}", f"i{i}", float(1 + (u + i) % 5)) for u in range(6) for i in range(5)]
    config = TrainingConfig(factors=2, iterations=2, validation_fraction=0.0)
    with RecommenderClient(target, token=ADMIN_TOKEN) as admin:
        job = admin.train(ratings=ratings, config=config)
    assert job.state is JobState.SUCCEEDED, job.error
    with RecommenderClient(target, token=READ_TOKEN) as reader:
        assert reader.model_info().model_version == job.model_version
        with pytest.raises(RecommenderError) as caught:
            reader.train(ratings=ratings, config=config)
    assert caught.value.code == DENIED
    assert running.store.require().version == job.model_version


def test_a_public_host_without_tokens_is_refused_at_start_up(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "::", "10.20.30.40"):
        with pytest.raises(StartupError, match="--tokens-file") as caught:
            build_server(ServerConfig(model_dir=tmp_path, host=host, port=0))
        assert "--insecure-listen-any" in str(caught.value)


def test_insecure_listen_any_is_allowed_with_a_warning(
    start_server: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mfrec.server.app import _check_exposure

    # The check alone: binding a public address is not needed to prove the policy.
    config = ServerConfig(model_dir=tmp_path, host="0.0.0.0", insecure_listen_any=True)
    with caplog.at_level(logging.WARNING):
        _check_exposure(config)
    assert "without tokens (--insecure-listen-any)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        start_server(tmp_path)  # loopback without tokens: no warning
        _check_exposure(
            ServerConfig(model_dir=tmp_path, host="0.0.0.0", tokens_file=tmp_path / "t")
        )
    assert "insecure" not in caplog.text


def test_serve_with_a_bad_tokens_file_exits_with_the_line_and_no_token(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin:{ADMIN_TOKEN}\n# fine\nwriter:{READ_TOKEN}\n")
    command = [
        sys.executable,
        "-m",
        "mfrec.server.cli",
        "serve",
        "--model-dir",
        str(tmp_path / "models"),
        "--port",
        "0",
        "--tokens-file",
        str(tokens),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1
    assert f"tokens file {tokens}, line 3: the role before ':' must be admin or read" in done.stderr
    assert ADMIN_TOKEN not in done.stderr + done.stdout
    assert READ_TOKEN not in done.stderr + done.stdout
