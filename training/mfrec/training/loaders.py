"""Rating loaders: MovieLens and delimited rating files read into one validated ratings frame.

Every loader returns the same frame: ``user_id`` and ``item_id`` (str, kept exactly as
written), ``rating`` (float64) and ``timestamp`` (int64, 0 when the source has none), one row
per (user, item) pair, in source order, with a fresh RangeIndex.

Parsing is vectorized: the pandas C parser reads ids as strings and numbers as numbers, and
numpy masks check them. A slower pass (numbers as strings, a per-line scan) runs only when a
file is malformed, to name the first bad line.
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

import numpy as np
import numpy.typing as npt
import pandas as pd

FORMATS = ("ml-100k", "ml-csv", "ml-dat", "csv")
COLUMNS = ("user_id", "item_id", "rating", "timestamp")

_NAN_SPELLINGS = ("nan", "+nan", "-nan")
# Single-byte stand-ins for the two-character ml-dat separator, which the C parser cannot read.
_STAND_INS = ("\x1f", "\x1e", "\x1d", "\x1c")
_INT64_MAX = np.iinfo(np.int64).max
_QUOTE = ord('"')

Lines = npt.NDArray[np.int64]


class DatasetError(ValueError):
    """Ratings that cannot be read: a bad file, a malformed row, or an invalid value."""


@dataclass(frozen=True)
class _Layout:
    """How a format writes ratings: separator, header, quoting and the four source columns."""

    separator: str
    header: bool
    quoted: bool
    user: str | int
    item: str | int
    rating: str | int
    timestamp: str | int | None
    shown_separator: str = ""

    @property
    def expected_fields(self) -> int | None:
        """The field count of every line; None when the header decides it."""
        return None if self.header else 4


_MOVIELENS_LAYOUTS = {
    "ml-100k": _Layout("\t", False, False, 0, 1, 2, 3, "'\\t'"),
    "ml-csv": _Layout(",", True, True, "userId", "movieId", "rating", "timestamp", "','"),
    "ml-dat": _Layout("::", False, False, 0, 1, 2, 3, "'::'"),
}


@dataclass(frozen=True)
class _Check:
    """A per-row validation: mask is True where a row fails; describe(row) says why."""

    mask: npt.NDArray[np.bool_]
    describe: Callable[[int], str]


def load_ratings(
    path: str | os.PathLike[str],
    fmt: str,
    *,
    separator: str | None = None,
    user_column: str | None = None,
    item_column: str | None = None,
    rating_column: str | None = None,
    timestamp_column: str | None = None,
    rating_range: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Reads a ratings file into the standard ratings frame (columns COLUMNS).

    Formats: ``ml-100k`` (tab-separated u.data, no header), ``ml-csv`` (MovieLens
    ratings.csv with its ``userId,movieId,rating,timestamp`` header), ``ml-dat``
    (``user::item::rating::timestamp``, no header) and ``csv`` (any delimited file with a
    header, quoted as the csv module writes it; the separator and column options apply to it
    only). Ids are opaque strings kept exactly as written. Timestamps must be integers (an
    integral value such as ``5.0`` is accepted). Blank lines are skipped.

    Duplicates: when a (user, item) pair occurs more than once, the row with the latest
    timestamp is kept, and among equal timestamps the last one in the file. Kept rows stay in
    file order.

    Args:
        path: the ratings file, UTF-8 encoded (a leading byte-order mark is ignored).
        fmt: one of FORMATS.
        separator: csv only; one ASCII character, "," by default ("\\t" for tab-separated).
        user_column: csv only; the header name of the user ids, "user_id" by default.
        item_column: csv only; the header name of the item ids, "item_id" by default.
        rating_column: csv only; the header name of the ratings, "rating" by default.
        timestamp_column: csv only; the header name of the timestamps; none by default.
        rating_range: inclusive (min, max) every rating must lie in; unchecked when None.

    Raises:
        DatasetError: the format or options are unknown, or the file is missing, unreadable,
            not UTF-8, empty or malformed, or holds an invalid value; the message names the
            file and, for a bad row, its 1-based line.
    """
    layout = _layout(fmt, separator, user_column, item_column, rating_column, timestamp_column)
    _check_range_argument(rating_range)
    name = os.fspath(path)
    data = _read_bytes(Path(path), name)
    text = _decode(data, name)
    if layout.separator == "::":
        data, text, layout = _with_stand_in(data, text, layout, name)
    raw = _parse(text, layout, name, typed=True)
    _check_field_counts(data, raw, layout, name)
    columns = _select(raw, layout, name)
    return _validated(*columns, rating_range, _LineMap(data, layout, name, len(raw)).where)


def ratings_from_records(
    user_ids: Sequence[str],
    item_ids: Sequence[str],
    values: Sequence[float],
    timestamps: Sequence[int] | None = None,
    *,
    rating_range: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Builds the standard ratings frame from in-memory lists (ratings sent inline).

    Applies the same checks and the same duplicate rule as load_ratings.

    Args:
        user_ids: one user id per rating.
        item_ids: one item id per rating.
        values: one rating value per rating.
        timestamps: one integer timestamp per rating; None or empty means all 0.
        rating_range: inclusive (min, max) every rating must lie in; unchecked when None.

    Raises:
        DatasetError: the lists are empty or of different lengths, or a value is invalid; the
            message names the 0-based record index ("rating 17: ...").
    """
    _check_range_argument(rating_range)
    count = len(user_ids)
    if count == 0:
        raise DatasetError("no ratings were given")
    stamps: Sequence[int] = [0] * count if timestamps is None or not len(timestamps) else timestamps
    if len({count, len(item_ids), len(values), len(stamps)}) != 1:
        raise DatasetError(
            f"the rating lists differ in length: {count} user ids, {len(item_ids)} item ids, "
            f"{len(values)} values, {len(stamps)} timestamps"
        )
    users = _string_series(user_ids, "user id")
    items = _string_series(item_ids, "item id")
    return _validated(
        users, items, _numbers(values), _numbers(stamps), rating_range, lambda row: f"rating {row}"
    )


# Options and file access.


def _layout(
    fmt: str,
    separator: str | None,
    user_column: str | None,
    item_column: str | None,
    rating_column: str | None,
    timestamp_column: str | None,
) -> _Layout:
    if fmt not in FORMATS:
        raise DatasetError(f"unknown ratings format {fmt!r}; use one of {', '.join(FORMATS)}")
    options = (separator, user_column, item_column, rating_column, timestamp_column)
    if fmt != "csv":
        if any(option is not None for option in options):
            raise DatasetError(f"the separator and column options apply to fmt 'csv', not {fmt!r}")
        return _MOVIELENS_LAYOUTS[fmt]
    sep = "," if separator is None else separator
    if len(sep) != 1 or not sep.isascii() or sep in '"\r\n':
        raise DatasetError(f"the csv separator must be one ASCII character, not {sep!r}")
    columns = (user_column or "user_id", item_column or "item_id", rating_column or "rating")
    return _Layout(sep, True, True, *columns, timestamp_column or None, repr(sep))


def _check_range_argument(rating_range: tuple[float, float] | None) -> None:
    if rating_range is None:
        return
    low, high = rating_range
    if not (np.isfinite(low) and np.isfinite(high) and low <= high):
        raise ValueError(f"rating_range must be finite (min, max) with min <= max: {rating_range}")


def _read_bytes(path: Path, name: str) -> bytes:
    if path.is_dir():
        raise DatasetError(f"{name} is a directory, not a ratings file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{name} does not exist") from None
    except OSError as error:
        raise DatasetError(f"{name} cannot be read: {error.strerror or error}") from None
    if not data:
        raise DatasetError(f"{name} is empty (0 bytes)")
    return data


def _decode(data: bytes, name: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DatasetError(
            f"{name} is not UTF-8: line {line} has the byte 0x{data[error.start]:02x}; "
            "re-encode the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def _with_stand_in(
    data: bytes, text: str, layout: _Layout, name: str
) -> tuple[bytes, str, _Layout]:
    stand_in = next((c for c in _STAND_INS if c not in text), None)
    if stand_in is None:
        raise DatasetError(f"{name} holds the control characters \\x1c to \\x1f; not ml-dat")
    replaced = data.replace(layout.separator.encode(), stand_in.encode())
    return replaced, text.replace(layout.separator, stand_in), replace(layout, separator=stand_in)


# Parsing and field counts.


def _parse(text: str, layout: _Layout, name: str, *, typed: bool) -> pd.DataFrame:
    """Parses the text; typed reads ratings and timestamps as numbers, falling back to str."""
    numbers = {layout.rating: "float64"}
    if layout.timestamp is not None:
        numbers[layout.timestamp] = "int64"
    dtype: dict[str | int, str] = defaultdict(lambda: "str")
    if not layout.header:
        dtype = {column: "str" for column in range(4)}
    if typed:
        dtype.update(numbers)
    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=layout.separator,
            header=0 if layout.header else None,
            dtype=dtype,
            keep_default_na=False,
            na_filter=False,
            quoting=csv.QUOTE_MINIMAL if layout.quoted else csv.QUOTE_NONE,
            engine="c",
            low_memory=False,
        )
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{name} contains no data, only blank lines") from None
    except pd.errors.ParserError as error:
        _raise_parser_error(text, layout, name, error)
    except (ValueError, OverflowError) as error:
        # A number column holds text (or a huge integer): read strings and locate the row.
        if not typed:
            raise DatasetError(f"{name} cannot be parsed: {error}") from None
        return _parse(text, layout, name, typed=False)


def _raise_parser_error(
    text: str, layout: _Layout, name: str, error: pd.errors.ParserError
) -> NoReturn:
    data = text.encode("utf-8")
    lines, counts = _record_table(data, layout)
    expected = layout.expected_fields or (int(counts[0]) if counts.size else 0)
    unclosed = None
    quotes_open = layout.quoted and data.count(b'"') % 2 == 1
    if quotes_open and _regular_quotes(np.frombuffer(data, np.uint8), ord(layout.separator)):
        # Records from the unclosed quote on are one run-on field; count only those before it.
        unclosed = data.count(b"\n", 0, data.rfind(b'"')) + 1
        lines, counts = lines[lines < unclosed], counts[lines < unclosed]
    _raise_bad_count(lines, counts, expected, layout, name)
    if unclosed is not None:
        raise DatasetError(f"{name}, line {unclosed}: a quoted field is never closed") from None
    raise DatasetError(f"{name} cannot be parsed: {error}") from None


def _check_field_counts(data: bytes, raw: pd.DataFrame, layout: _Layout, name: str) -> None:
    expected = layout.expected_fields or raw.shape[1]
    # The parser pads short rows with empty fields and may turn one extra field into an index.
    regular = isinstance(raw.index, pd.RangeIndex) and raw.shape[1] == expected
    if regular and not (layout.quoted and b'"' in data):
        # Without quotes every separator splits fields, so the total count decides.
        records = len(raw) + int(layout.header)
        if data.count(layout.separator.encode()) == (expected - 1) * records:
            return
    lines, counts = _record_table(data, layout)
    _raise_bad_count(lines, counts, expected, layout, name)
    if not regular:
        raise DatasetError(f"{name} has rows with more fields than its first line")


def _raise_bad_count(
    lines: Lines, counts: Lines, expected: int, layout: _Layout, name: str
) -> None:
    bad = np.flatnonzero(counts != expected)
    if bad.size:
        row = int(bad[0])
        raise DatasetError(
            f"{name}, line {int(lines[row])}: expected {expected} fields separated by "
            f"{layout.shown_separator}, found {int(counts[row])}"
        )


def _record_table(data: bytes, layout: _Layout) -> tuple[Lines, Lines]:
    """Returns the first line number and the field count of every non-blank record."""
    b = np.frombuffer(data, dtype=np.uint8)
    if layout.quoted and not _regular_quotes(b, ord(layout.separator)):
        return _csv_module_table(data, layout.separator)
    ends = b == ord("\n")
    lone_cr = b == ord("\r")
    lone_cr[:-1] &= ~ends[1:]
    ends |= lone_cr
    seps = b == ord(layout.separator)
    all_ends = np.flatnonzero(ends)
    if layout.quoted:
        # With quotes only at field edges, a byte is quoted when an odd number precede it.
        inside = (np.cumsum(b == _QUOTE, dtype=np.uint8) & 1).astype(bool)
        ends &= ~inside
        seps &= ~inside
    stops = np.append(np.flatnonzero(ends), b.size)
    starts = np.concatenate(([0], stops[:-1] + 1))
    sep_positions = np.flatnonzero(seps)
    counts = np.searchsorted(sep_positions, stops) - np.searchsorted(sep_positions, starts) + 1
    keep = ~_blank(data, starts, stops, counts, layout.separator)
    lines = np.searchsorted(all_ends, starts) + 1
    return lines[keep].astype(np.int64), counts[keep].astype(np.int64)


def _regular_quotes(b: npt.NDArray[np.uint8], separator: int) -> bool:
    """Tells whether every quote opens after a field edge and closes before one."""
    quotes = np.flatnonzero(b == _QUOTE)
    edges = np.array([separator, ord("\n"), ord("\r"), _QUOTE], dtype=np.uint8)
    opens, closes = quotes[0::2], quotes[1::2]
    opens_ok = np.isin(b[np.maximum(opens - 1, 0)], edges) | (opens == 0)
    closes_ok = np.isin(b[np.minimum(closes + 1, b.size - 1)], edges) | (closes == b.size - 1)
    return bool(opens_ok.all() and closes_ok.all())


def _blank(
    data: bytes, starts: Lines, stops: Lines, counts: Lines, separator: str
) -> npt.NDArray[np.bool_]:
    """Marks the records made of spaces and tabs only, which the parser skips."""
    blank = stops <= starts
    blank_chars = "".join(c for c in " \t\r" if c != separator).encode()
    for index in np.flatnonzero((counts == 1) & ~blank):
        blank[index] = not data[starts[index] : stops[index]].strip(blank_chars)
    return blank


def _csv_module_table(data: bytes, separator: str) -> tuple[Lines, Lines]:
    """Record lines and field counts by the csv module, for quotes inside unquoted fields."""
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    lines: list[int] = []
    counts: list[int] = []
    start = 1
    for row in reader:
        if len(row) > 1 or "".join(row).strip(" \t\r"):
            lines.append(start)
            counts.append(len(row))
        start = reader.line_num + 1
    return np.array(lines, dtype=np.int64), np.array(counts, dtype=np.int64)


class _LineMap:
    """Maps a data row to the line it starts on; scans the file only when an error needs it."""

    def __init__(self, data: bytes, layout: _Layout, name: str, rows: int) -> None:
        self._data, self._layout, self._name, self._rows = data, layout, name, rows

    def where(self, row: int) -> str:
        lines = _record_table(self._data, self._layout)[0][int(self._layout.header) :]
        if lines.size != self._rows:
            return f"{self._name}, data row {row + 1}"
        return f"{self._name}, line {int(lines[row])}"


def _select(
    raw: pd.DataFrame, layout: _Layout, name: str
) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series | None]:
    wanted = [layout.user, layout.item, layout.rating]
    if layout.timestamp is not None:
        wanted.append(layout.timestamp)
    missing = [column for column in wanted if column not in raw.columns]
    if missing:
        header = ", ".join(repr(str(c)) for c in raw.columns)
        hint = " (is the separator right?)" if raw.shape[1] == 1 else ""
        raise DatasetError(
            f"{name}: the header has no column {', '.join(repr(str(c)) for c in missing)}; "
            f"its columns are {header}{hint}"
        )
    if raw.empty:
        raise DatasetError(f"{name} has a header but no data rows")
    stamps = None if layout.timestamp is None else raw[layout.timestamp]
    return raw[layout.user], raw[layout.item], raw[layout.rating], stamps


# Validation shared by files and records.


def _validated(
    users: pd.Series,
    items: pd.Series,
    ratings: pd.Series,
    timestamps: pd.Series | None,
    rating_range: tuple[float, float] | None,
    where: Callable[[int], str],
) -> pd.DataFrame:
    values, rating_checks = _rating_values(ratings, rating_range)
    stamps, stamp_checks = _timestamp_values(timestamps, len(users))
    checks = [_id_check(users, "user id"), _id_check(items, "item id")]
    _raise_first(checks + rating_checks + stamp_checks, where)
    frame = pd.DataFrame(
        {"user_id": users.array, "item_id": items.array, "rating": values, "timestamp": stamps}
    )
    return _keep_latest(frame)


def _raise_first(checks: list[_Check], where: Callable[[int], str]) -> None:
    failing = [check for check in checks if check.mask.any()]
    if not failing:
        return
    row = min(int(np.argmax(check.mask)) for check in failing)
    first = next(check for check in failing if check.mask[row])
    raise DatasetError(f"{where(row)}: {first.describe(row)}")


def _id_check(ids: pd.Series, label: str) -> _Check:
    mask = (ids == "").to_numpy(dtype=bool) | ids.str.isspace().to_numpy(dtype=bool)

    def describe(row: int) -> str:
        value = ids.iloc[row]
        return f"{label} is empty" if value == "" else f"{label} {value!r} is only whitespace"

    return _Check(mask, describe)


def _rating_values(
    raw: pd.Series, rating_range: tuple[float, float] | None
) -> tuple[npt.NDArray[np.float64], list[_Check]]:
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    not_number = np.zeros(values.shape, dtype=bool)
    if not pd.api.types.is_numeric_dtype(raw.dtype):
        for row in np.flatnonzero(np.isnan(values)):
            not_number[row] = not _spells_nan(raw.iloc[row])

    def shown(row: int) -> str:
        return f"rating {_shown(raw.iloc[row])}"

    checks = [
        _Check(not_number, lambda row: f"{shown(row)} is not a number"),
        _Check(~np.isfinite(values) & ~not_number, lambda row: f"{shown(row)} is not finite"),
    ]
    if rating_range is not None:
        low, high = rating_range
        outside = (values < low) | (values > high)
        bounds = f"[{low:g}, {high:g}]"
        checks.append(_Check(outside, lambda row: f"{shown(row)} is outside the range {bounds}"))
    return values, checks


def _timestamp_values(raw: pd.Series | None, count: int) -> tuple[Lines, list[_Check]]:
    if raw is None:
        return np.zeros(count, dtype=np.int64), []
    if raw.dtype == np.int64:
        return raw.to_numpy(), []
    numbers = pd.to_numeric(raw, errors="coerce")
    if numbers.dtype.kind in "iu":
        unsigned = numbers.to_numpy()
        bad = unsigned > _INT64_MAX
        stamps = np.where(bad, 0, unsigned).astype(np.int64)
    else:
        floats = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(floats) | (np.floor(floats) != floats) | (np.abs(floats) >= 2.0**63)
        stamps = np.where(bad, 0.0, floats).astype(np.int64)
    check = _Check(bad, lambda row: f"timestamp {_shown(raw.iloc[row])} is not a 64-bit integer")
    return stamps, [check]


def _spells_nan(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _NAN_SPELLINGS
    return isinstance(value, float) and value != value


def _shown(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _keep_latest(frame: pd.DataFrame) -> pd.DataFrame:
    """Drops repeated (user, item) pairs, keeping the latest timestamp, then the last row."""
    user_codes, _ = pd.factorize(frame["user_id"])
    item_codes, items = pd.factorize(frame["item_id"])
    key = user_codes.astype(np.int64) * max(len(items), 1) + item_codes
    if not pd.Series(key).duplicated().any():
        return frame
    order = np.lexsort((np.arange(len(frame)), frame["timestamp"].to_numpy(), key))
    sorted_key = key[order]
    last_of_pair = np.append(sorted_key[1:] != sorted_key[:-1], True)
    return frame.iloc[np.sort(order[last_of_pair])].reset_index(drop=True)


def _listed(values: Sequence[object]) -> list[object]:
    """Returns the values as a list of plain Python objects (numpy arrays give np.str_)."""
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _string_series(ids: Sequence[str], label: str) -> pd.Series:
    listed = _listed(ids)
    if pd.api.types.infer_dtype(listed, skipna=False) != "string":
        index, value = next((i, v) for i, v in enumerate(listed) if not isinstance(v, str))
        kind = type(value).__name__
        raise DatasetError(f"rating {index}: the {label} must be a string, not {kind}")
    return pd.Series(listed, dtype="str")


def _numbers(values: Sequence[object]) -> pd.Series:
    """Wraps numbers in a Series, as int64 or float64 where they fit, else as objects."""
    listed = _listed(values)
    kind = pd.api.types.infer_dtype(listed, skipna=False)
    numeric = {"integer": "int64", "floating": "float64", "mixed-integer-float": "float64"}
    try:
        return pd.Series(listed, dtype=numeric.get(kind, "object"))
    except OverflowError:
        return pd.Series(listed, dtype="object")
