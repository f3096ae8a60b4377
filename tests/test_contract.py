"""The contract: committed stubs match the .proto, and the client's public surface is pinned."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mfrec.client

ROOT = Path(__file__).resolve().parents[1]
GENERATED = (
    "recommender_pb2.py",
    "recommender_pb2.pyi",
    "recommender_pb2_grpc.py",
    "recommender_pb2_grpc.pyi",
)


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        str(ROOT / "protos"),
        f"--python_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        f"--mypy_out={tmp_path}",
        f"--mypy_grpc_out={tmp_path}",
        str(ROOT / "protos/mfrec/v1/recommender.proto"),
    ]
    subprocess.run(command, check=True, env=env, capture_output=True)
    for name in GENERATED:
        fresh = (tmp_path / "mfrec/v1" / name).read_bytes()
        committed = (ROOT / "client/mfrec/v1" / name).read_bytes()
        assert fresh == committed, f"client/mfrec/v1/{name} is stale: run `make proto`"


def test_client_public_surface() -> None:
    assert sorted(mfrec.client.__all__) == sorted(
        [
            "DEFAULT_TIMEOUT_SECONDS",
            "JobState",
            "ModelInfo",
            "RecommenderClient",
            "RecommenderError",
            "Recommendations",
            "ScoredItem",
            "SimilarItems",
            "Source",
            "TrainingConfig",
            "TrainingJob",
        ]
    )
    for name in mfrec.client.__all__:
        assert hasattr(mfrec.client, name)


def test_every_proto_element_is_documented() -> None:
    lines = (ROOT / "protos/mfrec/v1/recommender.proto").read_text().splitlines()
    undocumented = []
    for number, line in enumerate(lines):
        text = line.strip()
        is_element = text.startswith(("service ", "rpc ", "message ", "enum ")) or (
            text.endswith(";") and "=" in text and not text.startswith(("syntax", "option"))
        )
        if is_element and not lines[number - 1].strip().startswith("//"):
            undocumented.append(f"line {number + 1}: {text}")
    assert not undocumented
