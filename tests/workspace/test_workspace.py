import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import atomic
from core.constants import EMBEDDINGS_NPY, NEW_CORPUS_DIR, SEGMENTS_PARQUET, WORKSPACE_JSON
from core.errors import InputError, NotFoundError
from core.workspace.workspace import (
    Workspace,
    check_target,
    fingerprint_of,
    resolve_workspace_path,
    validate_embeddings,
)


def test_create_and_reopen_round_trip(segments_factory):
    seg = segments_factory(20)
    seg["language"] = ["es" if i % 4 == 0 else "en" for i in range(20)]
    emb = np.random.default_rng(1).normal(size=(20, 8)).astype(np.float32)
    ws = Workspace.create("w1", seg, emb, embedder="test", sample_rate=16000, provenance={"k": 1})
    again = Workspace.open("w1")
    assert again.root == resolve_workspace_path("w1")
    assert again.dim == 8 and len(again) == 20 and again.embedder == "test"
    np.testing.assert_array_equal(np.asarray(again.embeddings), emb)
    assert isinstance(again.embeddings, np.memmap)
    assert list(again.segments["segment_id"]) == list(seg["segment_id"])
    assert again.attribute_values("language") == ["en", "es"]
    assert again.summary()["language"] == {"en": 15, "es": 5}
    assert again.summary()["speakers"] == seg["speaker"].nunique()
    assert again.fingerprint == ws.fingerprint


def test_fingerprint_changes_with_content(segments_factory):
    seg = segments_factory(10)
    emb = np.ones((10, 4), np.float32)
    a = Workspace.create("a", seg, emb, embedder="t", sample_rate=0).fingerprint
    emb2 = emb.copy()
    emb2[3, 2] = 2.0
    b = Workspace.create("b", seg, emb2, embedder="t", sample_rate=0).fingerprint
    seg2 = seg.copy()
    seg2["speaker"] = "x"
    c = Workspace.create("c", seg2, emb, embedder="t", sample_rate=0).fingerprint
    assert len({a, b, c}) == 3


def test_create_from_a_memory_map_in_row_chunks_writes_what_an_array_does(
    segments_factory, tmp_path, monkeypatch
):
    """A memory-mapped input (10M x 192 is 7.7 GB) is checked, hashed and copied in row chunks:
    the same embeddings.npy bytes and fingerprint as from the array in memory, and a NaN in a
    later chunk is named by its row in the whole array."""
    import core.workspace.workspace as workspace

    monkeypatch.setattr(workspace, "CHECK_CHUNK_ROWS", 7)  # 30 rows: 5 chunks, the last partial
    seg = segments_factory(30)
    emb = np.random.default_rng(2).normal(size=(30, 5)).astype(np.float32)
    np.save(tmp_path / "src.npy", emb)
    mapped = np.load(tmp_path / "src.npy", mmap_mode="r")
    from_array = Workspace.create("arr", seg, emb, embedder="t", sample_rate=0)
    from_map = Workspace.create("map", seg, mapped, embedder="t", sample_rate=0)
    assert from_map.fingerprint == from_array.fingerprint == fingerprint_of(seg, emb)
    assert (from_map.root / EMBEDDINGS_NPY).read_bytes() == (from_array.root / EMBEDDINGS_NPY).read_bytes()
    np.testing.assert_array_equal(np.asarray(mapped), emb)  # the released pages read back the same
    bad = np.lib.format.open_memmap(tmp_path / "bad.npy", mode="w+", dtype=np.float32, shape=(30, 5))
    bad[:] = emb
    bad[23, 4] = np.inf
    bad.flush()
    with pytest.raises(
        InputError, match=r"1 embedding row\(s\) contain NaN or inf \(first bad row index 23\)"
    ):
        Workspace.create(
            "bad", seg, np.load(tmp_path / "bad.npy", mmap_mode="r"), embedder="t", sample_rate=0
        )
    copy_on_write = np.load(tmp_path / "src.npy", mmap_mode="c")
    assert workspace._shared_mapping(copy_on_write) is None  # never released: it may hold changes
    assert workspace._shared_mapping(mapped[3:]) is not None and workspace._shared_mapping(emb) is None


def test_nan_rows_are_named():
    emb = np.zeros((5, 3), np.float32)
    emb[3, 1] = np.nan
    with pytest.raises(InputError, match=r"first bad row index 3"):
        validate_embeddings(emb, "x.npy")
    with pytest.raises(InputError, match="dim 3 does not match the expected dim 4"):
        validate_embeddings(np.zeros((2, 3)), "x.npy", dim=4)
    with pytest.raises(InputError, match="2-D"):
        validate_embeddings(np.zeros(3), "x.npy")


def test_bad_create_leaves_existing_workspace_intact(segments_factory):
    seg = segments_factory(6)
    emb = np.arange(18, dtype=np.float32).reshape(6, 3)
    ws = Workspace.create("keep", seg, emb, embedder="t", sample_rate=0)
    before = {p: (ws.root / p).read_bytes() for p in (WORKSPACE_JSON, SEGMENTS_PARQUET, EMBEDDINGS_NPY)}
    bad = emb.copy()
    bad[0, 0] = np.inf
    with pytest.raises(InputError):
        Workspace.create("keep", seg, bad, embedder="t", sample_rate=0)
    dup = seg.copy()
    dup.loc[1, "segment_id"] = dup.loc[0, "segment_id"]
    with pytest.raises(InputError, match="duplicate segment_id 'seg00000'"):
        Workspace.create("keep", dup, emb, embedder="t", sample_rate=0)
    with pytest.raises(InputError, match="6 segments but 5 embedding rows"):
        Workspace.create("keep", seg, emb[:5], embedder="t", sample_rate=0)
    after = {p: (ws.root / p).read_bytes() for p in before}
    assert after == before
    assert not [p for p in ws.root.parent.iterdir() if p.name.startswith(".keep.")]


def test_replace_keeps_models_folder(segments_factory):
    seg = segments_factory(4)
    ws = Workspace.create("r", seg, np.zeros((4, 2), np.float32), embedder="t", sample_rate=0)
    ws.models_dir.mkdir()
    (ws.models_dir / "marker").write_text("x")
    ws2 = Workspace.create("r", seg, np.ones((4, 2), np.float32), embedder="t", sample_rate=0)
    assert (ws2.models_dir / "marker").read_text() == "x"
    assert float(np.asarray(ws2.embeddings).sum()) == 8.0


def test_missing_and_foreign_workspace(tmp_path):
    with pytest.raises(NotFoundError, match="does not exist"):
        Workspace.open("nope")
    bad = tmp_path / "foreign"
    bad.mkdir()
    (bad / WORKSPACE_JSON).write_text(json.dumps({"hello": 1}))
    with pytest.raises(InputError, match="not a VoxSAE workspace file"):
        Workspace.open(bad)


def test_unknown_attribute_lists_known(segments_factory):
    ws = Workspace.create("u", segments_factory(3), np.zeros((3, 2), np.float32), embedder="t", sample_rate=0)
    with pytest.raises(NotFoundError, match="attributes: speaker"):
        ws.attribute_values("language")


# -- validate_embeddings: only real numbers, 2-D, rows and dimensions, float32's range ----------
@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.ones((3, 2), np.complex64), r"complex numbers \(complex64\); the imaginary part would be lost"),
        (np.ones((3, 2), bool), r"booleans \(dtype bool\)"),
        (np.array([["a", "b"], ["c", "d"]]), r"text \(dtype <U1\)"),
        (np.array([[b"a"], [b"b"]]), r"bytes \(dtype \|S1\)"),
        (np.array([[1, "x"], [None, 2.0]], dtype=object), r"Python objects \(dtype object\)"),
        (np.zeros(3, dtype=[("a", "f4"), ("b", "f4")]), r"a structured array \(fields a, b\)"),
        (np.zeros((2, 2), "datetime64[s]"), r"dates"),
        (np.zeros((5, 0), np.float32), r"0 dimensions \(shape \(5, 0\)\)"),
        (np.zeros((0, 4), np.float32), r"no embeddings \(0 rows\)"),
    ],
)
def test_embeddings_that_are_not_real_numbers_are_refused(array, message):
    with pytest.raises(InputError, match=r"^x\.npy: .*" + message):
        validate_embeddings(array, "x.npy")


def test_values_beyond_float32_are_refused_and_others_kept():
    big = np.zeros((4, 3), np.float64)
    big[2, 1] = -3.5e38  # finite as float64, inf as float32
    with pytest.raises(
        InputError, match=r"1 embedding row\(s\) hold values beyond float32's range .*first bad row index 2"
    ):
        validate_embeddings(big, "x.npy")
    big[2, 1] = 3.0e38  # the largest float32 is 3.4e38: kept
    out = validate_embeddings(big, "x.npy")
    assert out.dtype == np.float32 and out[2, 1] == np.float32(3.0e38)
    ints = validate_embeddings(np.arange(6, dtype=np.int64).reshape(3, 2), "x.npy")
    assert ints.dtype == np.float32 and ints.tolist() == [[0, 1], [2, 3], [4, 5]]
    half = validate_embeddings(np.full((2, 2), 0.5, np.float16), "x.npy")
    assert half.dtype == np.float32 and half.tolist() == [[0.5, 0.5], [0.5, 0.5]]


# -- where a workspace may be written ---------------------------------------------------------
def test_an_existing_folder_that_is_not_a_workspace_is_refused(segments_factory, tmp_path):
    seg, emb = segments_factory(3), np.zeros((3, 2), np.float32)
    mine = tmp_path / "my_project"
    mine.mkdir()
    (mine / "embeddings.npy").write_bytes(b"the user's own file")
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(
        InputError,
        match=r"my_project: an existing folder that is not a VoxSAE workspace .*embeddings\.npy, notes\.txt",
    ):
        Workspace.create(mine, seg, emb, embedder="t", sample_rate=0)
    assert (mine / "embeddings.npy").read_bytes() == b"the user's own file"
    assert sorted(p.name for p in mine.iterdir()) == ["embeddings.npy", "notes.txt"]
    nx = tmp_path / "nx"  # another tool's workspace.json (an Nx monorepo has one)
    nx.mkdir()
    (nx / WORKSPACE_JSON).write_text('{"version": 2, "projects": {}}')
    with pytest.raises(InputError, match=r"nx: its workspace\.json is not a VoxSAE workspace file"):
        Workspace.create(nx, seg, emb, embedder="t", sample_rate=0)
    assert (nx / WORKSPACE_JSON).read_text() == '{"version": 2, "projects": {}}'
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(InputError, match=r"afile: a file, not a folder"):
        Workspace.create(afile, seg, emb, embedder="t", sample_rate=0)
    # fine: an empty folder, and a folder holding only what an interrupted ingest cached
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(Workspace.create(empty, seg, emb, embedder="t", sample_rate=0)) == 3
    started = tmp_path / "started"
    (started / "cache" / "ingest").mkdir(parents=True)
    (started / "cache" / "ingest" / "0123abcd.npz").write_bytes(b"cached")
    assert check_target(started) == started
    assert len(Workspace.create(started, seg, emb, embedder="t", sample_rate=0)) == 3
    (started / "cache" / "user.txt").write_text("x")  # still a workspace: replacing it is fine
    assert check_target(started) == started


def _corpus(segments_factory, n, value):
    """n segments and embeddings all `value` (the workspace's content tells old from new)."""
    return segments_factory(n, seed=int(value)), np.full((n, 3), value, np.float32)


def _consistent(root):
    """The workspace at root opens, and its files are the ones its workspace.json describes."""
    ws = Workspace(root)
    assert fingerprint_of(ws.segments, np.asarray(ws.embeddings)) == ws.fingerprint
    return ws


def test_a_failure_at_any_rename_leaves_the_old_or_the_new_workspace(tmp_path, monkeypatch, segments_factory):
    """Replacing a workspace renames: the staged audio folder into the staging (shutil.move), the
    staging to .new-corpus (the commit), then the old audio aside, the new audio, embeddings,
    segments and workspace.json into place. Each rename in turn fails once."""
    old_seg, old_emb = _corpus(segments_factory, 6, 1.0)
    new_seg, new_emb = _corpus(segments_factory, 9, 2.0)
    real_replace, real_rename = os.replace, os.rename
    state = {"fail_at": 0, "calls": 0}

    def failing(fn):
        def run(src, dst):
            state["calls"] += 1
            if state["calls"] == state["fail_at"]:
                raise OSError(errno.EIO, "Input/output error")
            return fn(src, dst)

        return run

    outcomes = []
    for fail_at in range(1, 9):
        root = tmp_path / f"w{fail_at}"
        Workspace.create(root, old_seg, old_emb, embedder="old", sample_rate=0)
        (root / "audio").mkdir()
        (root / "audio" / "old.flac").write_bytes(b"old audio")
        (root / "models").mkdir()
        (root / "models" / "m").write_text("model")
        new_audio = tmp_path / f"staged_audio{fail_at}"
        new_audio.mkdir()
        (new_audio / "new.flac").write_bytes(b"new audio")
        state.update(fail_at=fail_at, calls=0)
        with monkeypatch.context() as patch:
            patch.setattr(os, "replace", failing(real_replace))
            patch.setattr(os, "rename", failing(real_rename))
            try:
                Workspace.create(
                    root, new_seg, new_emb, embedder="new", sample_rate=0, extra_files={"audio": new_audio}
                )
                failed = False
            except atomic.WriteError as exc:
                assert str(root) in str(exc) and "Input/output error" in str(exc)
                failed = True
        ws = _consistent(root)  # opening finishes a commit the failure interrupted
        outcomes.append((failed, ws.embedder, len(ws)))
        audio = sorted(p.name for p in (root / "audio").iterdir())
        assert audio == (["new.flac"] if ws.embedder == "new" else ["old.flac"])
        assert (root / "models" / "m").read_text() == "model"
        assert not [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert outcomes == [
        (False, "new", 9),  # shutil.move copies when the rename fails
        (True, "old", 6),  # the commit failed: the old workspace, untouched
        *[(True, "new", 9)] * 5,  # committed: whoever opens the workspace next moves the rest in
        (False, "new", 9),  # no failure
    ]


KILL_MID_SWAP = """
import os, signal
import numpy as np
import pandas as pd
import core.workspace.workspace as wsmod
real, calls = os.replace, []
def replace(src, dst):
    calls.append(dst)
    if len(calls) == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
wsmod.os.replace = replace
new = pd.read_parquet({segments!r})
wsmod.Workspace.create({root!r}, new, np.full((9, 3), 2.0, np.float32), embedder="new", sample_rate=0)
"""


def test_kill_9_mid_swap_leaves_a_workspace_that_opens_complete(tmp_path, segments_factory):
    """kill -9 between the renames that move the new corpus in: the new embeddings are in place,
    the old segments and workspace.json still there (every other point: the test above)."""
    kill_at = 2
    root = tmp_path / "w"
    Workspace.create(root, *_corpus(segments_factory, 6, 1.0), embedder="old", sample_rate=0)
    segments_factory(9, seed=2).to_parquet(tmp_path / "new.parquet")
    script = KILL_MID_SWAP.format(segments=str(tmp_path / "new.parquet"), kill_at=kill_at, root=str(root))
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert (root / NEW_CORPUS_DIR).is_dir()  # the kill left the commit half moved in
    ws = _consistent(root)
    assert ws.embedder == "new" and len(ws) == 9
    assert not (root / NEW_CORPUS_DIR).exists()


# -- names, links, hand edits, fingerprints, two writers ----------------------------------------------
@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("a\x00b", r"--workspace 'a\\x00b': a NUL byte cannot be part of a folder name"),
        ("x" * 256, r"--workspace 'x{57}'\.\.\.: a folder name of 256 bytes; at most 255 fit"),
        ("deep/" + "é" * 128, r"a folder name of 256 bytes"),  # bytes, not characters
    ],
    ids=["nul", "256-chars", "256-bytes"],
)
def test_names_no_folder_can_have(name, match):
    with pytest.raises(InputError, match=match):
        resolve_workspace_path(name)
    assert resolve_workspace_path("x" * 255).name == "x" * 255


def test_a_data_folder_that_is_a_file(tmp_path, monkeypatch):
    (tmp_path / "data").write_text("")
    monkeypatch.setenv("VOXSAE_DATA", str(tmp_path / "data"))
    with pytest.raises(InputError, match=r"VOXSAE_DATA .*/data is a file, not a folder of workspaces"):
        resolve_workspace_path("w")


def test_a_broken_link_is_not_a_target(tmp_path):
    (tmp_path / "w").symlink_to(tmp_path / "gone")
    with pytest.raises(InputError, match=r"w: a broken link \(to .*gone\)"):
        check_target(tmp_path / "w")


def test_workspace_json_fields_are_checked(segments_factory, tmp_path):
    from core.workspace.workspace import read_info

    ws = Workspace.create(
        tmp_path / "w", segments_factory(4), np.ones((4, 2), np.float32), embedder="t", sample_rate=0
    )
    meta = ws.root / WORKSPACE_JSON
    good = json.loads(meta.read_text())
    assert read_info(ws.root).files == {
        name: [(ws.root / name).stat().st_size, (ws.root / name).stat().st_mtime_ns]
        for name in (SEGMENTS_PARQUET, EMBEDDINGS_NPY)
    }
    for change, why in [
        ({"sample_rate": True}, "sample_rate True is not a whole number"),
        ({"n_segments": 0}, "n_segments 0 is not positive"),
        ({"name": 3}, "name 3 is not text"),
        ({"files": []}, r"files \[\] is not a JSON object"),
        ({"format_version": 2}, "format 2, written by a newer VoxSAE; this VoxSAE reads format 1"),
    ]:
        meta.write_text(json.dumps({**good, **change}))
        with pytest.raises(InputError, match=rf"workspace\.json: not a VoxSAE workspace file \({why}"):
            Workspace(ws.root)
    meta.write_text(json.dumps({k: v for k, v in good.items() if k != "files"}))  # made before `files`
    assert Workspace(ws.root).fingerprint == good["fingerprint"]  # computed from the content


def test_the_fingerprint_is_read_from_content_only_when_the_files_changed(
    segments_factory, tmp_path, monkeypatch
):
    import time

    import core.workspace.workspace as wsmod

    ws = Workspace.create(
        tmp_path / "w", segments_factory(6), np.ones((6, 3), np.float32), embedder="t", sample_rate=0
    )
    computed = []
    real = wsmod.fingerprint_of
    monkeypatch.setattr(wsmod, "fingerprint_of", lambda *a: computed.append(1) or real(*a))
    assert Workspace(ws.root).fingerprint == ws.info.fingerprint and computed == []
    time.sleep(0.05)  # a later clock tick
    np.save(ws.root / EMBEDDINGS_NPY, np.full((6, 3), 2.0, np.float32))
    again = Workspace(ws.root)
    assert again.fingerprint != ws.info.fingerprint and computed == [1]
    assert again.fingerprint == real(again.segments, np.asarray(again.embeddings))


def test_a_writer_finishes_a_commit_it_finds_before_staging_its_own(segments_factory, tmp_path, monkeypatch):
    """What a writer that waited for the lock finds: a predecessor's committed .new-corpus."""
    import core.workspace.workspace as wsmod

    root = tmp_path / "w"
    Workspace.create(root, *_corpus(segments_factory, 6, 1.0), embedder="old", sample_rate=0)
    monkeypatch.setattr(wsmod, "_finish_commit", lambda r: None)  # the predecessor stops after its commit
    Workspace.create(root, *_corpus(segments_factory, 7, 2.0), embedder="a", sample_rate=0)
    assert (root / NEW_CORPUS_DIR).is_dir()
    monkeypatch.undo()
    ws = Workspace.create(root, *_corpus(segments_factory, 9, 3.0), embedder="b", sample_rate=0)
    assert ws.embedder == "b" and len(ws) == 9 and not (root / NEW_CORPUS_DIR).exists()


def test_a_commit_folder_that_is_a_link_is_not_followed(segments_factory, tmp_path):
    root = tmp_path / "w"
    Workspace.create(root, *_corpus(segments_factory, 6, 1.0), embedder="old", sample_rate=0)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.md").write_text("mine")
    (root / NEW_CORPUS_DIR).symlink_to(tmp_path / "mine")
    with pytest.raises(InputError, match=r"\.new-corpus: a link \(to .*mine\), not followed"):
        Workspace(root)
    assert (tmp_path / "mine" / "notes.md").read_text() == "mine"


def test_summary_fields_are_not_replaced_by_columns(segments_factory, tmp_path):
    seg = segments_factory(4).assign(dim="x", embedder="y", language="es")
    ws = Workspace.create(tmp_path / "w", seg, np.ones((4, 2), np.float32), embedder="t", sample_rate=0)
    info = ws.summary()
    assert (info["dim"], info["embedder"], info["segments"]) == (2, "t", 4)
    assert (
        info["dim (column)"] == {"x": 4}
        and info["embedder (column)"] == {"y": 4}
        and info["language"] == {"es": 4}
    )


def test_continuous_attributes_are_the_numeric_metadata_columns(segments_factory):
    seg = segments_factory(6)
    seg["f0_median_hz"] = [110.0, 120.5, 200.0, 210.0, float("nan"), 190.0]
    seg["age"] = [31, 45, 22, 60, 38, 29]
    seg["consented"] = [True, False, True, True, False, True]
    seg["accent"] = ["a", "b", "a", "b", "a", "b"]
    ws = Workspace.create("cont", seg, np.zeros((6, 2), np.float32), embedder="t", sample_rate=0)
    assert ws.continuous_attributes() == ["f0_median_hz", "age"]
    # base columns (start_s, duration_s, ...) are numbers but not attributes
    assert "duration_s" not in ws.continuous_attributes()
    assert {"consented", "accent", "f0_median_hz", "age"} <= set(ws.attributes())
