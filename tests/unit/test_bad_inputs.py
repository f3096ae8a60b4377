"""Bad inputs at the core: request checks, inline ratings, dataset paths and files, odd data.

Each table row is one input with the error it must get (or the result it must give). The
same inputs over RPC are in tests/integration/test_bad_requests.py.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfrec.server.errors import InvalidRequest, NotFound
from mfrec.server.model import ServingModel
from mfrec.server.recommender import (
    DEFAULT_K,
    Limits,
    RecommendQuery,
    Source,
    check_query,
    recommend,
    similar_items,
)
from mfrec.server.store import ModelStore
from mfrec.server.trainer import (
    FileSource,
    InlineSource,
    TrainingFailed,
    check_inline,
    resolve_dataset_path,
    training_job,
)
from mfrec.training.artifact import list_versions, read_artifact
from mfrec.training.config import TrainingConfig
from mfrec.training.loaders import DatasetError, load_ratings, ratings_from_records
from mfrec.training.pipeline import train_and_save

LIMITS = Limits()
TINY = TrainingConfig(factors=2, iterations=2, validation_fraction=0.0)

# Request checks.

QUERIES: dict[str, tuple[RecommendQuery, str | None]] = {
    "empty user id": (RecommendQuery(""), "user_id is required"),
    "space user id": (RecommendQuery(" "), "must not be blank"),
    "whitespace-only user id": (RecommendQuery("\t\n \u3000"), "must not be blank"),
    "257-byte user id": (RecommendQuery("u" * 257), "longer than 256 bytes"),
    "256-byte user id": (RecommendQuery("u" * 256), None),
    "129 two-byte characters": (RecommendQuery("é" * 129), "longer than 256 bytes"),
    "64 four-byte characters": (RecommendQuery("😀" * 64), None),
    "k = -1": (RecommendQuery("u1", k=-1), "k must be >= 0"),
    "k = int32 min": (RecommendQuery("u1", k=-(2**31)), "k must be >= 0"),
    "k = max_k + 1": (RecommendQuery("u1", k=1001), "at most 1000"),
    "k = int32 max": (RecommendQuery("u1", k=2**31 - 1), "at most 1000"),
    "k = 0 means the default": (RecommendQuery("u1", k=0), None),
    "k = max_k": (RecommendQuery("u1", k=1000), None),
    "10,000 excluded ids": (
        RecommendQuery("u1", exclude_item_ids=tuple(f"i{n}" for n in range(10_000))),
        None,
    ),
    "10,001 excluded ids": (
        RecommendQuery("u1", exclude_item_ids=tuple(f"i{n}" for n in range(10_001))),
        "exclude_item_ids has 10001 entries; at most 10000",
    ),
    "10,001 allowed ids": (
        RecommendQuery("u1", allowed_item_ids=tuple(f"i{n}" for n in range(10_001))),
        "allowed_item_ids has 10001 entries",
    ),
    "10,001 recent ids": (
        RecommendQuery("u1", recent_item_ids=tuple(f"i{n}" for n in range(10_001))),
        "recent_item_ids has 10001 entries",
    ),
    "overlong excluded id": (
        RecommendQuery("u1", exclude_item_ids=("x" * 257,)),
        "exclude_item_ids holds an id longer",
    ),
    "overlong allowed id": (
        RecommendQuery("u1", allowed_item_ids=("x" * 300,)),
        "allowed_item_ids holds an id longer",
    ),
    "recent values without recent ids": (
        RecommendQuery("u1", recent_values=(1.0,)),
        "give one value per item or none",
    ),
    "NaN recent value": (
        RecommendQuery("u1", recent_item_ids=("i1",), recent_values=(math.nan,)),
        "finite",
    ),
    "infinite recent value": (
        RecommendQuery("u1", recent_item_ids=("i1",), recent_values=(-math.inf,)),
        "finite",
    ),
}


@pytest.mark.parametrize("case", sorted(QUERIES))
def test_query_table(case: str) -> None:
    query, message = QUERIES[case]
    if message is None:
        k = check_query(query, LIMITS)
        assert k == (query.k or DEFAULT_K)
    else:
        with pytest.raises(InvalidRequest, match=message):
            check_query(query, LIMITS)


SMALL = Limits(max_k=20, max_id_bytes=6, max_exclude=3, max_allowed=2, max_recent=2)
ids = st.text(max_size=4) | st.text(alphabet=" \t\n\u00a0é😀x", max_size=8)
id_lists = st.lists(ids, max_size=4).map(tuple)
floats = st.floats(allow_nan=True, allow_infinity=True, width=32)


def _expected_error(query: RecommendQuery, limits: Limits) -> bool:
    """The documented rules of RecommendRequest, written independently of check_query."""

    def too_long(text: str) -> bool:
        return len(text.encode("utf-8")) > limits.max_id_bytes

    lists = (
        (query.exclude_item_ids, limits.max_exclude),
        (query.allowed_item_ids, limits.max_allowed),
        (query.recent_item_ids, limits.max_recent),
    )
    return (
        query.user_id.strip() == ""
        or too_long(query.user_id)
        or not 0 <= query.k <= limits.max_k
        or any(len(values) > most or any(map(too_long, values)) for values, most in lists)
        or bool(query.recent_values)
        and (
            len(query.recent_values) != len(query.recent_item_ids)
            or not all(map(math.isfinite, query.recent_values))
        )
    )


@settings(max_examples=200, deadline=None)
@given(
    user_id=ids,
    k=st.integers(-(2**31), 2**31 - 1) | st.integers(-2, 25),
    exclude=id_lists,
    allowed=id_lists,
    recent=id_lists,
    values=st.lists(floats, max_size=3).map(tuple),
)
def test_check_query_accepts_exactly_the_documented_requests(
    user_id: str,
    k: int,
    exclude: tuple[str, ...],
    allowed: tuple[str, ...],
    recent: tuple[str, ...],
    values: tuple[float, ...],
) -> None:
    query = RecommendQuery(user_id, k, exclude, False, recent, values, allowed)
    if _expected_error(query, SMALL):
        with pytest.raises(InvalidRequest):
            check_query(query, SMALL)
    else:
        assert check_query(query, SMALL) == (k or DEFAULT_K)


# Inline ratings.


def _inline(values: list[float], users: list[str] | None = None) -> InlineSource:
    users = users or [f"u{n}" for n in range(len(values))]
    return InlineSource(users, [f"i{n}" for n in range(len(values))], values, [0] * len(values))


INLINE: dict[str, tuple[InlineSource, tuple[float, float] | None, str]] = {
    "no ratings": (_inline([]), None, "ratings is empty"),
    "NaN": (_inline([1.0, math.nan]), None, r"ratings\[1\].value must be finite"),
    "infinity": (_inline([math.inf]), None, "must be finite"),
    "minus infinity": (_inline([2.0, 3.0, -math.inf]), None, r"ratings\[2\]"),
    "above the range": (_inline([3.0, 5.5]), (1.0, 5.0), "outside the server's rating range"),
    "below the range": (_inline([0.0]), (1.0, 5.0), "outside"),
    "blank user id": (_inline([1.0], users=["  "]), None, r"ratings\[0\].user_id is required"),
    "empty user id": (_inline([1.0, 2.0], users=["a", ""]), None, r"ratings\[1\].user_id"),
}


@pytest.mark.parametrize("case", sorted(INLINE))
def test_inline_ratings_table(case: str) -> None:
    source, rating_range, message = INLINE[case]
    with pytest.raises(InvalidRequest, match=message):
        check_inline(source, rating_range)


def test_any_finite_value_is_valid_without_a_range() -> None:
    check_inline(_inline([-1e30, 0.0, 1e-30, 3.4e38]), None)
    check_inline(_inline([1.0, 5.0]), (1.0, 5.0))  # the range is inclusive


# Dataset paths: only files inside the data dir, after resolving links and "..".


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "r.csv").write_text("user_id,item_id,rating\na,b,1\n")
    (root / "sub" / "s.csv").write_text("user_id,item_id,rating\na,b,1\n")
    (tmp_path / "secret.csv").write_text("user_id,item_id,rating\nx,y,1\n")
    (tmp_path / "data-other").mkdir()
    (tmp_path / "data-other" / "o.csv").write_text("user_id,item_id,rating\nx,y,1\n")
    (root / "out-link.csv").symlink_to(tmp_path / "secret.csv")
    (root / "in-link.csv").symlink_to(root / "sub" / "s.csv")
    (root / "dir-link").symlink_to(tmp_path)
    (root / "hop.csv").symlink_to(root / "out-link.csv")
    (root / "dangling-out.csv").symlink_to(tmp_path / "nothing.csv")
    (root / "dangling-in.csv").symlink_to(root / "nothing.csv")
    return root


OUTSIDE = (InvalidRequest, "inside the server's data dir")
PATHS: dict[str, tuple[str, tuple[type[Exception], str] | None]] = {
    "plain file": ("r.csv", None),
    "file in a subfolder": ("sub/s.csv", None),
    "dot segments that stay inside": ("sub/../r.csv", None),
    "leading ./": ("./sub/./s.csv", None),
    "parent then back in": ("../data/r.csv", None),
    "link to a file inside": ("in-link.csv", None),
    "absolute path inside": ("{root}/sub/s.csv", None),
    "absolute path inside, with ..": ("{root}/sub/../r.csv", None),
    "one ..": ("../secret.csv", OUTSIDE),
    "a .. chain": ("sub/../../secret.csv", OUTSIDE),
    "a deep .. chain": ("../../../../../../../../etc/passwd", OUTSIDE),
    "a sibling with the same prefix": ("../data-other/o.csv", OUTSIDE),
    "absolute path outside": ("{root}/../secret.csv", OUTSIDE),
    "absolute system path": ("/etc/passwd", OUTSIDE),
    "link pointing out": ("out-link.csv", OUTSIDE),
    "link to a link pointing out": ("hop.csv", OUTSIDE),
    "through a directory link pointing out": ("dir-link/secret.csv", OUTSIDE),
    "dangling link pointing out": ("dangling-out.csv", OUTSIDE),
    "dangling link inside": ("dangling-in.csv", (NotFound, "does not exist")),
    "missing file": ("absent.csv", (NotFound, "does not exist")),
    "a directory": ("sub", (InvalidRequest, "not a regular file")),
    "the data dir itself": (".", (InvalidRequest, "not a regular file")),
    "NUL byte": ("r.csv\x00.txt", (InvalidRequest, "NUL")),
    "NUL byte alone": ("\x00", (InvalidRequest, "NUL")),
}


@pytest.mark.parametrize("case", sorted(PATHS))
def test_dataset_path_table(case: str, data_dir: Path) -> None:
    requested, expected = PATHS[case]
    requested = requested.replace("{root}", str(data_dir))
    if expected is None:
        resolved = resolve_dataset_path(data_dir, requested)
        assert resolved.is_file() and data_dir.resolve() in resolved.parents
        return
    kind, message = expected
    with pytest.raises(kind, match=message) as caught:
        resolve_dataset_path(data_dir, requested)
    assert str(data_dir.parent) not in str(caught.value)  # never the server's own paths


def test_a_data_dir_reached_through_a_link_still_confines(data_dir: Path, tmp_path: Path) -> None:
    linked = tmp_path / "linked-data"
    linked.symlink_to(data_dir)
    assert resolve_dataset_path(linked, "r.csv") == (data_dir / "r.csv").resolve()
    with pytest.raises(InvalidRequest, match="inside"):
        resolve_dataset_path(linked, "../secret.csv")


def test_no_data_dir_refuses_every_path() -> None:
    with pytest.raises(InvalidRequest, match="--data-dir"):
        resolve_dataset_path(None, "r.csv")


# Dataset files.

HEADER = b"user_id,item_id,rating\n"
FILES: dict[str, tuple[bytes | None, str, dict[str, Any], str]] = {
    "empty file": (b"", "csv", {}, "is empty"),
    "only blank lines": (b"\n \n\n", "csv", {}, "only blank lines"),
    "header only": (HEADER, "csv", {}, "has a header but no data rows"),
    "ml-csv header only": (b"userId,movieId,rating,timestamp\n", "ml-csv", {}, "no data rows"),
    "truncated mid-line": (HEADER + b"a,b,5\nc,d", "csv", {}, "line 3: expected 3 fields"),
    "u.data truncated mid-line": (b"1\t2\t5\t9\n3\t4", "ml-100k", {}, "line 2: expected 4"),
    "wrong separator": (b"user_id;item_id;rating\na;b;5\n", "csv", {}, "is the separator right"),
    "commas in u.data": (b"1,2,5,100\n", "ml-100k", {}, "separated by '\\\\t', found 1"),
    "single colons in ratings.dat": (b"1:2:5:100\n", "ml-dat", {}, "separated by '::'"),
    "Latin-1 bytes": (HEADER + "café,b,5\n".encode("latin-1"), "csv", {}, "not UTF-8: line 2"),
    "a directory": (None, "csv", {}, "is a directory"),
    "NaN rating": (HEADER + b"a,b,NaN\n", "csv", {}, "line 2: rating 'NaN' is not finite"),
    "infinite rating": (HEADER + b"a,b,inf\n", "csv", {}, "not finite"),
    "text rating": (HEADER + b"a,b,five\n", "csv", {}, "'five' is not a number"),
    "rating above the range": (
        HEADER + b"a,b,6\n",
        "csv",
        {"rating_range": (1.0, 5.0)},
        "outside the range",
    ),
    "blank user id": (HEADER + b"a,b,1\n \t,b,5\n", "csv", {}, "line 3: user id"),
    "missing column": (b"user,item_id,rating\na,b,5\n", "csv", {}, "no column 'user_id'"),
    "extra field": (HEADER + b"a,b,5,7\n", "csv", {}, "expected 3 fields"),
    "unclosed quote": (HEADER + b'"a,b,5\n', "csv", {}, "never closed"),
    "bad timestamp": (b"1\t2\t5\tnoon\n", "ml-100k", {}, "timestamp 'noon'"),
}


@pytest.mark.parametrize("case", sorted(FILES))
def test_dataset_file_table(case: str, tmp_path: Path) -> None:
    data, fmt, options, message = FILES[case]
    path = tmp_path / "ratings"
    if data is None:
        path.mkdir()
    else:
        path.write_bytes(data)
    with pytest.raises(DatasetError, match=message):
        load_ratings(path, fmt, **options)


def test_a_dangling_link_is_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="does not exist"):
        load_ratings(tmp_path / "link", "csv")


# Ids are opaque: any non-blank text survives CSV, the artifact and a request unchanged.

ODD_IDS = [
    "comma,inside",
    "tab\tinside",
    'double "quotes"',
    "single 'quotes'",
    "new\nline",
    "carriage\rreturn",
    "crlf\r\nend",
    "naïve café",
    "日本語",
    "emoji 😀",
    " leading and trailing ",
    "#hash",
    "semi;colon",
    "NaN",
    "0042",
]

text_ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda text: text.strip() != ""
)
row = st.tuples(
    text_ids,
    text_ids,
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**63), 2**63 - 1),
)


def _csv_bytes(rows: list[tuple[str, str, float, int]], separator: str = ",") -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=separator)  # "\r\n" ends: it then quotes any \r
    writer.writerow(["user_id", "item_id", "rating", "timestamp"])
    writer.writerows([(u, i, repr(r), t) for u, i, r, t in rows])
    return buffer.getvalue().encode("utf-8")


def _latest(rows: list[tuple[str, str, float, int]]) -> dict[tuple[str, str], float]:
    """The duplicate rule: the latest timestamp wins, then the last row."""
    kept: dict[tuple[str, str], tuple[int, float]] = {}
    for user, item, rating, stamp in rows:
        if (user, item) not in kept or stamp >= kept[(user, item)][0]:
            kept[(user, item)] = (stamp, rating)
    return {pair: rating for pair, (_, rating) in kept.items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(row, min_size=1, max_size=8), separator=st.sampled_from([",", "\t", ";"]))
def test_csv_files_round_trip_any_ids_and_values(
    rows: list[tuple[str, str, float, int]], separator: str, tmp_path_factory: Any
) -> None:
    path = tmp_path_factory.mktemp("csv") / "r.csv"
    path.write_bytes(_csv_bytes(rows, separator))
    frame = load_ratings(path, "csv", separator=separator, timestamp_column="timestamp")
    got = {(u, i): r for u, i, r in frame[["user_id", "item_id", "rating"]].itertuples(False)}
    assert got == _latest(rows)


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(row, min_size=1, max_size=8))
def test_inline_records_round_trip_any_ids_and_values(
    rows: list[tuple[str, str, float, int]],
) -> None:
    users, items, values, stamps = (list(column) for column in zip(*rows, strict=True))
    frame = ratings_from_records(users, items, values, stamps)
    got = {(u, i): r for u, i, r in frame[["user_id", "item_id", "rating"]].itertuples(False)}
    assert got == _latest(rows)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200), fmt=st.sampled_from(["csv", "ml-csv", "ml-100k", "ml-dat"]))
def test_arbitrary_bytes_load_or_fail_with_a_dataset_error(
    data: bytes, fmt: str, tmp_path_factory: Any
) -> None:
    path = tmp_path_factory.mktemp("bytes") / "r"
    path.write_bytes(data)
    try:
        frame = load_ratings(path, fmt)
    except DatasetError:
        return
    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert len(frame) > 0 and np.isfinite(frame["rating"]).all()


def test_odd_ids_round_trip_through_csv_artifact_and_requests(tmp_path: Path) -> None:
    rows = [
        (user, item, float(1 + (a + 2 * b) % 5), a * 100 + b)
        for a, user in enumerate(ODD_IDS)
        for b, item in enumerate(ODD_IDS)
        if (a + b) % 3
    ]
    path = tmp_path / "odd.csv"
    path.write_bytes(_csv_bytes(rows))
    frame = load_ratings(path, "csv", timestamp_column="timestamp")
    assert sorted(set(frame["user_id"])) == sorted(ODD_IDS)
    summary = train_and_save(frame, TINY, tmp_path / "models")
    artifact = read_artifact(summary.path)
    assert sorted(artifact.user_ids.all_ids()) == sorted(ODD_IDS)
    assert sorted(artifact.item_ids.all_ids()) == sorted(ODD_IDS)
    model = ServingModel.load(summary.path)
    for user in ODD_IDS:
        answer = recommend(model, RecommendQuery(user, k=50, include_seen=True), LIMITS)
        assert answer.source is Source.PERSONALIZED
        assert sorted(item for item, _ in answer.items) == sorted(ODD_IDS)
    similar = similar_items(model, "new\nline", 3, ("comma,inside",), LIMITS)
    assert {"new\nline", "comma,inside"}.isdisjoint(item for item, _ in similar)


# Degenerate but valid data trains a servable model.

DEGENERATE: dict[str, tuple[list[str], list[str], list[float]]] = {
    "one rating": (["a"], ["x"], [3.0]),
    "one user": (["a"] * 6, [f"i{n}" for n in range(6)], [1.0, 2.0, 3.0, 4.0, 5.0, 3.0]),
    "one item": ([f"u{n}" for n in range(6)], ["x"] * 6, [1.0, 2.0, 3.0, 4.0, 5.0, 3.0]),
    "every rating identical": (
        [f"u{n % 4}" for n in range(20)],
        [f"i{n % 5}" for n in range(20)],
        [4.0] * 20,
    ),
    "every rating zero": (
        [f"u{n % 4}" for n in range(20)],
        [f"i{n % 5}" for n in range(20)],
        [0.0] * 20,
    ),
    "negative ratings": (
        [f"u{n % 4}" for n in range(20)],
        [f"i{n % 5}" for n in range(20)],
        [-3.0, -1.0] * 10,
    ),
    "duplicate pairs": (["a", "a", "a", "b"], ["x", "x", "y", "x"], [1.0, 5.0, 2.0, 4.0]),
}


@pytest.mark.parametrize("validation", [None, 0.0])
@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_degenerate_data_trains_a_servable_model(
    case: str, validation: float | None, tmp_path: Path
) -> None:
    users, items, values = DEGENERATE[case]
    frame = ratings_from_records(users, items, values)
    config = TrainingConfig(factors=3, iterations=3, validation_fraction=validation)
    summary = train_and_save(frame, config, tmp_path / "models")
    assert summary.rating_count == len(set(zip(users, items, strict=True)))
    model = ServingModel.load(summary.path)
    answer = recommend(model, RecommendQuery(users[0], include_seen=True), LIMITS)
    assert answer.source is Source.PERSONALIZED and answer.items
    assert all(math.isfinite(score) for _, score in answer.items)
    if case == "every rating identical":
        assert [score for _, score in answer.items] == pytest.approx([4.0] * 5, abs=1e-3)
    popular = recommend(model, RecommendQuery("a stranger"), LIMITS)
    assert popular.source is Source.POPULAR and popular.items
    assert similar_items(model, items[0], 5, (), LIMITS) is not None


# Training jobs that fail: a clear reason, and nothing half-made left behind.


def test_ratings_that_overflow_training_fail_clearly_and_leave_no_version(
    shared_model: Any, tmp_path: Path
) -> None:
    store = ModelStore(tmp_path / "models")
    values = [3e38, -3e38] * 10
    source = InlineSource(
        [f"u{n % 4}" for n in range(20)], [f"i{n % 5}" for n in range(20)], values, [0] * 20
    )
    check_inline(source, None)  # finite, so the call itself is accepted
    with pytest.raises(TrainingFailed, match="training overflowed: .* magnitude 3e.38.*rescale"):
        training_job(store, source, TINY)(lambda done, total: None)
    assert list_versions(store.model_dir) == [] and store.current is None


def test_a_file_with_ids_longer_than_requests_allow_fails(tmp_path: Path) -> None:
    (tmp_path / "long.csv").write_bytes(HEADER + b"a,b,1\n" + b"u" * 300 + b",b,2\n")
    source = FileSource(tmp_path / "long.csv", "long.csv", "csv")
    store = ModelStore(tmp_path / "models")
    with pytest.raises(InvalidRequest, match="long.csv: the user id 'uuu.*--max-id-bytes"):
        training_job(store, source, TINY, max_id_bytes=256)(lambda done, total: None)
    assert list_versions(store.model_dir) == []


def test_a_failed_save_reports_the_cause_without_server_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mfrec.training.pipeline as pipeline

    def full_disk(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, os.strerror(28), str(tmp_path / "models" / ".tmp-x"))

    monkeypatch.setattr(pipeline, "write_artifact", full_disk)
    store = ModelStore(tmp_path / "models")
    source = _inline([1.0, 2.0, 3.0])
    with pytest.raises(TrainingFailed, match="saving the model failed: No space left") as caught:
        training_job(store, source, TINY)(lambda done, total: None)
    assert str(tmp_path) not in str(caught.value)


def test_values_in_a_file_outside_the_rating_range_fail_the_job(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_bytes(HEADER + b"a,b,1\nc,d,9\n")
    source = FileSource(tmp_path / "r.csv", "r.csv", "csv")
    store = ModelStore(tmp_path / "models")
    with pytest.raises(DatasetError, match="r.csv, line 3: rating 9.0 is outside") as caught:
        training_job(store, source, TINY, rating_range=(1.0, 5.0))(lambda done, total: None)
    assert str(tmp_path) not in str(caught.value)


def test_frames_from_odd_records_keep_their_dtypes() -> None:
    frame = ratings_from_records(["a", "b"], ["x", "y"], [1, 2.5], [0, 7])
    assert frame["rating"].dtype == np.float64 and frame["timestamp"].dtype == np.int64
    assert isinstance(frame, pd.DataFrame)
