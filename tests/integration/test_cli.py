"""The mfrec command line: train, evaluate, tune, recommend and similar, on small files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mfrec.server.app import RunningServer
from mfrec.server.cli import main
from mfrec.training.artifact import list_versions

pytestmark = pytest.mark.integration


@pytest.fixture
def ratings_file(tmp_path: Path, ratings: pd.DataFrame) -> Path:
    path = tmp_path / "ratings.tsv"
    ratings.to_csv(path, sep="\t", index=False)
    return path


def _csv_args(path: Path) -> list[str]:
    return ["--data", str(path), "--format", "csv", "--sep", "\t", "--timestamp-col", "timestamp"]


def test_train_saves_a_version_and_reports_progress(
    ratings_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    args = [
        "train",
        *_csv_args(ratings_file),
        "--model-dir",
        str(models),
        "--factors",
        "4",
        "--iterations",
        "2",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "iteration 1/4" in out and "validation RMSE" in out
    assert len(list_versions(models)) == 1
    assert main([*args, "--keep-versions", "1"]) == 0
    assert len(list_versions(models)) == 1


@pytest.mark.parametrize("protocol", ["rating", "ranking"])
def test_evaluate_prints_one_json_line(
    ratings_file: Path, protocol: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "evaluate",
        *_csv_args(ratings_file),
        "--protocol",
        protocol,
        "--json",
        "--factors",
        "4",
        "--iterations",
        "3",
    ]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    keys = (
        {"rmse", "mae"}
        if protocol == "rating"
        else {"precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k", "coverage", "cold"}
    )
    assert keys <= result.keys()
    assert result["config"]["factors"] == 4 and result["fit_seconds"] >= 0


def test_tune_prints_the_best_configuration(
    ratings_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tune", *_csv_args(ratings_file), "--trials", "2"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("best configuration: ")
    assert json.loads(last.removeprefix("best configuration: "))["algorithm"] == "als-explicit"


def test_a_malformed_file_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.data"
    bad.write_text("1\t2\t5\t100\n1\t3\n")
    assert (
        main(
            ["train", "--data", str(bad), "--format", "ml-100k", "--model-dir", str(tmp_path / "m")]
        )
        == 1
    )
    error = capsys.readouterr().err
    assert "bad.data" in error and "line 2" in error and "Traceback" not in error


def test_recommend_and_similar_print_tables(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"127.0.0.1:{server.port}"
    assert main(["recommend", "--target", target, "--user", "u1", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert (
        "personalized" in out
        and sum(line.split()[0].isdigit() for line in out.splitlines()[1:]) == 3
    )
    assert (
        main(
            ["recommend", "--target", target, "--user", "new", "--recent", "i1", "--recent", "nope"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "fold-in" in out and "ignored unknown items: nope" in out
    assert main(["similar", "--target", target, "--item", "i1", "-k", "2"]) == 0
    assert "similar to i1" in capsys.readouterr().out
    assert main(["recommend", "--target", target, "--user", ""]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err


@pytest.mark.parametrize("workers", ["0", "-2", "100000"])
def test_an_unreasonable_worker_count_is_refused_at_start(workers: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--workers must be between 1 and"):
        main(["serve", "--model-dir", str(tmp_path), "--port", "0", "--workers", workers])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port", "70000"], "--port must be between 1 and 65535"),
        (["--port", "-1"], "--port must be between"),
        (["--max-k", "0"], "--max-k must be at least 1"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--grace-seconds", "-1"], "--grace-seconds must be at least 0"),
        (["--data-dir", "/no/such/folder"], "--data-dir /no/such/folder is not"),
    ],
)
def test_serve_refuses_settings_that_cannot_work(
    flags: list[str], message: str, tmp_path: Path
) -> None:
    with pytest.raises(SystemExit, match=message):
        main(["serve", "--model-dir", str(tmp_path), *flags])


def test_serve_refuses_a_file_as_model_dir(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(SystemExit, match="is not a directory"):
        main(["serve", "--model-dir", str(not_a_dir)])


def test_a_typed_backslash_t_separator_means_tab(
    ratings_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "train",
        "--data",
        str(ratings_file),
        "--format",
        "csv",
        "--sep",
        "\\t",
        "--model-dir",
        str(tmp_path / "m"),
        "--factors",
        "2",
        "--iterations",
        "1",
    ]
    assert main(args) == 0
    assert "loaded 600 ratings" in capsys.readouterr().out


def test_users_file_errors_name_the_file_and_line(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"127.0.0.1:{server.port}"
    users = tmp_path / "users.txt"
    users.write_text("u1\n\nu2\n" + "x" * 300 + "\n")
    with pytest.raises(SystemExit, match=r"users.txt, line 4: .*longer than 256 bytes"):
        main(["recommend", "--target", target, "--users-file", str(users)])
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Mis\xe9rables\n".encode("latin-1"))
    for path, message in (
        (latin, "is not UTF-8"),
        (tmp_path / "none.txt", "does not exist"),
        (tmp_path, "is a directory"),
    ):
        with pytest.raises(SystemExit, match=message):
            main(["recommend", "--target", target, "--users-file", str(path)])


def test_train_stops_at_once_on_ratings_too_large_for_float32(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "huge.csv"
    data.write_text("user_id,item_id,rating\na,x,1e39\nb,y,3\na,y,2\n")
    models = tmp_path / "m"
    assert main(["train", "--data", str(data), "--format", "csv", "--model-dir", str(models)]) == 1
    assert "training overflowed" in capsys.readouterr().err
    assert list_versions(models) == []


def test_train_refuses_ids_no_request_could_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "long.csv"
    data.write_text("user_id,item_id,rating\na,x,1\n" + "u" * 300 + ",y,2\n")
    models = tmp_path / "m"
    assert main(["train", "--data", str(data), "--format", "csv", "--model-dir", str(models)]) == 1
    assert "longer than the server's --max-id-bytes" in capsys.readouterr().err
    assert list_versions(models) == []
