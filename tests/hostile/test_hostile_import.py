"""`import-embeddings` as a hostile user would call it: garbage arrays, files that are not what
their name says, broken metadata CSVs, and --workspace folders that are not workspaces.

Each refusal: exit 2, one `error:` line naming the input and what is wrong, no traceback, the
trained workspace `w` (and every input file) byte-identical.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hostile_harness import assert_refused, run_cli, snapshot

from core.workspace.workspace import Workspace


@pytest.fixture
def n_rows(trained_ws) -> int:
    return len(np.load(trained_ws / "embeddings.npy"))


def _refused_import(file, meta, needles, data_root):
    roots = [data_root, file, meta]
    before = snapshot(*roots)
    out = run_cli("import-embeddings", file, "--workspace", "w", "--metadata", meta)
    return assert_refused(out, *needles, before=before, roots=roots, allow_new=False)


@pytest.fixture
def refuse_embeddings(trained_ws, metadata_csv, data_root):
    """refuse_embeddings(FILE, *needles): import FILE with the good metadata into `w`; assert a
    clean refusal naming `needles`, `w` and the inputs byte-identical, no file left behind."""
    return lambda file, *needles: _refused_import(file, metadata_csv, needles, data_root)


@pytest.fixture
def refuse_metadata(trained_ws, embeddings_npy, data_root):
    """refuse_metadata(CSV, *needles): the same with the good embeddings and the CSV at fault."""
    return lambda meta, *needles: _refused_import(embeddings_npy, meta, needles, data_root)


def saved(tmp_path, name, array, **kw):
    path = tmp_path / name
    np.save(path, array, **kw)
    return path


# -- arrays that are not real-number embeddings ---------------------------------------------------
@pytest.mark.parametrize(
    ("make", "needles"),
    [
        (
            lambda n: np.ones((n, 24), np.complex64),
            ["complex numbers (complex64)", "imaginary part would be lost"],
        ),
        (lambda n: np.ones((n, 24), bool), ["booleans (dtype bool)"]),
        (lambda n: np.full((n, 24), "0.5"), ["text (dtype <U3)"]),
        (lambda n: np.zeros(n, dtype=[("x", "f4"), ("y", "f4")]), ["a structured array (fields x, y)"]),
        (lambda n: np.zeros((n, 24), "datetime64[s]"), ["dates (dtype datetime64[s])"]),
        (lambda n: np.zeros((n, 0), np.float32), ["0 dimensions", "shape ({n}, 0)"]),
        (lambda n: np.zeros((0, 24), np.float32), ["no embeddings (0 rows)"]),
        (lambda n: np.zeros(n, np.float32), ["must be a 2-D array", "got shape ({n},)"]),
        (lambda n: np.zeros((n, 4, 6), np.float32), ["must be a 2-D array", "got shape ({n}, 4, 6)"]),
    ],
    ids=["complex64", "bool", "strings", "structured", "datetime", "N-by-0", "0-rows", "1-D", "3-D"],
)
def test_garbage_arrays_are_refused(refuse_embeddings, make, needles, n_rows, tmp_path):
    path = saved(tmp_path, "bad.npy", make(n_rows))
    refuse_embeddings(path, "bad.npy", *(x.format(n=n_rows) for x in needles))


def test_values_that_overflow_float32_are_refused(refuse_embeddings, n_rows, tmp_path):
    emb = np.zeros((n_rows, 24), np.float64)
    emb[7, 3] = 1e39  # finite here, inf once stored as float32
    path = saved(tmp_path, "huge.npy", emb)
    refuse_embeddings(path, "huge.npy", "beyond float32's range", "1e+39", "first bad row index 7")


def test_nan_rows_are_refused(refuse_embeddings, n_rows, tmp_path):
    emb = np.zeros((n_rows, 24), np.float32)
    emb[[3, 9], 0] = [np.nan, np.inf]
    path = saved(tmp_path, "nan.npy", emb)
    refuse_embeddings(path, "nan.npy", "2 embedding row(s) contain NaN or inf", "row index 3")


def test_pickled_objects_are_never_loaded(refuse_embeddings, n_rows, tmp_path):
    path = saved(tmp_path, "obj.npy", np.array([[0.5, {"x": 1}]] * n_rows, dtype=object), allow_pickle=True)
    refuse_embeddings(path, "obj.npy", "holds pickled Python objects, which are never loaded")


# -- files that are not what their name says ---------------------------------------------------------
def test_a_text_file_named_npy_is_not_called_pickled(refuse_embeddings, tmp_path):
    path = tmp_path / "emb.npy"
    path.write_text("0.1,0.2,0.3\n0.4,0.5,0.6\n")
    line = refuse_embeddings(path, "emb.npy", "not a .npy file", "does not start with the .npy header")
    assert "pickle" not in line


def test_an_npz_archive_named_npy(refuse_embeddings, tmp_path):
    np.savez(tmp_path / "emb.npz", emb=np.ones((3, 3)))
    path = (tmp_path / "emb.npz").rename(tmp_path / "emb.npy")
    refuse_embeddings(path, "emb.npy", "not a .npy file (a zip archive (.npz?))")


def test_a_truncated_npy(refuse_embeddings, embeddings_npy, tmp_path):
    path = tmp_path / "cut.npy"
    path.write_bytes(embeddings_npy.read_bytes()[:1000])
    refuse_embeddings(path, "cut.npy", "not a readable .npy array")


def test_random_bytes_named_parquet(refuse_embeddings, tmp_path):
    path = tmp_path / "emb.parquet"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    refuse_embeddings(path, "emb.parquet", "not a readable Parquet file")


def test_parquet_of_booleans(refuse_embeddings, n_rows, tmp_path):
    path = tmp_path / "flags.parquet"
    pd.DataFrame({f"d{i}": np.arange(n_rows) % 2 == 0 for i in range(24)}).to_parquet(path)
    refuse_embeddings(path, "flags.parquet", "non-numeric column(s): d0, d1")


def test_parquet_embedding_lists_of_text(refuse_embeddings, n_rows, tmp_path):
    path = tmp_path / "text.parquet"
    pd.DataFrame({"embedding": [["0.5"] * 24] * n_rows}).to_parquet(path)
    refuse_embeddings(path, "text.parquet", "`embedding` on row 0 is not a list of numbers")


def test_unsupported_and_missing_embeddings_files(refuse_embeddings, metadata_csv, tmp_path, data_root):
    (tmp_path / "emb.csv").write_text("1,2\n")
    refuse_embeddings(tmp_path / "emb.csv", "emb.csv", "unsupported embeddings file type '.csv'")
    before = snapshot(data_root)
    out = run_cli("import-embeddings", tmp_path / "nope.npy", "--workspace", "w", "--metadata", metadata_csv)
    assert_refused(
        out, "nope.npy", "embeddings file not found", before=before, roots=[data_root], allow_new=False
    )


# -- metadata CSVs -------------------------------------------------------------------------------------
def test_an_extra_field_on_the_first_row_is_named_not_taken_as_an_index(
    refuse_metadata, metadata_csv, tmp_path
):
    lines = metadata_csv.read_text().splitlines()
    lines[1] += ",surplus"
    bad = tmp_path / "extra.csv"
    bad.write_text("\n".join(lines) + "\n")
    n_header = len(lines[0].split(","))
    refuse_metadata(
        bad, "extra.csv row 2", f"the row has {n_header + 1} field(s) but the header has {n_header}"
    )


def test_a_short_row_later_in_the_csv(refuse_metadata, metadata_csv, tmp_path):
    lines = metadata_csv.read_text().splitlines()
    lines[41] = lines[41].rsplit(",", 2)[0]
    bad = tmp_path / "short.csv"
    bad.write_text("\n".join(lines) + "\n")
    n_header = len(lines[0].split(","))
    refuse_metadata(bad, "short.csv row 42", f"the row has {n_header - 2} field(s)")


def test_an_unclosed_quote(refuse_metadata, metadata_csv, tmp_path):
    lines = metadata_csv.read_text().splitlines()
    lines[5] = lines[5].replace(",", ',"', 1)
    bad = tmp_path / "quote.csv"
    bad.write_text("\n".join(lines) + "\n")
    refuse_metadata(bad, "quote.csv", "malformed metadata CSV", "a quote that is never closed?")


def test_one_row_too_few(refuse_metadata, metadata_csv, n_rows, tmp_path):
    lines = metadata_csv.read_text().splitlines()
    bad = tmp_path / "fewer.csv"
    bad.write_text("\n".join(lines[:-1]) + "\n")
    refuse_metadata(bad, "fewer.csv", f"{n_rows - 1} metadata row(s) but", f"holds {n_rows} embedding(s)")


def test_a_duplicate_segment_id_and_a_bad_number(refuse_metadata, metadata_csv, tmp_path):
    seg = pd.read_csv(metadata_csv, dtype=str, keep_default_na=False)
    dup = seg.copy()
    dup.loc[10, "segment_id"] = dup.loc[3, "segment_id"]
    dup.to_csv(tmp_path / "dup.csv", index=False)
    refuse_metadata(tmp_path / "dup.csv", "dup.csv row 12", "duplicate segment_id", "(also on row 5)")
    num = seg.copy()
    num.loc[6, "start_s"] = "soon"
    num.to_csv(tmp_path / "num.csv", index=False)
    refuse_metadata(tmp_path / "num.csv", "num.csv row 8", "start_s 'soon' is not a number")


# -- --workspace folders ------------------------------------------------------------------------------
def test_a_users_folder_is_refused_before_anything_is_read(trained_ws, metadata_csv, tmp_path, data_root):
    mine = tmp_path / "my_analysis"
    mine.mkdir()
    (mine / "embeddings.npy").write_bytes(b"my own results")
    (mine / "segments.parquet").write_bytes(b"mine too")
    garbage = tmp_path / "garbage.npy"
    garbage.write_text("not even an array")  # refused for the folder first: nothing was read
    before = snapshot(data_root, mine)
    out = run_cli("import-embeddings", garbage, "--workspace", mine, "--metadata", metadata_csv)
    assert_refused(
        out,
        str(mine),
        "an existing folder that is not a VoxSAE workspace",
        "embeddings.npy, segments.parquet",
        before=before,
        roots=[data_root, mine],
        allow_new=False,
    )


def test_another_tools_workspace_json_is_not_replaced(embeddings_npy, metadata_csv, tmp_path, data_root):
    nx = tmp_path / "monorepo"
    nx.mkdir()
    (nx / "workspace.json").write_text(json.dumps({"version": 2, "projects": {"app": "apps/app"}}))
    before = snapshot(nx)
    out = run_cli("import-embeddings", embeddings_npy, "--workspace", nx, "--metadata", metadata_csv)
    assert_refused(
        out,
        str(nx),
        "its workspace.json is not a VoxSAE workspace file",
        before=before,
        roots=[nx],
        allow_new=False,
    )


def test_a_file_as_the_workspace(embeddings_npy, metadata_csv, tmp_path, data_root):
    target = tmp_path / "results.txt"
    target.write_text("keep")
    before = snapshot(target)
    out = run_cli("import-embeddings", embeddings_npy, "--workspace", target, "--metadata", metadata_csv)
    assert_refused(out, str(target), "a file, not a folder", before=before, roots=[target])


def test_a_dim_change_into_an_existing_workspace(refuse_embeddings, n_rows, tmp_path):
    path = saved(tmp_path, "wide.npy", np.ones((n_rows, 32), np.float32))
    refuse_embeddings(path, "wide.npy", "embedding dim 32 does not match workspace w (dim 24)")


def test_replacing_a_workspace_says_so_and_keeps_its_models(
    trained_ws, embeddings_npy, metadata_csv, data_root
):
    new = embeddings_npy.parent / "reversed.npy"
    np.save(new, np.load(embeddings_npy)[::-1].copy())
    models = snapshot(trained_ws / "models")
    out = run_cli("import-embeddings", new, "--workspace", "w", "--metadata", metadata_csv)
    assert out.rc == 0 and not out.error_lines, out
    notes = [line for line in out.err.splitlines() if "replacing" in line]
    assert notes == [
        f"import-embeddings: replacing the corpus of workspace w ({trained_ws}); the old one stays until "
        "the new one is complete; models, analyses and labels are kept"
    ]
    ws = Workspace.open("w")
    assert (
        np.array_equal(np.asarray(ws.embeddings), np.load(new)) and snapshot(trained_ws / "models") == models
    )
    fresh = run_cli("import-embeddings", new, "--workspace", "fresh", "--metadata", metadata_csv)
    assert fresh.rc == 0 and "replacing" not in fresh.err, fresh
