"""core.workspace.metadata: the metadata CSV, parsed strictly; each problem named with its row."""

from __future__ import annotations

import pytest

from core.errors import InputError
from core.workspace.metadata import csv_line, read_metadata_csv


def write(tmp_path, text: str, name="m.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_values_stay_strings_and_rows_keep_their_csv_line(tmp_path):
    path = write(tmp_path, '\ufefffile , speaker\n a.wav,007\n\nb.wav,"multi\nline"\n\nc.wav,\n')
    frame = read_metadata_csv(path)
    assert list(frame.columns) == ["file", "speaker"]  # BOM and header spaces stripped
    assert frame.to_dict("list") == {
        "file": ["a.wav", "b.wav", "c.wav"],
        "speaker": ["007", "multi\nline", ""],
    }
    assert [csv_line(frame, i) for i in range(3)] == [2, 5, 7]  # blank lines and the quoted break counted
    assert csv_line(frame.iloc[:0], 0) == 2  # a frame without the record: the plain count


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # pandas read this as an index column, shifting every value one column left
        (
            "file,speaker\na.wav,A,extra\nb.wav,B\n",
            r"m\.csv row 2: the row has 3 field\(s\) but the header has 2 \(file, speaker\)",
        ),
        ("file,speaker\na.wav,A\nb.wav\n", r"m\.csv row 3: the row has 1 field\(s\) but the header has 2"),
        (
            'file,speaker\na.wav,"A\nb.wav,B\n',
            r"m\.csv: malformed metadata CSV \(row 3: unexpected end of data \(a quote that is never closed\?\)\)",
        ),
        (
            "file,speaker,file\na.wav,A,b.wav\n",
            r"m\.csv: malformed metadata CSV \(column 'file' appears twice",
        ),
        ("file,,speaker\na.wav,x,A\n", r"m\.csv: malformed metadata CSV \(a column has no header name\)"),
        ("", r"m\.csv: metadata CSV is empty"),
        ("\n\n  \n", r"m\.csv: metadata CSV is empty"),
    ],
)
def test_malformed_csv_names_the_row(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        read_metadata_csv(write(tmp_path, text))


def test_not_utf8_and_missing(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("file,speaker\nä.wav,A\n".encode("latin-1"))
    with pytest.raises(
        InputError,
        match=r"latin1\.csv: malformed metadata CSV \(not UTF-8 text: invalid continuation byte at byte 13\)",
    ):
        read_metadata_csv(path)
    with pytest.raises(InputError, match=r"nope\.csv: metadata CSV not found"):
        read_metadata_csv(tmp_path / "nope.csv")


def test_a_nul_byte_is_refused_with_its_line(tmp_path):
    path = write(tmp_path, "file,speaker\na.wav,A\n\nb.wav,B\x00\n")
    with pytest.raises(InputError, match=r"m\.csv row 4: a NUL byte; a metadata CSV is text"):
        read_metadata_csv(path)


def test_columns_are_capped_before_any_row_is_read(tmp_path):
    from core.workspace.metadata import MAX_COLUMNS

    header = ",".join(f"c{i}" for i in range(MAX_COLUMNS + 1))
    path = write(tmp_path, header + "\n" + '"never closed\n')  # the row is never reached
    with pytest.raises(InputError, match=rf"1,001 columns in the header; .* at most {MAX_COLUMNS:,}"):
        read_metadata_csv(path)
    at_cap = write(
        tmp_path, ",".join(f"c{i}" for i in range(MAX_COLUMNS)) + "\n" + ",".join("x" * MAX_COLUMNS) + "\n"
    )
    assert read_metadata_csv(at_cap).shape == (1, MAX_COLUMNS)


def test_a_folder_or_a_device_is_not_called_missing(tmp_path):
    with pytest.raises(InputError, match="a folder, not a metadata CSV file"):
        read_metadata_csv(tmp_path)
    with pytest.raises(InputError, match="/dev/null: not a regular file"):
        read_metadata_csv("/dev/null")
    with pytest.raises(InputError, match="metadata CSV not found"):
        read_metadata_csv(tmp_path / "nope.csv")
