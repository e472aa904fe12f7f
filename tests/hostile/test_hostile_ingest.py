"""`ingest` (and where any command builds a workspace) as a hostile user would call it.

One shared ingest of a folder salted with every kind of bad file (a 0 Hz and a 1 Hz header,
random bytes named .mp3, ten hours of zeros, links leading out of the folder, a pipe, a broken
link, a folder named like audio, a file deleted mid-run, one it may not read): the good files are
ingested, each bad one is skipped with its reason, and nothing outside the folder is opened.
Then metadata rows that point outside the folder or do not parse, --workspace folders that are
not workspaces (ingest, demo-corpus), bad settings, and kill -9 mid-ingest.

Each refusal: exit 2, one `error:` line naming the input and what is wrong, no traceback, every
file that existed before byte-identical.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from bad_audio import sparse_zeros_wav, voice_like, wav_saying_rate, write_voice
from hostile_harness import REPO, assert_refused, run_cli, snapshot

from core.constants import CACHE_DIR
from core.workspace.ingest import INGEST_CACHE
from core.workspace.workspace import Workspace, fingerprint_of

GOOD = ["folder.wav/inner.wav", "good_a.wav", "good_b.flac", "in_link.wav"]


@pytest.fixture(scope="module")
def salted(tmp_path_factory):
    """calls/ (the folder to ingest, salted with bad files) beside other/ (never to be read)."""
    base = tmp_path_factory.mktemp("salted")
    calls, other = base / "calls", base / "other"
    write_voice(calls / "good_a.wav", seed=1)
    left = voice_like(6.0, 230.0, 2, 44_100)
    sf.write(calls / "good_b.flac", np.stack([left, left], axis=1), 44_100)
    write_voice(calls / "folder.wav" / "inner.wav", seed=3)  # a folder named like audio
    wav_saying_rate(calls / "zero_hz.wav", 0)
    wav_saying_rate(calls / "one_hz.wav", 1)
    (calls / "noise.mp3").write_bytes(np.random.default_rng(4).bytes(20_000))
    sparse_zeros_wav(calls / "zeros_10h.wav", 10.0)
    write_voice(calls / "vanish.wav", seed=5)
    write_voice(calls / "locked.wav", seed=7)  # mode 000 for a user; root reads anyway: see `ingested`
    write_voice(other / "call.wav", seed=6)
    (calls / "in_link.wav").symlink_to(calls / "good_a.wav")
    (calls / "out_link.wav").symlink_to(other / "call.wav")
    (calls / "out_dir").symlink_to(other, target_is_directory=True)
    (calls / "broken.wav").symlink_to(calls / "missing.wav")
    os.mkfifo(calls / "pipe.wav")
    return calls.resolve(), other.resolve()


@pytest.fixture(scope="module")
def ingested(salted):
    """The salted folder ingested once through the CLI, with every file read recorded,
    vanish.wav deleted while good_a.wav is decoded, and locked.wav refused as a file without
    read permission is (the tests run as root, whom modes do not stop)."""
    import core.workspace.ingest as ingest_mod

    calls, _ = salted
    ws_root = calls.parent / "ws"
    opened: list[Path] = []
    real_load, real_hash = ingest_mod.load_audio, ingest_mod.file_sha256

    def load_audio(path, *a, **kw):
        opened.append(Path(path))
        if Path(path).name == "good_a.wav":
            (calls / "vanish.wav").unlink()
        return real_load(path, *a, **kw)

    def file_sha256(path):
        opened.append(Path(path))
        if Path(path).name == "locked.wav":
            raise PermissionError(13, "Permission denied", str(path))
        return real_hash(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ingest_mod, "load_audio", load_audio)
        patch.setattr(ingest_mod, "file_sha256", file_sha256)
        out = run_cli("ingest", calls, "--workspace", ws_root, "--jobs", "1")
    return out, ws_root, opened


def test_good_files_are_ingested_and_each_bad_one_skipped_with_its_reason(ingested, salted):
    calls, other = salted
    out, ws_root, _ = ingested
    assert out.rc == 0 and not out.error_lines and "Traceback" not in out.err, out
    ws = Workspace.open(ws_root)
    assert sorted(ws.segments["source"].unique()) == GOOD
    assert len(ws) == 4 and np.isfinite(np.asarray(ws.embeddings)).all()
    skipped = {s["file"]: s["reason"] for s in ws.info.provenance["skipped"]}
    assert skipped == {
        "broken.wav": f"a broken link (to {calls / 'missing.wav'})",
        "locked.wav": "could not be read (Permission denied)",
        "noise.mp3": "unreadable or corrupt audio (not valid MP3 data: damaged, or not audio at all)",
        "one_hz.wav": "corrupt audio header (sample rate 1 Hz; audio is 4000-768000 Hz)",
        "out_dir": f"a link to {other}, outside the audio folder {calls}: not read",
        "out_link.wav": f"a link to {other / 'call.wav'}, outside the audio folder {calls}: not read",
        "pipe.wav": "not a regular file (a pipe, socket or device): not read",
        "vanish.wav": "gone since the folder was listed",
        "zero_hz.wav": "corrupt audio header (sample rate 0 Hz; audio is 4000-768000 Hz)",
        "zeros_10h.wav": "audio is all silence (no sample above -96 dBFS)",
    }
    assert "skipped 10 file(s):" in out.out and "    out_link.wav: a link to" in out.out


def test_nothing_outside_the_folder_is_opened(ingested, salted):
    calls, _ = salted
    _, _, opened = ingested
    assert opened and all(p.resolve().is_relative_to(calls) for p in opened), opened
    assert {p.name for p in opened} >= {"good_a.wav", "in_link.wav", "inner.wav"}
    assert not {"out_link.wav", "call.wav", "pipe.wav", "broken.wav"} & {p.name for p in opened}


def test_the_workspace_of_the_shared_ingest_is_complete(ingested):
    _, ws_root, _ = ingested
    ws = Workspace.open(ws_root)
    assert fingerprint_of(ws.segments, np.asarray(ws.embeddings), ws.windows) == ws.fingerprint
    cache = ws_root / CACHE_DIR / INGEST_CACHE
    assert not list(cache.glob(".*")) and not [p for p in ws_root.iterdir() if p.name.startswith(".")]


# -- metadata rows that name files outside the folder, or do not parse --------------------------
@pytest.fixture
def small_folder(tmp_path):
    """calls/ with one good file, other/ beside it, a link inside calls/ that leads to other/."""
    calls, other = tmp_path / "calls", tmp_path / "other"
    write_voice(calls / "a.wav", seed=1)
    write_voice(other / "call.wav", seed=2)
    (calls / "sneaky.wav").symlink_to(other / "call.wav")
    return calls, other


def refused_ingest(calls, meta_text, *needles, tmp_path, data_root, extra=()):
    meta = tmp_path / "meta.csv"
    meta.write_text(meta_text)
    roots = [data_root, calls, tmp_path / "other", meta]
    before = snapshot(*roots)
    out = run_cli("ingest", calls, "--workspace", "w", "--metadata", meta, "--jobs", "1", *extra)
    line = assert_refused(out, *needles, before=before, roots=roots, allow_new=False)
    assert not (data_root / "w").exists()  # refused before any work: not even a cache entry
    return line


@pytest.mark.parametrize(
    ("value", "needles"),
    [
        ("../other/call.wav", ["meta.csv row 3", "file '../other/call.wav' is outside the audio folder"]),
        ("{other}/call.wav", ["meta.csv row 3", "other/call.wav' is outside the audio folder"]),
        ("sneaky.wav", ["meta.csv row 3", "file 'sneaky.wav' (a link to", "other/call.wav) is outside"]),
    ],
    ids=["dot-dot", "absolute", "link-out"],
)
def test_a_row_naming_a_file_outside_the_folder(small_folder, tmp_path, data_root, value, needles):
    calls, other = small_folder
    text = f"file,speaker\na.wav,A\n{value.format(other=other)},B\n"
    line = refused_ingest(
        calls, text, *needles, "only files under it are read", tmp_path=tmp_path, data_root=data_root
    )
    assert str(calls.resolve()) in line


def test_an_extra_field_on_the_first_row_is_not_a_missing_file(small_folder, tmp_path, data_root):
    calls, _ = small_folder
    line = refused_ingest(
        calls,
        "file,speaker\na.wav,A,surplus\n",
        "meta.csv row 2",
        "the row has 3 field(s) but the header has 2 (file, speaker)",
        tmp_path=tmp_path,
        data_root=data_root,
    )
    assert "not found" not in line


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("file,speaker\na.wav\n", ["meta.csv row 2", "the row has 1 field(s) but the header has 2"]),
        ('file,speaker\na.wav,"A\n', ["meta.csv", "malformed metadata CSV", "a quote that is never closed?"]),
        ("file,speaker,speaker\na.wav,A,B\n", ["meta.csv", "column 'speaker' appears twice"]),
        (
            "file,speaker\nfolder.wav,A\n",
            ["meta.csv row 2", "file 'folder.wav' is a folder, not an audio file"],
        ),
        ("file,speaker\nmissing.wav,A\n", ["meta.csv row 2", "file 'missing.wav' not found under"]),
        ("file,source\na.wav,x\n", ["meta.csv", "column(s) source are reserved"]),
        ("path,speaker\na.wav,A\n", ["meta.csv", "no `file` column (columns: path, speaker)"]),
    ],
    ids=["short-row", "open-quote", "dup-header", "a-folder", "missing", "reserved", "no-file-column"],
)
def test_metadata_that_does_not_parse(small_folder, tmp_path, data_root, text, needles):
    calls, _ = small_folder
    (calls / "folder.wav").mkdir()
    refused_ingest(calls, text, *needles, tmp_path=tmp_path, data_root=data_root)


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--max-s", "inf"], ["segmentation: settings must be finite numbers, got max_s=inf"]),
        (["--min-s", "nan"], ["got min_s=nan"]),
        (["--min-s", "9"], ["need 0 < min_s <= max_s, got min_s=9.0, max_s=8.0"]),
        (["--jobs", "0"], ["--jobs must be at least 1, got 0"]),
    ],
    ids=["max-inf", "min-nan", "min-above-max", "jobs-0"],
)
def test_bad_settings(small_folder, tmp_path, data_root, flags, needles):
    calls, _ = small_folder
    refused_ingest(
        calls, "file,speaker\na.wav,A\n", *needles, tmp_path=tmp_path, data_root=data_root, extra=flags
    )


def test_a_folder_of_only_bad_files(tmp_path, data_root, trained_ws):
    bad = tmp_path / "bad"
    wav_saying_rate(bad / "zero_hz.wav", 0)
    (bad / "noise.mp3").write_bytes(np.random.default_rng(1).bytes(5000))
    before = snapshot(data_root, bad)
    out = run_cli("ingest", bad, "--workspace", "w", "--jobs", "1")
    assert_refused(
        out,
        str(bad.resolve()),
        "no usable audio",
        "noise.mp3: unreadable or corrupt audio (not valid MP3 data",
        "zero_hz.wav: corrupt audio header (sample rate 0 Hz",
        before=before,
        roots=[data_root, bad],
    )
    assert "does not exist" not in out.err
    assert Workspace.open("w").fingerprint == Workspace.open(trained_ws).fingerprint


def test_a_missing_audio_folder(tmp_path, data_root):
    before = snapshot(data_root)
    out = run_cli("ingest", tmp_path / "nowhere", "--workspace", "w")
    assert_refused(
        out, "nowhere", "audio folder not found", before=before, roots=[data_root], allow_new=False
    )


# -- --workspace folders that are not workspaces ---------------------------------------------------
@pytest.fixture
def users_folder(tmp_path):
    mine = tmp_path / "thesis"
    (mine / "figures").mkdir(parents=True)
    (mine / "embeddings.npy").write_bytes(b"my own embeddings")
    (mine / "notes.md").write_text("do not touch")
    return mine


def test_ingest_refuses_a_users_folder_before_any_work(small_folder, users_folder):
    calls, _ = small_folder
    before = snapshot(users_folder)
    out = run_cli("ingest", calls, "--workspace", users_folder, "--jobs", "1")
    assert_refused(
        out,
        str(users_folder),
        "an existing folder that is not a VoxSAE workspace",
        "embeddings.npy, figures, notes.md",
        before=before,
        roots=[users_folder],
        allow_new=False,
    )
    assert sorted(p.name for p in users_folder.iterdir()) == ["embeddings.npy", "figures", "notes.md"]


def test_demo_corpus_refuses_a_users_folder_before_any_work(users_folder):
    before = snapshot(users_folder)
    t0 = time.perf_counter()
    out = run_cli("demo-corpus", "--workspace", users_folder, "--scale", "0.05")
    assert_refused(
        out, str(users_folder), "not a VoxSAE workspace", before=before, roots=[users_folder], allow_new=False
    )
    assert time.perf_counter() - t0 < 5  # nothing was synthesised


def test_ingest_into_an_empty_folder_and_over_a_workspace(small_folder, trained_ws, tmp_path):
    calls, _ = small_folder
    empty = tmp_path / "empty"
    empty.mkdir()
    first = run_cli("ingest", calls, "--workspace", empty, "--jobs", "1")
    assert first.rc == 0 and "replacing" not in first.err, first
    assert list(Workspace.open(empty).segments["source"]) == ["a.wav"]  # sneaky.wav: skipped
    models = snapshot(trained_ws / "models")
    again = run_cli("ingest", calls, "--workspace", "w", "--jobs", "1")
    assert again.rc == 0, again
    assert [line for line in again.err.splitlines() if "replacing" in line] == [
        f"ingest: replacing the corpus of workspace w ({trained_ws}); the old one stays until the new one "
        "is complete; models, analyses and labels are kept"
    ]
    assert Workspace.open("w").embedder == "resemblyzer" and snapshot(trained_ws / "models") == models


# -- kill -9 mid-ingest -------------------------------------------------------------------------------
def test_kill_9_mid_ingest_then_the_rerun_completes(ingested, salted, tmp_path):
    """The child is killed once it has cached its first file's result (a silent file, cached
    before any embedding); the rerun reuses that entry and builds the same workspace as an
    uninterrupted run. No half-written or temporary file is left."""
    calls, _ = salted
    folder = tmp_path / "calls"
    write_voice(folder / "a_quiet.wav", seed=0, seconds=0.0)  # 1 s of silence: skipped, cached first
    for rel in ("good_a.wav", "good_b.flac", "folder.wav/inner.wav"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(calls / rel, folder / rel)
    ws_root = tmp_path / "ws"
    cache = ws_root / CACHE_DIR / INGEST_CACHE
    child = subprocess.Popen(
        [sys.executable, "-m", "core", "ingest", str(folder), "--workspace", str(ws_root), "--jobs", "1"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(cache.glob("*.npz")) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert child.poll() is None, "the ingest ended before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert not Workspace.exists(ws_root)  # killed before the workspace was written
    out = run_cli("ingest", folder, "--workspace", ws_root, "--jobs", "1")
    assert out.rc == 0, out
    assert "from cache" in out.out and " 0 from cache" not in out.out
    ws = Workspace.open(ws_root)
    assert fingerprint_of(ws.segments, np.asarray(ws.embeddings), ws.windows) == ws.fingerprint
    reference = Workspace.open(ingested[1])
    for rel in ("good_a.wav", "good_b.flac", "folder.wav/inner.wav"):
        mine = np.asarray(ws.embeddings)[ws.segments["source"] == rel]
        theirs = np.asarray(reference.embeddings)[reference.segments["source"] == rel]
        assert np.array_equal(mine, theirs), rel
    leftovers = [p for p in ws_root.rglob(".*")]
    assert not leftovers, leftovers
