"""Red team: what the hostile cases of ingest, import-embeddings, demo-corpus, summary, playback,
the probe upload and the label store (test_hostile_{ingest,import,disk,dashboard}.py) did not
try yet.

Metadata CSVs with a NUL byte, a BOM and CRLF, too many columns, a `file` that is a symlink loop
or differs from the file on disk only in letter case or Unicode normalisation; audio folders with a
symlink loop, a name that is not UTF-8, float samples far past full scale, a streamed FLAC without
a length; workspace names with a NUL, 300 characters, a broken link, VOXSAE_DATA a file, a planted
`.new-corpus` link; workspace files edited by hand (workspace.json lying about dim, n_segments,
types or format, segments.parquet deleted, damaged, cut short or without ids, embeddings.npy
pickled, big-endian, float64, text, or replaced by other values); two writers of one workspace at
once; the umask; labels.sqlite as a link, a hand-edited or foreign label database, label files
that name a field twice; summary and probe on workspaces whose columns are named like their own
fields or that hold one segment; bad times in a metadata CSV; an .npy header declaring terabytes;
negative seeds, absurd scales and job counts.

Each refusal: non-zero exit, one `error:` line naming the input and what is wrong, no traceback,
every file that existed before byte-identical (hostile_harness.assert_refused).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from bad_audio import non_utf8_name, streamed_flac, write_voice
from hostile_harness import REPO, Outcome, assert_refused, request, run_cli, snapshot

from core.constants import EMBEDDINGS_NPY, NEW_CORPUS_DIR, SEGMENTS_PARQUET, WORKSPACE_JSON
from core.workspace.workspace import Workspace, fingerprint_of

N, DIM = 40, 16


def corpus(n: int = N, dim: int = DIM, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """n segments of 8 speakers, Spanish and English, and random dim-d embeddings."""
    seg = pd.DataFrame(
        {
            "segment_id": [f"s{i:03d}" for i in range(n)],
            "source": "",
            "start_s": np.arange(n) * 5.0,
            "end_s": np.arange(n) * 5.0 + 4.0,
            "duration_s": 4.0,
            "speaker": [f"spk{i % 8}" for i in range(n)],
            "language": ["es" if i % 2 else "en" for i in range(n)],
            "class": "voice",
        }
    )
    return seg, np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.fixture
def small_ws(data_root) -> Path:
    """Workspace `s` (40 segments, 16-d, imported embeddings, no models) at VOXSAE_DATA/s."""
    seg, emb = corpus()
    return Workspace.create("s", seg, emb, embedder="imported", sample_rate=0).root


@pytest.fixture
def calls(tmp_path) -> Path:
    """A folder with one good 7 s voice file, a.wav."""
    write_voice(tmp_path / "calls" / "a.wav", seed=1)
    return tmp_path / "calls"


def ingest(folder, *extra) -> Outcome:
    return run_cli("ingest", folder, "--workspace", "w", "--jobs", "1", *extra)


def refused_ingest(folder, meta_text: str, *needles, tmp_path, data_root):
    """ingest `folder` with a metadata CSV of `meta_text` into `w`: a clean refusal, before any work."""
    meta = tmp_path / "meta.csv"
    meta.write_bytes(meta_text.encode("utf-8"))
    roots = [data_root, folder, meta]
    before = snapshot(*roots)
    line = assert_refused(
        ingest(folder, "--metadata", meta), *needles, before=before, roots=roots, allow_new=False
    )
    assert not (data_root / "w").exists()
    return line


def refused_import(meta_text: str, *needles, tmp_path, data_root, n: int = N):
    """import-embeddings of n good rows with a metadata CSV of `meta_text` into `w`: a clean refusal."""
    emb = tmp_path / "emb.npy"
    np.save(emb, corpus(n)[1])
    meta = tmp_path / "meta.csv"
    meta.write_bytes(meta_text.encode("utf-8"))
    roots = [data_root, emb, meta]
    before = snapshot(*roots)
    out = run_cli("import-embeddings", emb, "--workspace", "w", "--metadata", meta)
    return assert_refused(out, *needles, before=before, roots=roots, allow_new=False)


def metadata_text(seg: pd.DataFrame) -> str:
    return seg.drop(columns=["source", "start_s", "end_s", "duration_s"]).to_csv(index=False)


# -- metadata CSVs -------------------------------------------------------------------------------
def test_a_nul_byte_in_an_ingest_metadata_csv(calls, tmp_path, data_root):
    refused_ingest(
        calls,
        "file,speaker\na.wav,A\nb\x00.wav,B\n",
        "meta.csv row 3",
        "a NUL byte",
        tmp_path=tmp_path,
        data_root=data_root,
    )


def test_a_nul_byte_in_an_import_metadata_csv(tmp_path, data_root):
    text = metadata_text(corpus()[0]).replace("spk3", "sp\x00k3", 1)
    refused_import(text, "meta.csv row 5", "a NUL byte", tmp_path=tmp_path, data_root=data_root)


def test_a_metadata_csv_with_too_many_columns(calls, tmp_path, data_root):
    """10^5 columns in an 8 MB CSV took import-embeddings 2 min 40 s (and every later read of the
    segment table with it): the column count is refused up front."""
    header = ",".join(["file", *(f"c{i}" for i in range(5000))])
    row = ",".join(["a.wav", *("x" * 5000)])
    line = refused_ingest(
        calls,
        f"{header}\n{row}\n",
        "meta.csv",
        "5,001 columns",
        "at most 1,000",
        tmp_path=tmp_path,
        data_root=data_root,
    )
    assert len(line) < 300


def test_a_csv_with_a_bom_and_crlf_line_ends_reads_clean(tmp_path, data_root):
    seg, emb = corpus()
    meta = tmp_path / "excel.csv"
    meta.write_bytes(b"\xef\xbb\xbf" + metadata_text(seg).replace("\n", "\r\n").encode())
    np.save(tmp_path / "emb.npy", emb)
    out = run_cli("import-embeddings", tmp_path / "emb.npy", "--workspace", "w", "--metadata", meta)
    assert out.rc == 0, out
    got = Workspace.open("w").segments
    assert list(got.columns[:1]) == ["segment_id"] and list(got["speaker"]) == list(seg["speaker"])
    assert not got.map(lambda v: isinstance(v, str) and ("\r" in v or "\ufeff" in v)).any().any()


def test_a_folder_given_as_the_metadata_csv(calls, tmp_path, data_root):
    """It was reported as 'metadata CSV not found'."""
    (tmp_path / "meta.csv").mkdir()
    before = snapshot(data_root)
    out = ingest(calls, "--metadata", tmp_path / "meta.csv")
    line = assert_refused(
        out, "meta.csv", "a folder, not a metadata CSV file", before=before, roots=[data_root]
    )
    assert "not found" not in line


def test_a_row_naming_a_symlink_loop(calls, tmp_path, data_root):
    (calls / "loop1.wav").symlink_to(calls / "loop2.wav")
    (calls / "loop2.wav").symlink_to(calls / "loop1.wav")
    refused_ingest(
        calls,
        "file,speaker\na.wav,A\nloop1.wav,B\n",
        "meta.csv row 3",
        "file 'loop1.wav'",
        "a symlink loop",
        tmp_path=tmp_path,
        data_root=data_root,
    )


@pytest.mark.parametrize(
    ("on_disk", "in_csv", "why"),
    [
        ("Call-A.wav", "call-a.wav", "differ only in letter case"),
        (
            unicodedata.normalize("NFC", "llamada-café.wav"),
            unicodedata.normalize("NFD", "llamada-café.wav"),
            "differ only in Unicode normalisation",
        ),
    ],
    ids=["case", "nfd-vs-nfc"],
)
def test_a_file_that_differs_from_the_one_on_disk_only_in_spelling(tmp_path, data_root, on_disk, in_csv, why):
    """On Linux the names are different files; the error says which file the row probably means."""
    folder = tmp_path / "calls"
    write_voice(folder / on_disk, seed=1)
    line = refused_ingest(
        folder,
        f"file,speaker\n{in_csv},A\n",
        "meta.csv row 2",
        "not found under",
        f"the folder holds {on_disk!r}",
        why,
        tmp_path=tmp_path,
        data_root=data_root,
    )
    assert in_csv in line


def test_a_trailing_space_in_file_still_names_the_file(calls, tmp_path, data_root):
    (tmp_path / "meta.csv").write_text("file,speaker\na.wav  ,Ana\n")
    out = ingest(calls, "--metadata", tmp_path / "meta.csv")
    assert out.rc == 0, out
    seg = Workspace.open("w").segments
    assert list(seg["source"]) == ["a.wav"] and list(seg["speaker"]) == ["Ana"]


# -- audio folders ---------------------------------------------------------------------------------
def test_a_symlink_loop_in_the_folder_is_skipped(calls, data_root):
    (calls / "loop1.wav").symlink_to(calls / "loop2.wav")
    (calls / "loop2.wav").symlink_to(calls / "loop1.wav")
    out = ingest(calls)
    assert out.rc == 0 and "Traceback" not in out.err, out
    ws = Workspace.open("w")
    assert list(ws.segments["source"]) == ["a.wav"]
    skipped = {s["file"]: s["reason"] for s in ws.info.provenance["skipped"]}
    assert skipped == {"loop1.wav": "a symlink loop: not read", "loop2.wav": "a symlink loop: not read"}


def test_a_file_name_that_is_not_utf8_is_skipped_with_its_reason(calls, data_root):
    name = non_utf8_name(calls)
    out = ingest(calls)
    assert out.rc == 0 and "Traceback" not in out.err, out
    shown = name.decode("utf-8", "backslashreplace")  # caf\xe9-\xff.wav
    reason = "its name is not valid UTF-8: rename it (e.g. convmv -f latin1 -t utf8) to ingest it"
    assert f"    {shown}: {reason}" in out.out
    out.out.encode("utf-8")  # printable on any UTF-8 terminal: no lone surrogates
    ws = Workspace.open("w")
    assert list(ws.segments["source"]) == ["a.wav"]
    assert ws.info.provenance["skipped"] == [{"file": shown, "reason": reason}]


def test_float_samples_far_past_full_scale_are_corrupt_not_silent(calls, data_root):
    """A float WAV of +-3e38 overflowed the segmenter's energy into inf and was skipped as 'no
    non-silent stretch'."""
    wild = np.full(16_000 * 6, 3e38, np.float32)
    wild[::2] *= -1
    sf.write(calls / "wild.wav", wild, 16_000, subtype="FLOAT")
    out = ingest(calls)
    assert out.rc == 0, out
    skipped = {s["file"]: s["reason"] for s in Workspace.open("w").info.provenance["skipped"]}
    assert skipped == {"wild.wav": "corrupt audio (samples reach 3e+38; audio lies within -1..1)"}


def test_a_streamed_flac_without_a_length_is_ingested(calls, data_root):
    """libsndfile says 2**63 - 1 frames for a FLAC whose header gives no length; it was refused as
    'too long to decode here (320255973501.9 h needs about 274877906944.0 GiB ...)'."""
    streamed_flac(calls / "stream.flac", seed=3)
    out = ingest(calls)
    assert out.rc == 0 and "skipped" not in out.out, out
    seg = Workspace.open("w").segments
    stream = seg[seg["source"] == "stream.flac"]
    assert len(stream) == 1 and 5.5 < float(stream["duration_s"].iloc[0]) <= 8.0


# -- workspace names and the data folder ----------------------------------------------------------
def import_corpus(tmp_path, workspace: str | Path, seed: int = 0) -> tuple[Outcome, np.ndarray]:
    """import-embeddings of corpus(seed) (written as tmp_path/emb.npy and m.csv) into `workspace`."""
    seg, emb = corpus(seed=seed)
    np.save(tmp_path / "emb.npy", emb)
    (tmp_path / "m.csv").write_text(metadata_text(seg))
    argv = [
        "import-embeddings",
        tmp_path / "emb.npy",
        "--workspace",
        workspace,
        "--metadata",
        tmp_path / "m.csv",
    ]
    return run_cli(*argv), emb


def test_a_nul_byte_in_the_workspace_name(tmp_path, data_root):
    before = snapshot(data_root)
    out, _ = import_corpus(tmp_path, "a\x00b")
    assert_refused(
        out, "--workspace 'a\\x00b'", "a NUL byte", before=before, roots=[data_root], allow_new=False
    )


def test_a_300_character_workspace_name(tmp_path, data_root):
    before = snapshot(data_root)
    out, _ = import_corpus(tmp_path, "x" * 300)
    line = assert_refused(
        out, "--workspace", "300 bytes", "at most 255", before=before, roots=[data_root], allow_new=False
    )
    assert len(line) < 300


def test_a_broken_link_as_the_workspace_is_not_followed(tmp_path, data_root):
    """data/w -> /somewhere/else that does not exist: import-embeddings created /somewhere/else
    and wrote the workspace there."""
    elsewhere = tmp_path / "elsewhere" / "w"
    (data_root / "w").symlink_to(elsewhere)
    before = snapshot(data_root)
    out, _ = import_corpus(tmp_path, "w")
    assert_refused(
        out, str(data_root / "w"), "a broken link", str(elsewhere), before=before, roots=[data_root]
    )
    assert not (tmp_path / "elsewhere").exists()


def test_a_link_to_a_workspace_elsewhere_is_used_where_it_leads(small_ws, tmp_path, data_root):
    """The control: data/big -> a workspace on another disk is replaced in place."""
    (data_root / "big").symlink_to(small_ws)
    out, emb = import_corpus(tmp_path, "big", seed=5)
    assert out.rc == 0, out
    assert (data_root / "big").is_symlink()
    np.testing.assert_array_equal(np.asarray(Workspace.open(small_ws).embeddings), emb)


def test_voxsae_data_pointing_to_a_file(tmp_path, monkeypatch):
    not_a_folder = tmp_path / "data.txt"
    not_a_folder.write_text("keep me")
    monkeypatch.setenv("VOXSAE_DATA", str(not_a_folder))
    before = snapshot(not_a_folder)
    for out in (import_corpus(tmp_path, "w")[0], run_cli("summary", "--workspace", "w")):
        assert_refused(
            out, f"VOXSAE_DATA {not_a_folder}", "is a file, not a folder", before=before, roots=[not_a_folder]
        )


def test_a_planted_new_corpus_link_is_not_followed(small_ws, tmp_path):
    """A `.new-corpus` link in a workspace (a commit folder, to the code that finishes commits)
    leading to a user's folder: opening the workspace moved the user's files into it."""
    users = tmp_path / "thesis"
    users.mkdir()
    (users / "chapter1.tex").write_text("years of work")
    (users / WORKSPACE_JSON).write_text("{}")
    (small_ws / NEW_CORPUS_DIR).symlink_to(users)
    before = snapshot(users, small_ws)
    out = run_cli("summary", "--workspace", "s")
    assert_refused(
        out, str(small_ws / NEW_CORPUS_DIR), "a link", "not followed", before=before, roots=[users, small_ws]
    )
    assert sorted(p.name for p in users.iterdir()) == ["chapter1.tex", WORKSPACE_JSON]


# -- workspace files edited by hand ----------------------------------------------------------------
def _edit_json(**changes):
    def edit(root: Path) -> None:
        info = json.loads((root / WORKSPACE_JSON).read_text())
        for key, value in changes.items():
            info[key] = value
        (root / WORKSPACE_JSON).write_text(json.dumps(info))

    return edit


def _save_embeddings(transform):
    def edit(root: Path) -> None:
        path = root / EMBEDDINGS_NPY
        arr = np.load(path)
        os.remove(path)
        np.save(path, transform(arr), allow_pickle=True)

    return edit


def _rewrite_segments(transform):
    def edit(root: Path) -> None:
        path = root / SEGMENTS_PARQUET
        transform(pd.read_parquet(path)).to_parquet(path, index=False)

    return edit


HAND_EDITS = {
    # workspace.json lies
    "dim-lie": (_edit_json(dim=99), ["embeddings.npy", "shape (40, 16)", "workspace.json says (40, 99)"]),
    "n-segments-lie": (_edit_json(n_segments=3), ["segments.parquet", "40 rows", "workspace.json says 3"]),
    "dim-as-text": (_edit_json(dim="16"), ["workspace.json", "dim '16' is not a whole number"]),
    "provenance-null": (
        _edit_json(provenance=None),
        ["workspace.json", "provenance None is not a JSON object"],
    ),
    "newer-format": (
        _edit_json(format_version=99),
        ["workspace.json", "format 99", "this VoxSAE reads format 1"],
    ),
    # segments.parquet
    "segments-deleted": (
        lambda r: (r / SEGMENTS_PARQUET).unlink(),
        ["workspace s is incomplete", "segments.parquet is missing"],
    ),
    "segments-damaged": (
        lambda r: (r / SEGMENTS_PARQUET).write_bytes(b"junk" * 100),
        ["segments.parquet", "not a readable Parquet file"],
    ),
    "segments-cut-short": (
        _rewrite_segments(lambda s: s.iloc[:30]),
        ["segments.parquet", "30 rows", "workspace.json says 40"],
    ),
    "segments-without-ids": (
        _rewrite_segments(lambda s: s.drop(columns=["segment_id"])),
        ["segments.parquet", "lacks column(s) segment_id"],
    ),
    # embeddings.npy
    "embeddings-deleted": (
        lambda r: (r / EMBEDDINGS_NPY).unlink(),
        ["workspace s is incomplete", "embeddings.npy is missing"],
    ),
    "embeddings-pickled": (
        _save_embeddings(lambda a: np.array(a.tolist(), dtype=object)),
        ["embeddings.npy", "pickled Python objects", "never loaded"],
    ),
    "embeddings-big-endian": (
        _save_embeddings(lambda a: a.astype(">f4")),
        ["embeddings.npy", "holds >f4 values", "float32"],
    ),
    "embeddings-float64": (
        _save_embeddings(lambda a: a.astype("<f8")),
        ["embeddings.npy", "holds <f8 values", "float32"],
    ),
    "embeddings-text": (
        lambda r: (r / EMBEDDINGS_NPY).write_text("0.1,0.2\n"),
        ["embeddings.npy", "not a .npy file"],
    ),
}


@pytest.mark.parametrize("edit", list(HAND_EDITS))
def test_a_workspace_edited_by_hand_is_refused_on_open(small_ws, data_root, edit):
    """Before: a lying dim or n_segments made summary print the lie and drop the probes without
    a word, a cut-short segment table was silently misaligned with the embeddings, a damaged or
    pickled file was a traceback, a missing one 'error: a file: ...'."""
    change, needles = HAND_EDITS[edit]
    change(small_ws)
    before = snapshot(data_root)
    assert_refused(run_cli("summary", "--workspace", "s"), *needles, before=before, roots=[data_root])
    ws = request(Workspace.open, "s")  # what every command and page opens it with
    assert_refused(ws, *needles)


def test_a_damaged_workspace_can_be_replaced(small_ws, tmp_path):
    """The way out the refusals name: importing a corpus over the damaged one."""
    (small_ws / SEGMENTS_PARQUET).write_bytes(b"junk")
    out, emb = import_corpus(tmp_path, "s", seed=7)
    assert out.rc == 0, out
    np.testing.assert_array_equal(np.asarray(Workspace.open("s").embeddings), emb)


def test_fortran_ordered_embeddings_still_open(small_ws):
    """The control: the same numbers in Fortran order are the same corpus."""
    fp = Workspace.open("s").fingerprint
    _save_embeddings(np.asfortranarray)(small_ws)
    ws = Workspace.open("s")
    assert ws.fingerprint == fp and np.asarray(ws.embeddings).shape == (N, DIM)


@pytest.mark.parametrize(
    "edit",
    [
        _save_embeddings(lambda a: a[::-1].copy()),
        _rewrite_segments(lambda s: s.assign(language=s["language"].iloc[::-1].to_numpy())),
    ],
    ids=["embeddings", "a-labels-column"],
)
def test_corpus_files_replaced_by_hand_change_the_fingerprint(small_ws, edit):
    """Models, analyses and caches are keyed on the workspace fingerprint: one that stayed as
    workspace.json recorded it after the corpus files were replaced would serve their results
    for the old corpus."""
    recorded = Workspace.open("s").fingerprint
    time.sleep(0.05)  # a hand edit comes later than the clock tick the workspace was written in
    edit(small_ws)
    ws = Workspace.open("s")
    assert ws.fingerprint != recorded
    assert ws.fingerprint == fingerprint_of(ws.segments, np.asarray(ws.embeddings))


# -- two writers at once -----------------------------------------------------------------------------
def test_a_writer_that_waited_for_another_finishes_its_commit_first(small_ws, monkeypatch):
    """B passes check_target, then waits for the folder lock while A commits (.new-corpus in the
    folder, not moved in yet). B's commit rename then met A's folder: 'cannot write
    workspace.json: Directory not empty'. Now B moves A's corpus in first, then commits its own."""
    import fcntl

    import core.workspace.workspace as wsmod

    waiting = threading.Event()
    real_flock = fcntl.flock

    def flock(fd, op):
        if threading.current_thread().name == "B":
            waiting.set()
        return real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    outcome = {}

    def writer_b():
        outcome["b"] = request(Workspace.create, small_ws, *corpus(seed=2), embedder="B", sample_rate=0)

    with wsmod._writer_lock(small_ws):
        b = threading.Thread(target=writer_b, name="B")
        b.start()
        assert waiting.wait(30)
        time.sleep(0.2)  # B now blocks on the lock
        seg, emb = corpus(n=12, seed=1)  # A's committed corpus, as create leaves it before moving it in
        staged = small_ws / NEW_CORPUS_DIR
        staged.mkdir()
        seg.to_parquet(staged / SEGMENTS_PARQUET, index=False)
        np.save(staged / EMBEDDINGS_NPY, emb)
        info = json.loads((small_ws / WORKSPACE_JSON).read_text())
        info.update(embedder="A", n_segments=12, fingerprint=fingerprint_of(seg, emb), files=None)
        (staged / WORKSPACE_JSON).write_text(json.dumps(info))
    b.join(60)
    assert outcome["b"].rc == 0, outcome["b"]
    ws = Workspace.open("s")
    assert ws.embedder == "B" and len(ws) == N
    assert not [p.name for p in small_ws.iterdir() if p.name.startswith(".")]


def test_two_ingests_into_one_workspace_keep_each_others_cache_writes(tmp_path, data_root, monkeypatch):
    """Ingest B is writing a cache entry (its temporary file open) when ingest A of another folder
    into the same workspace finishes: A's clean-up of 'a cache write a killed run never finished'
    deleted B's file under it, and B failed with 'cannot write ...: No such file or directory'."""
    folder_a, folder_b = tmp_path / "a", tmp_path / "b"
    write_voice(folder_a / "a.wav", seed=1)
    write_voice(folder_b / "b.wav", seed=2)
    assert ingest(folder_a).rc == 0  # the embedder is loaded; the workspace exists
    writing, a_done = threading.Event(), threading.Event()
    real_savez = np.savez

    def savez(fh, **arrays):  # only ingest's cache writes call it
        real_savez(fh, **arrays)
        if threading.current_thread().name == "B" and not writing.is_set():
            writing.set()  # B's temporary file is written and still open: A runs to its end now
            assert a_done.wait(120)

    monkeypatch.setattr(np, "savez", savez)
    outcome = {}
    b = threading.Thread(target=lambda: outcome.update(b=ingest(folder_b)), name="B")
    b.start()
    assert writing.wait(120)
    write_voice(folder_a / "a2.wav", seed=4)
    out_a = ingest(folder_a)
    a_done.set()
    b.join(120)
    assert out_a.rc == 0, out_a
    assert outcome["b"].rc == 0, outcome["b"]
    assert list(Workspace.open("w").segments["source"]) == ["b.wav"]  # B finished last


# -- the umask ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o077, 0o600, 0o700), (0o022, 0o644, 0o755)])
def test_modes_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    """import-embeddings and a label save in a fresh process under `umask`: every file and folder
    of the workspace has the mode a plain open()/mkdir() gives under it."""
    seg, emb = corpus()
    np.save(tmp_path / "emb.npy", emb)
    (tmp_path / "m.csv").write_text(metadata_text(seg))
    data = tmp_path / "data"
    script = (
        "import sys; from core.cli import main; from core.labels.store import LabelStore;"
        "from core.workspace.workspace import Workspace;"
        f"rc = main(['import-embeddings', {str(tmp_path / 'emb.npy')!r}, '--workspace', 'w', "
        f"'--metadata', {str(tmp_path / 'm.csv')!r}]);"
        "LabelStore.for_workspace(Workspace.open('w')).save('m', 1, 'x'); sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "VOXSAE_DATA": str(data)},
        preexec_fn=lambda: os.umask(umask),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    modes = {p.relative_to(data).as_posix(): p.stat().st_mode & 0o777 for p in [data, *data.rglob("*")]}
    assert modes == {
        ".": dir_mode,
        "w": dir_mode,
        "w/workspace.json": file_mode,
        "w/segments.parquet": file_mode,
        "w/embeddings.npy": file_mode,
        "w/labels.sqlite": file_mode,
    }


# -- labels.sqlite ------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["an-empty-file", "nowhere"])
def test_a_label_store_that_is_a_link_is_never_written_through(small_ws, tmp_path, target):
    """labels.sqlite -> an empty file (a stand-in for /etc/passwd or a cron file) or a path that
    does not exist: a save wrote a 24 KB SQLite database there."""
    from core.labels.store import LabelStore

    decoy = tmp_path / target
    if target == "an-empty-file":
        decoy.write_bytes(b"")
    (small_ws / "labels.sqlite").symlink_to(decoy)
    store = LabelStore.for_workspace(Workspace.open("s"))
    before = snapshot(small_ws, tmp_path)
    for call in (lambda: store.save("m", 1, "x"), lambda: store.all()):
        assert_refused(
            request(call),
            str(small_ws / "labels.sqlite"),
            "a link",
            "never followed",
            before=before,
            roots=[small_ws, tmp_path],
            allow_new=False,
        )
    assert decoy.exists() == (target == "an-empty-file") and (not decoy.exists() or decoy.stat().st_size == 0)


def test_a_label_csv_naming_a_column_twice(small_ws):
    """`model,latent,name,latent`: the second latent silently won (latent 5 was saved)."""
    from core.labels.store import LabelStore

    store = LabelStore.for_workspace(Workspace.open("s"))
    before = snapshot(small_ws)
    out = request(store.import_text, "model,latent,name,latent\nm,1,x,5\n", "csv", where="labels.csv")
    assert_refused(out, "labels.csv", "header names column 'latent' twice", before=before, roots=[small_ws])
    assert store.all() == []


def test_a_label_json_object_naming_a_key_twice(small_ws):
    """`{"latent": 1, "latent": 7}`: Python's json kept the last one silently."""
    from core.labels.store import LabelStore

    store = LabelStore.for_workspace(Workspace.open("s"))
    text = (
        json.dumps([{"model": "m", "latent": 2, "name": "ok"}])[:-1]
        + ', {"model": "m", "latent": 1, "latent": 7, "name": "x"}]'
    )
    report = store.import_text(text, "json", where="labels.json")
    assert report.imported == 1 and report.errors == [(2, "key 'latent' appears twice")]
    assert [(lab.latent, lab.name) for lab in store.all()] == [(2, "ok")]


@pytest.mark.parametrize(
    ("sql", "needles"),
    [
        ("UPDATE labels SET latent = 'abc'", ["model 'm'", "latent 'abc'", "is not a whole number"]),
        (
            "UPDATE labels SET confidence = 'high'",
            ["model 'm'", "latent 1", "confidence 'high' is not a number"],
        ),
    ],
    ids=["latent-text", "confidence-text"],
)
def test_a_hand_edited_label_database(small_ws, sql, needles):
    """SQLite stores any type in any column: a row edited by hand was a ValueError traceback."""
    import sqlite3

    from core.labels.store import LabelStore

    store = LabelStore.for_workspace(Workspace.open("s"))
    store.save("m", 1, "x")
    con = sqlite3.connect(store.path)
    con.execute(sql)
    con.commit()
    con.close()  # only labels.sqlite stays on disk
    before = snapshot(small_ws)
    for call in (store.all, lambda: store.for_model("m")):
        assert_refused(
            request(call), str(store.path), "a damaged label", *needles, before=before, roots=[small_ws]
        )


def test_another_tools_labels_sqlite(small_ws):
    """A labels.sqlite whose `labels` table has other columns: reading was an IndexError traceback."""
    import sqlite3

    from core.labels.store import LabelStore

    path = small_ws / "labels.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE labels (model TEXT, latent INT, name TEXT)")
    con.execute("INSERT INTO labels VALUES ('m', 1, 'theirs')")
    con.commit()
    con.close()
    store = LabelStore(path)
    before = snapshot(small_ws)
    for call in (store.all, lambda: store.save("m", 2, "mine")):
        assert_refused(
            request(call),
            str(path),
            "not a VoxSAE label database",
            "lacks column(s) description",
            before=before,
            roots=[small_ws],
        )


# -- summary and probe on odd workspaces ---------------------------------------------------------------
def test_summary_with_columns_named_like_its_own_fields(data_root):
    """Metadata columns `hours`, `segments`, `name` and `speakers` took the place of the summary's
    own figures: summary crashed formatting a dict as hours, and the report's title showed one."""
    seg, emb = corpus()
    seg = seg.assign(hours="night", segments="two", name=[f"caller {i % 3}" for i in range(N)], speakers="1")
    Workspace.create("odd", seg, emb, embedder="imported", sample_rate=0)
    out = run_cli("summary", "--workspace", "odd")
    assert out.rc == 0 and "Traceback" not in out.err, out
    assert "segments   40   hours 0.04   speakers 8" in out.out
    info = Workspace.open("odd").summary()
    assert (info["name"], info["segments"], info["speakers"]) == ("odd", 40, 8)
    assert info["hours (column)"] == {"night": 40} and info["name (column)"] == {
        "caller 0": 14,
        "caller 1": 13,
        "caller 2": 13,
    }


def test_summary_says_why_a_probe_is_not_measured(data_root):
    """One Spanish and one English speaker: the language probe was left out without a word."""
    seg, emb = corpus()
    seg["speaker"] = np.where(seg["language"] == "es", "ana", "bob")
    Workspace.create("two", seg, emb, embedder="imported", sample_rate=0)
    out = run_cli("summary", "--workspace", "two")
    assert out.rc == 0, out
    assert "  language: es vs en  not measured: need at least 2 speakers/calls on each side" in out.out


def test_probe_nearest_with_columns_named_cosine_and_row(trained_ws):
    """The nearest-segments table inserts `row` and `cosine`: a workspace with such metadata
    columns made the Probe a clip page raise 'cannot insert cosine, already exists'."""
    from core.dashboard.probe import probe_segment

    seg = pd.read_parquet(trained_ws / SEGMENTS_PARQUET)
    emb = np.load(trained_ws / EMBEDDINGS_NPY)
    seg["cosine"], seg["row"] = "their cosine", "their row"
    ws = Workspace.create(trained_ws, seg, emb, embedder="synthetic", sample_rate=16_000)
    out = request(probe_segment, ws, "topk-L8-K2", seg["segment_id"].iloc[0], n_nearest=3)
    assert out.rc == 0, out
    nearest = probe_segment(ws, "topk-L8-K2", seg["segment_id"].iloc[0], n_nearest=3).nearest
    assert list(nearest.columns[:2]) == ["row", "cosine"]
    assert set(nearest["cosine (column)"]) == {"their cosine"} and set(nearest["row (column)"]) == {
        "their row"
    }
    assert nearest["cosine"].between(-1.0001, 1.0001).all()


def test_probe_segment_of_a_one_segment_workspace_has_no_nearest(trained_ws):
    """The segment itself was listed as its own nearest, with cosine -inf."""
    from core.dashboard.probe import probe_segment

    seg = pd.read_parquet(trained_ws / SEGMENTS_PARQUET).iloc[:1]
    emb = np.load(trained_ws / EMBEDDINGS_NPY)[:1]
    ws = Workspace.create(trained_ws, seg, emb, embedder="synthetic", sample_rate=16_000)
    result = probe_segment(ws, "topk-L8-K2", seg["segment_id"].iloc[0])
    assert result.nearest.empty and len(result.latents) <= 2  # at most K = 2 active latents


@pytest.fixture
def resemblyzer_ws(data_root):
    """A 256-d workspace made with resemblyzer's name, so an upload is embedded for real."""
    seg, emb = corpus(dim=256)
    return Workspace.create("r", seg, emb, embedder="resemblyzer", sample_rate=16_000)


def test_upload_with_a_1_hz_header_is_named_for_its_rate(resemblyzer_ws, tmp_path, data_root):
    """It was refused as '1866.7 min of audio'."""
    from bad_audio import wav_saying_rate

    from core.dashboard.probe import embed_upload

    data = wav_saying_rate(tmp_path / "one.wav", 1).read_bytes()
    before = snapshot(data_root)
    line = assert_refused(
        request(embed_upload, resemblyzer_ws, "one.wav", data),
        "one.wav",
        "corrupt audio header (sample rate 1 Hz",
        before=before,
        roots=[data_root],
    )
    assert "min of audio" not in line


def test_upload_of_a_streamed_flac_is_embedded(resemblyzer_ws, tmp_path):
    """It was refused as '19215358410114.1 min of audio'."""
    from core.dashboard.probe import embed_upload

    data = streamed_flac(tmp_path / "clip.flac", seed=2).read_bytes()
    out = request(
        embed_upload,
        resemblyzer_ws,
        "clip.flac",
        data,
        answer=lambda clip: Outcome(
            0, f"{clip.embedding.shape} finite={np.isfinite(clip.embedding).all()}", ""
        ),
    )
    assert out.rc == 0 and out.out == "(256,) finite=True", out


# -- times in a metadata CSV, .npy headers --------------------------------------------------------------
@pytest.mark.parametrize(
    ("column", "value", "why"),
    [
        ("start_s", "inf", "start_s 'inf' is not a finite number"),
        ("end_s", "1e400", "end_s '1e400' is not a finite number"),
        ("start_s", "-3", "start_s '-3' is negative"),
        ("end_s", "1.5", "end_s 1.5 is before start_s 10.0"),
    ],
    ids=["inf", "overflow", "negative", "end-before-start"],
)
def test_segment_times_that_are_not_times(tmp_path, data_root, column, value, why):
    """They were stored (hours inf in summary; a clip of an infinite range on the latent page)."""
    seg = corpus()[0].assign(start_s="10.0", end_s="14.0").drop(columns=["source", "duration_s"])
    seg.loc[6, column] = value
    refused_import(seg.to_csv(index=False), "meta.csv row 8", why, tmp_path=tmp_path, data_root=data_root)


def test_an_npy_header_declaring_terabytes(tmp_path, data_root):
    """A 200-byte file whose header declares 10^7 x 10^5 float32: numpy tried to allocate 3.64 TiB."""
    from numpy.lib import format as npy_format

    bomb = tmp_path / "bomb.npy"
    with open(bomb, "wb") as fh:
        npy_format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": (10**7, 10**5)}
        )
        fh.write(b"\0" * 64)
    (tmp_path / "m.csv").write_text(metadata_text(corpus()[0]))
    before = snapshot(data_root, bomb)
    out = run_cli("import-embeddings", bomb, "--workspace", "w", "--metadata", tmp_path / "m.csv")
    assert_refused(
        out,
        "bomb.npy",
        "the header declares shape (10000000, 100000) <f4 (4,000,000,000,000 bytes)",
        "the file holds 64",
        before=before,
        roots=[data_root, bomb],
        allow_new=False,
    )


# -- seeds, scales and job counts ---------------------------------------------------------------------------
def test_demo_corpus_with_a_negative_seed(data_root):
    before = snapshot(data_root)
    assert_refused(
        run_cli("demo-corpus", "--workspace", "d", "--seed", "-1"),
        "--seed must be 0 or more, got -1",
        before=before,
        roots=[data_root],
        allow_new=False,
    )


def test_demo_corpus_with_a_scale_the_disk_cannot_hold(data_root):
    """--scale 1e9 (360 billion speakers) went straight to planning them."""
    before = snapshot(data_root)
    t0 = time.perf_counter()
    line = assert_refused(
        run_cli("demo-corpus", "--workspace", "d", "--scale", "1e9"),
        "--scale 1e+09 would write about",
        "GB of audio",
        "free there",
        before=before,
        roots=[data_root],
        allow_new=False,
    )
    assert time.perf_counter() - t0 < 5 and str(data_root) in line


@pytest.mark.parametrize("command", ["ingest", "demo-corpus"])
def test_a_job_count_no_machine_has(command, calls, data_root):
    """--jobs 100000 would start 100,000 worker processes (demo-corpus at once; ingest for long audio)."""
    before = snapshot(data_root)
    argv = ["ingest", calls] if command == "ingest" else ["demo-corpus"]
    out = run_cli(*argv, "--workspace", "d", "--jobs", "100000")
    assert_refused(out, "--jobs 100000", "at most", before=before, roots=[data_root], allow_new=False)
