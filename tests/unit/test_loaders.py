"""Tests of the rating loaders: every format, exact ids, malformed files and the duplicate rule."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mfrec.training.loaders import (
    COLUMNS,
    FORMATS,
    DatasetError,
    load_ratings,
    ratings_from_records,
)


def _write(tmp_path: Path, content: bytes | str, name: str = "ratings.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def _rows(frame: pd.DataFrame) -> list[tuple[str, str, float, int]]:
    return list(frame.itertuples(index=False, name=None))


def _assert_standard(frame: pd.DataFrame) -> None:
    assert tuple(frame.columns) == COLUMNS
    assert pd.api.types.is_string_dtype(frame["user_id"].dtype)
    assert pd.api.types.is_string_dtype(frame["item_id"].dtype)
    assert frame["rating"].dtype == np.float64
    assert frame["timestamp"].dtype == np.int64
    assert isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0


def _error(path: Path, fmt: str, **options: object) -> str:
    with pytest.raises(DatasetError) as caught:
        load_ratings(path, fmt, **options)  # type: ignore[arg-type]
    message = str(caught.value)
    assert str(path) in message
    return message


# Formats.


def test_formats_constant_lists_the_four_formats() -> None:
    assert FORMATS == ("ml-100k", "ml-csv", "ml-dat", "csv")


def test_ml_100k_keeps_ids_as_written(tmp_path: Path) -> None:
    path = _write(tmp_path, "196\t242\t3\t881250949\n007\tNA\t4.5\t12\nnull\t0x1\t1\t0\n")
    frame = load_ratings(path, "ml-100k")
    _assert_standard(frame)
    assert _rows(frame) == [
        ("196", "242", 3.0, 881250949),
        ("007", "NA", 4.5, 12),
        ("null", "0x1", 1.0, 0),
    ]


def test_ml_100k_reads_crlf_and_skips_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "\r\n1\t2\t3\t4\r\n\r\n   \r\n5\t6\t2\t8\r\n")
    assert _rows(load_ratings(path, "ml-100k")) == [("1", "2", 3.0, 4), ("5", "6", 2.0, 8)]


def test_ml_100k_keeps_quotes_and_inner_spaces_literally(tmp_path: Path) -> None:
    path = _write(tmp_path, '"a"\t b \t3\t4\n')
    assert _rows(load_ratings(path, "ml-100k")) == [('"a"', " b ", 3.0, 4)]


def test_ml_csv_reads_the_movielens_header_with_crlf(tmp_path: Path) -> None:
    content = "userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n1,3,0.5,964981247\r\n"
    frame = load_ratings(_write(tmp_path, content, "ratings.csv"), "ml-csv")
    _assert_standard(frame)
    assert _rows(frame) == [("1", "1", 4.0, 964982703), ("1", "3", 0.5, 964981247)]


def test_ml_dat_splits_on_double_colons_only(tmp_path: Path) -> None:
    content = "1::1193::5::978300760\na:b::x\x1fy::3::1\n"
    frame = load_ratings(_write(tmp_path, content, "ratings.dat"), "ml-dat")
    assert _rows(frame) == [("1", "1193", 5.0, 978300760), ("a:b", "x\x1fy", 3.0, 1)]


def test_csv_defaults_and_no_timestamp_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "item_id,extra,user_id,rating\ni1,zz,u1,2.5\n")
    frame = load_ratings(path, "csv")
    _assert_standard(frame)
    assert _rows(frame) == [("u1", "i1", 2.5, 0)]


def test_csv_named_columns_and_tab_separator(tmp_path: Path) -> None:
    path = _write(tmp_path, "who\twhat\tstars\twhen\nu 1\ti,1\t5\t17\n")
    frame = load_ratings(
        path,
        "csv",
        separator="\t",
        user_column="who",
        item_column="what",
        rating_column="stars",
        timestamp_column="when",
    )
    assert _rows(frame) == [("u 1", "i,1", 5.0, 17)]


def test_csv_round_trips_hard_quoted_ids(tmp_path: Path) -> None:
    ids = ["a,b", 'say "hi"', "two\nlines", "tab\there", "Misérables ☃", "  padded  ", "NA"]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["user_id", "item_id", "rating"])
    for number, value in enumerate(ids):
        writer.writerow([value, f"item {value}", number % 5 + 1])
    frame = load_ratings(_write(tmp_path, buffer.getvalue(), "r.csv"), "csv")
    assert frame["user_id"].tolist() == ids
    assert frame["item_id"].tolist() == [f"item {value}" for value in ids]
    assert frame["rating"].tolist() == [number % 5 + 1.0 for number in range(len(ids))]


def test_csv_ignores_a_utf8_byte_order_mark(tmp_path: Path) -> None:
    path = _write(tmp_path, b"\xef\xbb\xbfuser_id,item_id,rating\nu,i,1\n")
    assert _rows(load_ratings(path, "csv")) == [("u", "i", 1.0, 0)]


def test_integral_float_timestamps_are_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path, "1\t2\t3\t5.0\n")
    assert load_ratings(path, "ml-100k")["timestamp"].tolist() == [5]


# Malformed files: the message names the file and the line.


def test_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in _error(tmp_path / "absent.data", "ml-100k")


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in _error(tmp_path, "ml-100k")


def test_empty_file(tmp_path: Path) -> None:
    assert "empty (0 bytes)" in _error(_write(tmp_path, b""), "ml-100k")


def test_only_blank_lines(tmp_path: Path) -> None:
    assert "no data" in _error(_write(tmp_path, "\n\n"), "ml-100k")


def test_header_only(tmp_path: Path) -> None:
    path = _write(tmp_path, "userId,movieId,rating,timestamp\r\n")
    assert "header but no data rows" in _error(path, "ml-csv")


def test_missing_columns_are_named_with_the_header(tmp_path: Path) -> None:
    path = _write(tmp_path, "userId,itemId,rating\n1,2,3\n")
    message = _error(path, "ml-csv")
    assert "'movieId', 'timestamp'" in message
    assert "'userId', 'itemId', 'rating'" in message


def test_wrong_separator_in_csv_shows_the_single_header_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "user_id\titem_id\trating\n1\t2\t3\n")
    message = _error(path, "csv")
    assert "'user_id\\titem_id\\trating'" in message and "separator" in message


@pytest.mark.parametrize(
    ("fmt", "content", "line", "fragment"),
    [
        ("ml-100k", "1\t2\t3\t4\n5\t6\t7", 2, "expected 4 fields separated by '\\t', found 3"),
        ("ml-100k", "1\t2\t3\t4\n5\t6\t7\t8\t9\n", 2, "found 5"),
        ("ml-100k", "1,2,3,4\n5,6,7,8\n", 1, "expected 4 fields"),
        ("ml-100k", "1\t2\t3\t4\n\n\n1\t2\t3\n", 4, "found 3"),
        ("ml-dat", "1::2::3::4\n1::2::3\n", 2, "separated by '::', found 3"),
        ("ml-csv", "userId,movieId,rating,timestamp\n1,2,3\n", 2, "expected 4 fields"),
        ("csv", "user_id,item_id,rating\n1,2,3\n1,2,3,4\n", 3, "found 4"),
        ("csv", "user_id,item_id,rating\n1,2,3,4\n1,2,3\n", 2, "found 4"),
        ("csv", 'user_id,item_id,rating\n"a\nb",2,3\n1,2\n', 4, "found 2"),
        ("csv", 'user_id,item_id,rating\n1,x"y,3\n1,2,3,4\n', 3, "found 4"),
        ("csv", 'user_id,item_id,rating\n1,2,3\n"open,2,3\n', 3, "never closed"),
        ("ml-100k", "1\t2\tabc\t4\n", 1, "rating 'abc' is not a number"),
        ("ml-100k", "1\t2\t3\t4\n1\t3\t\t4\n", 2, "rating '' is not a number"),
        ("ml-100k", "1\t2\t3\t4\n1\t3\tNaN\t4\n", 2, "rating 'NaN' is not finite"),
        ("ml-100k", "1\t2\t3\t4\n1\t3\tinf\t4\n", 2, "rating inf is not finite"),
        ("ml-100k", "1\t2\t3\t4\n\t3\t3\t4\n", 2, "user id is empty"),
        ("ml-100k", "1\t2\t3\t4\n1\t\t3\t4\n", 2, "item id is empty"),
        ("ml-100k", "1\t2\t3\t4\n  \t1\t3\t4\n", 2, "user id '  ' is only whitespace"),
        ("csv", 'user_id,item_id,rating\n1,"\t ",3\n', 2, "item id '\\t ' is only whitespace"),
        ("ml-100k", "1\t2\t3\t4\n1\t3\t3\t4.5\n", 2, "timestamp '4.5' is not a 64-bit integer"),
        ("ml-100k", "1\t2\t3\tlater\n", 1, "timestamp 'later' is not a 64-bit integer"),
        ("ml-100k", "1\t2\t3\t99999999999999999999\n", 1, "not a 64-bit integer"),
        ("ml-csv", "userId,movieId,rating,timestamp\n1,2,3,\n", 2, "timestamp '' is not"),
    ],
)
def test_malformed_rows_name_the_line(
    tmp_path: Path, fmt: str, content: str, line: int, fragment: str
) -> None:
    message = _error(_write(tmp_path, content), fmt)
    assert f", line {line}: " in message
    assert fragment in message


def test_the_first_bad_line_is_reported(tmp_path: Path) -> None:
    path = _write(tmp_path, "1\t2\t3\tx\n\t2\t3\t4\n")
    message = _error(path, "ml-100k")
    assert "line 1: timestamp 'x'" in message


def test_line_numbers_count_newlines_inside_quoted_fields(tmp_path: Path) -> None:
    content = 'user_id,item_id,rating\n"multi\nline\nid",i,4\nu,i2,bad\n'
    assert "line 5: rating 'bad'" in _error(_write(tmp_path, content), "csv")


def test_latin1_bytes_are_reported_as_not_utf8(tmp_path: Path) -> None:
    path = _write(tmp_path, "1\t2\t3\t4\nMis\xe9rables\t2\t3\t4\n".encode("latin-1"))
    message = _error(path, "ml-100k")
    assert "is not UTF-8" in message and "line 2" in message


def test_rating_range_rejects_values_outside(tmp_path: Path) -> None:
    path = _write(tmp_path, "1\t2\t1\t4\n1\t3\t5\t4\n2\t2\t5.5\t4\n")
    message = _error(path, "ml-100k", rating_range=(1.0, 5.0))
    assert "line 3: rating 5.5 is outside the range [1, 5]" in message
    assert len(load_ratings(path, "ml-100k", rating_range=(1.0, 5.5))) == 3


def test_unknown_format_and_misplaced_options() -> None:
    with pytest.raises(DatasetError, match="unknown ratings format"):
        load_ratings("x", "ml-1m")
    with pytest.raises(DatasetError, match="apply to fmt 'csv'"):
        load_ratings("x", "ml-100k", separator=",")
    with pytest.raises(DatasetError, match="one ASCII character"):
        load_ratings("x", "csv", separator="::")


# Duplicates.


def test_duplicates_keep_the_latest_timestamp_then_the_last_row(tmp_path: Path) -> None:
    content = (
        "user_id,item_id,rating,ts\n"
        "a,x,1,10\n"  # superseded by the later timestamp below
        "b,y,2,5\n"
        "a,x,2,30\n"  # latest: kept, in this position
        "b,y,3,5\n"  # same timestamp as the row above it: the last one wins
        "a,x,3,20\n"
        "c,z,4,1\n"
    )
    frame = load_ratings(_write(tmp_path, content), "csv", timestamp_column="ts")
    _assert_standard(frame)
    assert _rows(frame) == [("a", "x", 2.0, 30), ("b", "y", 3.0, 5), ("c", "z", 4.0, 1)]


def test_duplicates_without_timestamps_keep_the_last_row(tmp_path: Path) -> None:
    content = "user_id,item_id,rating\nu,i,1\nu,j,2\nu,i,5\n"
    assert _rows(load_ratings(_write(tmp_path, content), "csv")) == [
        ("u", "j", 2.0, 0),
        ("u", "i", 5.0, 0),
    ]


# Records sent inline.


def test_records_build_the_standard_frame() -> None:
    frame = ratings_from_records(["u1", "007", "u1"], ["i", "i", "i"], [1, 2.5, 4], [3, 1, 2])
    _assert_standard(frame)
    assert _rows(frame) == [("u1", "i", 1.0, 3), ("007", "i", 2.5, 1)]


def test_records_accept_numpy_arrays() -> None:
    frame = ratings_from_records(
        np.array(["u", "v"]), np.array(["i", "i"]), np.array([1.0, 2.0]), np.array([5, 6])
    )
    assert _rows(frame) == [("u", "i", 1.0, 5), ("v", "i", 2.0, 6)]
    assert all(type(value) is str for value in frame["user_id"])


def test_records_without_timestamps_get_zero() -> None:
    assert ratings_from_records(["u"], ["i"], [3.0])["timestamp"].tolist() == [0]
    assert ratings_from_records(["u"], ["i"], [3.0], [])["timestamp"].tolist() == [0]


@pytest.mark.parametrize(
    ("users", "items", "values", "stamps", "fragment"),
    [
        (["a", ""], ["x", "y"], [1, 2], None, "rating 1: user id is empty"),
        (["a", "b"], ["x", " "], [1, 2], None, "rating 1: item id ' ' is only whitespace"),
        (["a", 7], ["x", "y"], [1, 2], None, "rating 1: the user id must be a string, not int"),
        (["a", "b"], ["x", "y"], [1, float("nan")], None, "rating 1: rating nan is not finite"),
        (["a", "b"], ["x", "y"], [float("-inf"), 1], None, "rating 0: rating -inf is not finite"),
        (["a", "b"], ["x", "y"], [1, "four"], None, "rating 1: rating 'four' is not a number"),
        (["a", "b"], ["x", "y"], [1, 2], [1, 1.5], "rating 1: timestamp 1.5 is not a 64-bit"),
        (["a", "b"], ["x", "y"], [1, 2], [1, 2**70], "rating 1: timestamp"),
        (["a"], ["x", "y"], [1, 2], None, "differ in length: 1 user ids, 2 item ids"),
        ([], [], [], None, "no ratings"),
    ],
)
def test_records_are_validated_by_index(
    users: list[object], items: list[str], values: list[object], stamps: object, fragment: str
) -> None:
    with pytest.raises(DatasetError) as caught:
        ratings_from_records(users, items, values, stamps)  # type: ignore[arg-type]
    assert fragment in str(caught.value)


def test_records_check_the_rating_range() -> None:
    with pytest.raises(DatasetError, match="rating 2: rating 0.0 is outside the range"):
        ratings_from_records(["a", "b", "c"], ["x"] * 3, [1.0, 5.0, 0.0], rating_range=(1, 5))


# Properties.

_ID_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=12,
).filter(lambda value: value.strip() != "")


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pairs=st.lists(st.tuples(_ID_TEXT, _ID_TEXT), min_size=1, max_size=20, unique=True),
    separator=st.sampled_from([",", "\t", ";"]),
    terminator=st.sampled_from(["\n", "\r\n"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
)
def test_csv_ids_written_by_the_csv_module_round_trip(
    tmp_path: Path, pairs: list[tuple[str, str]], separator: str, terminator: str, quoting: int
) -> None:
    # The csv module leaves a lone "\r" unquoted unless it is part of the line terminator,
    # which no reader can then tell from a line break.
    bare_cr = quoting == csv.QUOTE_MINIMAL and terminator == "\n"
    assume(not (bare_cr and any("\r" in u + i for u, i in pairs)))
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=separator, lineterminator=terminator, quoting=quoting)
    writer.writerow(["user_id", "item_id", "rating", "ts"])
    for number, (user, item) in enumerate(pairs):
        writer.writerow([user, item, number / 4, number])
    path = _write(tmp_path, buffer.getvalue(), "property.csv")
    frame = load_ratings(path, "csv", separator=separator, timestamp_column="ts")
    assert [(u, i) for u, i, _, _ in _rows(frame)] == pairs
    assert frame["rating"].tolist() == [number / 4 for number in range(len(pairs))]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(_ID_TEXT, _ID_TEXT, st.integers(0, 10), st.integers(0, 3)),
        min_size=1,
        max_size=30,
    )
)
def test_csv_duplicates_keep_the_latest_then_last_row(
    tmp_path: Path, rows: list[tuple[str, str, int, int]]
) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["user_id", "item_id", "rating", "timestamp"])
    writer.writerows(rows)
    frame = load_ratings(
        _write(tmp_path, buffer.getvalue(), "dups.csv"), "csv", timestamp_column="timestamp"
    )
    best: dict[tuple[str, str], int] = {}
    for position, (user, item, _, stamp) in enumerate(rows):
        kept = best.get((user, item))
        if kept is None or stamp >= rows[kept][3]:
            best[(user, item)] = position
    expected = [rows[p] for p in sorted(best.values())]
    assert _rows(frame) == [(u, i, float(r), t) for u, i, r, t in expected]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ids=st.lists(
        st.text(
            alphabet=st.characters(
                blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters=":\t"
            ),
            min_size=1,
            max_size=8,
        ).filter(lambda value: value.strip() != ""),
        min_size=1,
        max_size=15,
        unique=True,
    )
)
def test_plain_formats_keep_ids_exactly(tmp_path: Path, ids: list[str]) -> None:
    tab = "".join(f"{value}\titem\t3\t{n}\n" for n, value in enumerate(ids))
    colons = "".join(f"{value}::item::3::{n}\n" for n, value in enumerate(ids))
    assert load_ratings(_write(tmp_path, tab, "u.data"), "ml-100k")["user_id"].tolist() == ids
    assert load_ratings(_write(tmp_path, colons, "r.dat"), "ml-dat")["user_id"].tolist() == ids
