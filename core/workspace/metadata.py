"""The metadata CSV that `ingest` and `import-embeddings` read: every value a string, headers
stripped, one InputError naming the file for anything malformed.

    read_metadata_csv(path) -> pd.DataFrame of str
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from core.errors import InputError


def read_metadata_csv(path: str | Path) -> pd.DataFrame:
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: metadata CSV not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: metadata CSV is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: malformed metadata CSV ({str(exc).strip()})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if any(not c or c.startswith("Unnamed:") for c in frame.columns):
        raise InputError(f"{path}: malformed metadata CSV (a column has no header name)")
    return frame
