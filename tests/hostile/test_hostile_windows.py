"""Window embeddings as a hostile user would hand them to `import-embeddings`: a windows file not
aligned to its segments (another dim, another length, a segment row outside the segments or out
of order, NaN, not integers), half of the pair, a file that is not a .npy.

Each refusal: exit 2, one `error:` line naming the file at fault and what is wrong, no traceback,
the trained workspace `w` and every input byte-identical. A good pair is taken."""

from __future__ import annotations

import numpy as np
import pytest
from hostile_harness import assert_refused, run_cli, snapshot

from core.workspace.workspace import Workspace

PER = 3  # windows per segment in the good pair


@pytest.fixture
def good_pair(trained_ws, tmp_path):
    """(windows [n * PER, dim] float32, segment rows [n * PER] int64) aligned with `w`'s segments."""
    emb = np.load(trained_ws / "embeddings.npy")
    rows = np.repeat(np.arange(len(emb), dtype=np.int64), PER)
    return np.repeat(emb, PER, axis=0) * 0.9, rows


def _save(tmp_path, name, array):
    path = tmp_path / name
    np.save(path, array)
    return path


def _refused(data_root, embeddings_npy, metadata_csv, extra, needles):
    files = [p for p in extra if not str(p).startswith("--")]
    roots = [data_root, embeddings_npy, metadata_csv, *files]
    before = snapshot(*roots)
    out = run_cli("import-embeddings", embeddings_npy, "--workspace", "w", "--metadata", metadata_csv, *extra)
    return assert_refused(out, *needles, before=before, roots=roots, allow_new=False)


def _bad(win, rows, case):
    n = len(win)
    if case == "dim":
        return win[:, :-1], rows, "windows.npy", ["embedding dim", "does not match the expected dim"]
    if case == "fewer rows":
        return win, rows[:-1], "rows.npy", [f"{n - 1} window segment rows", f"holds {n} windows"]
    if case == "row outside":
        bad = rows.copy()
        bad[-1] = rows[-1] + 1
        return win, bad, "rows.npy", [f"window {n - 1} names segment row {rows[-1] + 1}", "outside the"]
    if case == "negative row":
        bad = rows.copy()
        bad[0] = -1
        return win, bad, "rows.npy", ["window 0 names segment row -1", "outside the"]
    if case == "unsorted":
        return win, rows[::-1].copy(), "rows.npy", ["not sorted", "a segment's windows come together"]
    if case == "nan":
        bad = win.copy()
        bad[5, 2] = np.nan
        return bad, rows, "windows.npy", ["contain NaN or inf", "first bad row index 5"]
    if case == "float rows":
        return win, rows.astype(np.float64), "rows.npy", ["1-D array of integers", "float64"]
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["dim", "fewer rows", "row outside", "negative row", "unsorted", "nan", "float rows"]
)
def test_a_misaligned_windows_pair_is_refused(
    case, good_pair, tmp_path, data_root, embeddings_npy, metadata_csv
):
    win, rows, at_fault, needles = _bad(*good_pair, case)
    extra = [
        "--windows",
        _save(tmp_path, "windows.npy", win),
        "--window-segments",
        _save(tmp_path, "rows.npy", rows),
    ]
    line = _refused(data_root, embeddings_npy, metadata_csv, extra, needles)
    assert at_fault in line


@pytest.mark.parametrize(
    ("flag", "needles"),
    [
        ("--windows", ["--windows needs --window-segments too"]),
        ("--window-segments", ["--window-segments needs --windows too"]),
    ],
)
def test_half_a_pair_is_refused(flag, needles, good_pair, tmp_path, data_root, embeddings_npy, metadata_csv):
    extra = [flag, _save(tmp_path, "one.npy", good_pair[0] if flag == "--windows" else good_pair[1])]
    _refused(data_root, embeddings_npy, metadata_csv, extra, needles)


def test_a_windows_file_that_is_not_a_npy_is_refused(
    good_pair, tmp_path, data_root, embeddings_npy, metadata_csv
):
    text = tmp_path / "windows.npy"
    text.write_text("0.1,0.2\n")
    csv = tmp_path / "rows.csv"
    csv.write_text("0\n")
    extra = ["--windows", text, "--window-segments", _save(tmp_path, "rows.npy", good_pair[1])]
    _refused(data_root, embeddings_npy, metadata_csv, extra, ["windows.npy: not a .npy file"])
    extra = ["--windows", _save(tmp_path, "w2.npy", good_pair[0]), "--window-segments", csv]
    _refused(data_root, embeddings_npy, metadata_csv, extra, ["rows.csv: window files are .npy arrays"])
    extra = ["--windows", tmp_path / "gone.npy", "--window-segments", _save(tmp_path, "r2.npy", good_pair[1])]
    _refused(data_root, embeddings_npy, metadata_csv, extra, ["gone.npy: window file not found"])


def test_an_aligned_pair_is_taken(good_pair, tmp_path, trained_ws, embeddings_npy, metadata_csv):
    win, rows = good_pair
    out = run_cli(
        "import-embeddings", embeddings_npy, "--workspace", "w", "--metadata", metadata_csv,
        "--windows", _save(tmp_path, "windows.npy", win), "--window-segments", _save(tmp_path, "rows.npy", rows),
    )  # fmt: skip
    assert out.rc == 0, out
    assert f"{len(rows)} windows" in out.out
    ws = Workspace.open("w")
    np.testing.assert_array_equal(np.asarray(ws.windows.embeddings), win)
    assert ws.windows.segment_rows.tolist() == rows.tolist()
    assert ws.info.provenance["windows"]["windows_file"] == str((tmp_path / "windows.npy").resolve())
