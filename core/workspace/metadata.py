"""The metadata CSV that `ingest` and `import-embeddings` read: every value a string, headers
stripped, one InputError naming the file (and the line) for anything malformed.

    read_metadata_csv(path) -> pd.DataFrame of str
    csv_line(frame, i) -> the CSV line data row i came from: the `row N` of error messages

The file is parsed with the csv module rather than pandas: pandas takes a first data row with
one field more than the header as an index column (the table then reads shifted by one column,
and the error a user sees is about the wrong column), and fills or drops ragged rows. Here a row
whose field count differs from the header's is an error naming the line and both counts.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from core.errors import InputError

LINES_ATTR = "csv_lines"
"""frame.attrs key: the CSV line each data row ends on (the header is line 1); messages call it the row."""


def read_metadata_csv(path: str | Path) -> pd.DataFrame:
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: metadata CSV not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True, skipinitialspace=True)
            records = [(reader.line_num, rec) for rec in reader if any(field.strip() for field in rec)]
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
