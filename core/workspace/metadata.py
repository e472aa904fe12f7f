"""The metadata CSV that `ingest` and `import-embeddings` read: every value a string, headers
stripped, one InputError naming the file (and the line) for anything malformed.

    read_metadata_csv(path) -> pd.DataFrame of str
    csv_line(frame, i) -> the CSV line data row i came from: the `row N` of error messages
    numeric_columns(frame) -> the same table, columns of numbers as numbers (continuous attributes)

The file is parsed with the csv module rather than pandas: pandas takes a first data row with
one field more than the header as an index column (the table then reads shifted by one column,
and the error a user sees is about the wrong column), and fills or drops ragged rows. Here a row
whose field count differs from the header's is an error naming the line and both counts.

Also refused, with the line: a NUL byte (a binary file, or text saved as UTF-16, not a CSV), and
more than MAX_COLUMNS columns (checked on the header, before any row is read: 100,000 columns in
an 8 MB file took minutes to import and slowed every later read of the segment table).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from core.constants import KNOWN_ATTRIBUTES
from core.errors import InputError

MAX_COLUMNS = 1_000
"""Most columns a metadata CSV may have (a corpus's metadata has tens)."""
LINES_ATTR = "csv_lines"
"""frame.attrs key: the CSV line each data row ends on (the header is line 1); messages call it the row."""


def read_metadata_csv(path: str | Path) -> pd.DataFrame:
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"{path}: a folder, not a metadata CSV file")
    if not path.is_file():
        raise InputError(
            f"{path}: metadata CSV not found" if not path.exists() else f"{path}: not a regular file"
        )
    records: list[tuple[int, list[str]]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True, skipinitialspace=True)
            for rec in reader:
                if any("\x00" in field for field in rec):
                    raise InputError(
                        f"{path} row {reader.line_num}: a NUL byte; a metadata CSV is text "
                        "(a binary file, or text saved as UTF-16?)"
                    )
                if not records and len(rec) > MAX_COLUMNS:
                    raise InputError(
                        f"{path}: {len(rec):,} columns in the header; a metadata CSV may have at most "
                        f"{MAX_COLUMNS:,}"
                    )
                if any(field.strip() for field in rec):
                    records.append((reader.line_num, rec))
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: malformed metadata CSV (not UTF-8 text: {exc.reason} at byte {exc.start})"
        ) from None
    except csv.Error as exc:
        hint = " (a quote that is never closed?)" if "unexpected end of data" in str(exc) else ""
        raise InputError(f"{path}: malformed metadata CSV (row {reader.line_num}: {exc}{hint})") from None
    if not records:
        raise InputError(f"{path}: metadata CSV is empty")
    (_, header), rows = records[0], records[1:]
    header = [name.strip() for name in header]
    if any(not name for name in header):
        raise InputError(f"{path}: malformed metadata CSV (a column has no header name)")
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise InputError(f"{path}: malformed metadata CSV (column {name!r} appears twice in the header)")
        seen.add(name)
    for line, rec in rows:
        if len(rec) != len(header):
            raise InputError(
                f"{path} row {line}: the row has {len(rec)} field(s) but the header has "
                f"{len(header)} ({', '.join(header)})"
            )
    frame = pd.DataFrame([rec for _, rec in rows], columns=header, dtype=str)
    frame.attrs[LINES_ATTR] = [line for line, _ in rows]
    return frame


def csv_line(frame: pd.DataFrame, i: int) -> int:
    """The CSV line data row `i` of a frame from read_metadata_csv came from (blank lines and
    quoted line breaks counted); i + 2 when the frame has lost that record."""
    lines = frame.attrs.get(LINES_ATTR)
    return int(lines[i]) if lines is not None and i < len(lines) else i + 2


def numeric_columns(frame: pd.DataFrame, skip: tuple[str, ...] = ()) -> pd.DataFrame:
    """`frame` (of strings) with every column whose non-empty values are all finite numbers as
    numbers: int64 when each is a whole number and none is empty, else float64 (empty -> NaN).
    Such a column is a continuous attribute (Workspace.continuous_attributes). Left as text: the
    columns in `skip`, the known label columns (speaker, language, ...: ids such as `1001` are
    labels, not quantities), and a column with no value at all."""
    out = frame.copy()
    for col in out.columns:
        if col in skip or col in KNOWN_ATTRIBUTES:
            continue
        text = out[col].astype(str).str.strip()
        filled = text != ""
        values = pd.to_numeric(text.where(filled), errors="coerce")
        if not filled.any() or values[filled].isna().any() or not np.isfinite(values[filled]).all():
            continue
        whole = filled.all() and (values == np.round(values)).all() and values.abs().max() < 2**53
        out[col] = values.astype("int64") if whole else values.astype("float64")
    return out
