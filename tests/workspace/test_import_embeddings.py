"""core.workspace.import_embeddings: .npy / .parquet + CSV -> workspace; one clear error per bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.cli import main as cli_main
from core.errors import InputError
from core.workspace.import_embeddings import import_embeddings
from core.workspace.workspace import Workspace


def write_csv(path, rows, header="segment_id,speaker,language"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture
def emb():
    return np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)


@pytest.fixture
def csv(tmp_path):
    return write_csv(tmp_path / "meta.csv", ["a,s1,en", "b,s1,en", "c,s2,es", "d,s3,es"])


def test_npy_import(tmp_path, emb, csv):
    np.save(tmp_path / "e.npy", emb)
    ws = import_embeddings(tmp_path / "e.npy", "imp", metadata=csv, embedder="titanet")
    assert len(ws) == 4 and ws.dim == 8 and ws.embedder == "titanet"
    assert list(ws.segments["segment_id"]) == ["a", "b", "c", "d"]
    assert list(ws.segments["language"]) == ["en", "en", "es", "es"]
    assert np.array_equal(np.asarray(ws.embeddings), emb)
    assert ws.attribute_values("speaker") == ["s1", "s2", "s3"]
    assert ws.info.provenance["command"] == "import-embeddings"


def test_generated_ids_and_base_columns(tmp_path, emb):
    np.save(tmp_path / "e.npy", emb)
    meta = write_csv(
        tmp_path / "m.csv", ["x.wav,0,4", "x.wav,4,9", "y.wav,0,5", "y.wav,5,11"], "source,start_s,end_s"
    )
    ws = import_embeddings(tmp_path / "e.npy", "gen", metadata=meta)
    seg = ws.segments
    assert list(seg["segment_id"]) == [f"seg{i:06d}" for i in range(4)]
    assert list(seg["duration_s"]) == [4.0, 5.0, 5.0, 6.0]
    assert ws.embedder == "imported"


def test_parquet_list_column_and_numeric_columns(tmp_path, emb, csv):
    pd.DataFrame({"embedding": list(emb)}).to_parquet(tmp_path / "l.parquet")
    ws = import_embeddings(tmp_path / "l.parquet", "pl", metadata=csv)
    assert np.allclose(np.asarray(ws.embeddings), emb)
    pd.DataFrame(emb, columns=[f"d{i}" for i in range(8)]).to_parquet(tmp_path / "n.parquet")
    ws = import_embeddings(tmp_path / "n.parquet", "pn", metadata=csv)
    assert np.allclose(np.asarray(ws.embeddings), emb)


def test_parquet_non_numeric_rejected(tmp_path, csv):
    pd.DataFrame({"a": [1.0, 2, 3, 4], "name": list("wxyz")}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match=r"bad\.parquet.*non-numeric column\(s\): name"):
        import_embeddings(tmp_path / "bad.parquet", "x", metadata=csv)


def test_nan_and_inf_rows(tmp_path, emb, csv):
    emb[2, 3] = np.nan
    np.save(tmp_path / "nan.npy", emb)
    with pytest.raises(InputError, match=r"nan\.npy.*NaN or inf.*row index 2"):
        import_embeddings(tmp_path / "nan.npy", "x", metadata=csv)
    emb[2, 3] = 0
    emb[1, 0] = np.inf
    np.save(tmp_path / "inf.npy", emb)
    with pytest.raises(InputError, match=r"inf\.npy.*row index 1"):
        import_embeddings(tmp_path / "inf.npy", "x", metadata=csv)
    assert not Workspace.exists("x")


def test_dim_mismatch_with_existing_workspace(tmp_path, emb, csv):
    np.save(tmp_path / "e.npy", emb)
    first = import_embeddings(tmp_path / "e.npy", "same", metadata=csv)
    np.save(tmp_path / "wide.npy", np.ones((4, 16), np.float32))
    with pytest.raises(InputError, match=r"wide\.npy.*dim 16 does not match workspace same \(dim 8\)"):
        import_embeddings(tmp_path / "wide.npy", "same", metadata=csv)
    again = Workspace.open("same")
    assert again.fingerprint == first.fingerprint and again.dim == 8


def test_row_count_mismatch(tmp_path, emb, csv):
    np.save(tmp_path / "five.npy", np.ones((5, 8), np.float32))
    with pytest.raises(InputError, match=r"meta\.csv: 4 metadata row\(s\) but .*five\.npy holds 5"):
        import_embeddings(tmp_path / "five.npy", "x", metadata=csv)


def test_duplicate_ids(tmp_path, emb):
    np.save(tmp_path / "e.npy", emb)
    meta = write_csv(tmp_path / "dup.csv", ["a,s1,en", "b,s1,en", "a,s2,es", "d,s3,es"])
    with pytest.raises(InputError, match=r"dup\.csv row 4: duplicate segment_id 'a' \(also on row 2\)"):
        import_embeddings(tmp_path / "e.npy", "x", metadata=meta)


def test_malformed_csv_and_bad_files(tmp_path, emb):
    np.save(tmp_path / "e.npy", emb)
    bad = tmp_path / "bad.csv"
    bad.write_text('segment_id,speaker\na,s1\nb,"s2\nc,s3,extra,more\n')
    with pytest.raises(InputError, match=r"bad\.csv: malformed metadata CSV"):
        import_embeddings(tmp_path / "e.npy", "x", metadata=bad)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match=r"empty\.csv: metadata CSV is empty"):
        import_embeddings(tmp_path / "e.npy", "x", metadata=tmp_path / "empty.csv")
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(
        InputError, match=r"junk\.npy: not a \.npy file \(it does not start with the \.npy header\)"
    ):
        import_embeddings(tmp_path / "junk.npy", "x", metadata=bad)
    with pytest.raises(InputError, match=r"e\.txt: unsupported"):
        (tmp_path / "e.txt").write_text("1 2 3")
        import_embeddings(tmp_path / "e.txt", "x", metadata=bad)
    np.save(tmp_path / "one_d.npy", np.ones(8, np.float32))
    with pytest.raises(InputError, match=r"one_d\.npy: embeddings must be a 2-D array"):
        import_embeddings(tmp_path / "one_d.npy", "x", metadata=bad)


def test_cli_import(tmp_path, emb, csv, capsys):
    np.save(tmp_path / "e.npy", emb)
    assert (
        cli_main(["import-embeddings", str(tmp_path / "e.npy"), "--workspace", "cli", "--metadata", str(csv)])
        == 0
    )
    assert "4 embeddings (8-d)" in capsys.readouterr().out
    emb[0, 0] = np.nan
    np.save(tmp_path / "n.npy", emb)
    assert (
        cli_main(
            ["import-embeddings", str(tmp_path / "n.npy"), "--workspace", "cli2", "--metadata", str(csv)]
        )
        == 2
    )
    assert "error:" in capsys.readouterr().err


def test_load_embeddings_tells_the_file_kinds_apart(tmp_path):
    from core.workspace.import_embeddings import load_embeddings

    (tmp_path / "text.npy").write_text("0.1, 0.2\n0.3, 0.4\n")
    with pytest.raises(
        InputError, match=r"text\.npy: not a \.npy file \(it does not start with the \.npy header\)"
    ):
        load_embeddings(tmp_path / "text.npy")
    np.savez(tmp_path / "arch.npz", x=np.ones((2, 2)))
    (tmp_path / "arch.npz").rename(tmp_path / "arch.npy")
    with pytest.raises(InputError, match=r"arch\.npy: not a \.npy file \(a zip archive \(\.npz\?\)\)"):
        load_embeddings(tmp_path / "arch.npy")
    np.save(tmp_path / "obj.npy", np.array([[1, {"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"obj\.npy: holds pickled Python objects, which are never loaded"):
        load_embeddings(tmp_path / "obj.npy")
    np.save(tmp_path / "full.npy", np.ones((50, 4), np.float32))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "full.npy").read_bytes()[:300])
    with pytest.raises(InputError, match=r"cut\.npy: not a readable \.npy array"):
        load_embeddings(tmp_path / "cut.npy")
    np.save(tmp_path / "c.npy", np.ones((3, 2), np.complex64))
    with pytest.raises(InputError, match=r"c\.npy: embeddings must be real numbers .*complex numbers"):
        load_embeddings(tmp_path / "c.npy")
    assert load_embeddings(tmp_path / "full.npy").shape == (50, 4)


def test_parquet_values_must_be_numbers_not_bools_or_text(tmp_path):
    from core.workspace.import_embeddings import load_embeddings

    pd.DataFrame({"a": [1.0, 2.0], "flag": [True, False]}).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(InputError, match=r"b\.parquet: .*non-numeric column\(s\): flag"):
        load_embeddings(tmp_path / "b.parquet")
    pd.DataFrame({"embedding": [["1.0", "2.0"], ["3", "4"]]}).to_parquet(tmp_path / "s.parquet")
    with pytest.raises(
        InputError, match=r"s\.parquet: `embedding` on row 0 is not a list of numbers \(dtype object\)"
    ):
        load_embeddings(tmp_path / "s.parquet")
    pd.DataFrame({"embedding": [[True, False], [False, True]]}).to_parquet(tmp_path / "lb.parquet")
    with pytest.raises(
        InputError, match=r"lb\.parquet: `embedding` on row 0 is not a list of numbers \(dtype bool\)"
    ):
        load_embeddings(tmp_path / "lb.parquet")
    pd.DataFrame({"embedding": [[], []]}).to_parquet(tmp_path / "e.parquet")
    with pytest.raises(InputError, match=r"e\.parquet: embeddings have 0 dimensions \(shape \(2, 0\)\)"):
        load_embeddings(tmp_path / "e.parquet")
    pd.DataFrame({"a": [1e39, 0.0], "b": [0.0, 1.0]}).to_parquet(tmp_path / "big.parquet")
    with pytest.raises(
        InputError, match=r"big\.parquet: 1 embedding row\(s\) hold values beyond float32's range"
    ):
        load_embeddings(tmp_path / "big.parquet")
