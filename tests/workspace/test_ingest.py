"""core.workspace.ingest: folder of mixed audio -> workspace; metadata, skips, cache, atomic failure."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from core.audio.segmentation import SegmentationConfig
from core.cli import main as cli_main
from core.constants import CACHE_DIR
from core.democorpus.synthetic_voice import Speaker, utterance
from core.errors import InputError
from core.workspace.ingest import INGEST_CACHE, find_audio_files, ingest, outside_reason, read_metadata
from core.workspace.workspace import Workspace

SR = 16000
A = Speaker(f0=100.0, tract=0.92, tilt=0.95, breath=0.01)
B = Speaker(f0=230.0, tract=1.25, tilt=0.88, breath=0.03)


def padded(x, before=1.0, after=1.0, sr=SR):
    return np.concatenate([np.zeros(int(before * sr)), x, np.zeros(int(after * sr))]).astype(np.float32)


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "calls"
    (root / "spk_a").mkdir(parents=True)
    (root / "spk_b").mkdir()
    sf.write(root / "spk_a" / "one.wav", padded(utterance(A, 10.0, seed=1)), SR)  # -> 2 segments of ~5 s
    b = padded(utterance(B, 6.0, seed=2, sr=44100), sr=44100)
    sf.write(root / "spk_b" / "two.flac", np.stack([b, b], axis=1), 44100)  # stereo 44.1 kHz -> 1 segment
    sf.write(root / "short.ogg", utterance(A, 3.0, seed=3), SR, format="OGG", subtype="VORBIS")  # short file
    (root / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage" * 4)
    (root / "empty.wav").write_bytes(b"")
    sf.write(root / "silent.wav", np.zeros(5 * SR, np.float32), SR)
    (root / "notes.txt").write_text("not audio")
    meta = tmp_path / "meta.csv"
    meta.write_text("file,speaker,gender\nspk_a/one.wav,A,m\nspk_b/two.flac,B,f\nshort.ogg,A,m\n")
    return root, meta


def run(root, name, **kw):
    kw.setdefault("jobs", 1)
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")
    return ingest(root, name, **kw)


def test_ingest_folder(corpus):
    root, meta = corpus
    res = run(root, "w", metadata=meta)
    ws = res.workspace
    seg = ws.segments
    assert ws.dim == 256 and ws.embedder == "resemblyzer" and ws.info.sample_rate == SR
    assert list(seg["segment_id"]) == ["short#0000", "spk_a/one#0000", "spk_a/one#0001", "spk_b/two#0000"]
    assert list(seg["source"]) == ["short.ogg", "spk_a/one.wav", "spk_a/one.wav", "spk_b/two.flac"]
    assert list(seg["speaker"]) == ["A", "A", "A", "B"] and list(seg["gender"]) == ["m", "m", "m", "f"]
    one = seg[seg["source"] == "spk_a/one.wav"]
    assert abs(one["start_s"].iloc[0] - 1.0) < 0.1 and abs(one["end_s"].iloc[1] - 11.0) < 0.1
    assert ((seg["duration_s"] >= 2.0) & (seg["duration_s"] <= 8.0)).all()
    assert abs(seg["duration_s"].iloc[3] - 6.0) < 0.2  # resampled from 44.1 kHz: same duration
    emb = np.asarray(ws.embeddings)
    assert np.isfinite(emb).all()
    cos = emb @ emb.T
    assert cos[1, 2] > cos[1, 3]  # same speaker closer than the other speaker
    prov = ws.info.provenance
    assert prov["audio_root"] == str(root.resolve()) and prov["embedder"] == "resemblyzer"
    assert prov["segmentation"]["min_s"] == 4.0 and prov["telephony"] is False
    skipped = {s["file"]: s["reason"] for s in prov["skipped"]}
    assert set(skipped) == {"corrupt.wav", "empty.wav", "silent.wav"}
    assert "corrupt" in skipped["corrupt.wav"] and "empty" in skipped["empty.wav"]
    assert "silence" in skipped["silent.wav"]
    text = res.describe()
    assert "skipped 3 file(s)" in text and "silent.wav" in text
    assert ws.source_path("spk_a/one.wav") == root / "spk_a" / "one.wav"


def test_cache_reuse_and_changed_file(corpus):
    root, _ = corpus
    first = run(root, "c")
    assert first.computed == 6 and first.cached == 0
    again = run(root, "c")
    assert again.computed == 0 and again.cached == 6
    assert np.array_equal(np.asarray(again.workspace.embeddings), np.asarray(first.workspace.embeddings))
    sf.write(root / "short.ogg", utterance(B, 3.5, seed=9), SR, format="OGG", subtype="VORBIS")
    third = run(root, "c")
    assert third.computed == 1 and third.cached == 5
    e1, e3 = np.asarray(first.workspace.embeddings), np.asarray(third.workspace.embeddings)
    assert np.array_equal(e1[1:], e3[1:]) and not np.allclose(e1[0], e3[0])
    # a different segmentation or telephony setting is a different cache entry
    tele = run(root, "c", telephony=True)
    assert tele.computed == 6 and tele.workspace.info.provenance["telephony"] is True
    assert not np.allclose(np.asarray(tele.workspace.embeddings), e3)
    other = run(root, "c", segmentation=SegmentationConfig(min_s=3.0, max_s=6.0))
    assert other.computed == 6 and len(other.workspace) == 5  # 10 s region -> 2 x 5 s; 6 s -> 1; 3 s file
    # the cache keeps only what the last build used: one entry per file
    assert len(list((other.workspace.root / CACHE_DIR / INGEST_CACHE).glob("*.npz"))) == 6


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("file,speaker\nspk_a/one.wav,A\nmissing.wav,B\n", r"meta\.csv row 3: file 'missing\.wav' not found"),
        (
            "file,speaker\nspk_a/one.wav,A\n./spk_a/one.wav,B\n",
            r"meta\.csv row 3: duplicate file .*also on row 2",
        ),
        (
            "path,speaker\nspk_a/one.wav,A\n",
            r"meta\.csv: metadata CSV has no `file` column \(columns: path, speaker\)",
        ),
        ('file,speaker\nspk_a/one.wav,"A\nshort.ogg,B,x,y\n', r"meta\.csv: malformed metadata CSV"),
        ("file,speaker\n,A\n", r"meta\.csv row 2: empty `file` value"),
        ("", r"meta\.csv: metadata CSV is empty"),
    ],
)
def test_bad_metadata_leaves_existing_workspace_intact(corpus, content, message):
    root, meta = corpus
    before = run(root, "keep", metadata=meta).workspace.fingerprint
    meta.write_text(content)
    with pytest.raises(InputError, match=message):
        run(root, "keep", metadata=meta)
    ws = Workspace.open("keep")
    assert ws.fingerprint == before and len(ws) == 4 and "speaker" in ws.attributes()


def test_nothing_usable_is_an_error(corpus, tmp_path):
    root, _ = corpus
    run(root, "keep2")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"")
    sf.write(bad / "quiet.flac", np.zeros(SR * 6, np.float32), SR)
    sf.write(bad / "tiny.wav", utterance(A, 1.0), SR)  # sound, but shorter than short_min_s
    with pytest.raises(
        InputError, match=r"no usable audio.*quiet\.flac: audio is all silence.*tiny\.wav: no non-silent"
    ):
        run(bad, "keep2")
    assert len(Workspace.open("keep2")) == 4  # untouched
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(InputError, match="no audio files found"):
        run(empty, "z")
    with pytest.raises(InputError, match="audio folder not found"):
        run(tmp_path / "absent", "z")
    assert not Workspace.exists("z")


def test_segment_ids_stay_unique_when_stems_collide(tmp_path):
    root = tmp_path / "dup"
    root.mkdir()
    sf.write(root / "a.wav", utterance(A, 4.5, seed=1), SR)
    sf.write(root / "a.flac", utterance(B, 4.5, seed=2), SR)
    ws = run(root, "ids").workspace
    assert sorted(ws.segments["segment_id"]) == ["a.flac#0000", "a.wav#0000"]


def test_titanet_without_checkpoint_fails_before_work(corpus):
    root, _ = corpus
    with pytest.raises(InputError, match=r"titanet.*local \.nemo"):
        run(root, "t", embedder="titanet")
    assert not Workspace.exists("t")


def test_cli_ingest(corpus, capsys):
    root, meta = corpus
    rc = cli_main(
        ["ingest", str(root), "--workspace", "cliw", "--metadata", str(meta), "--jobs", "1", "--min-s", "3"]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "6 audio file(s) -> 4 segment(s)" in out and "empty.wav" in out
    assert Workspace.open("cliw").info.provenance["segmentation"]["min_s"] == 3.0
    (meta).write_text("file,speaker\nnope.wav,A\n")
    assert cli_main(["ingest", str(root), "--workspace", "cliw", "--metadata", str(meta)]) == 2
    assert "nope.wav" in capsys.readouterr().err


# -- only files under AUDIO_DIR are read ---------------------------------------------------------
@pytest.fixture
def tree(tmp_path):
    """calls/ (the audio folder) beside other/ (files that must never be read)."""
    root = tmp_path / "calls"
    (root / "sub").mkdir(parents=True)
    other = tmp_path / "other"
    other.mkdir()
    for path in (root / "a.wav", root / "sub" / "b.flac", other / "call.wav"):
        path.write_bytes(b"x")
    (root / "in_link.wav").symlink_to(root / "a.wav")
    (root / "out_link.wav").symlink_to(other / "call.wav")
    (root / "out_dir").symlink_to(other, target_is_directory=True)
    (root / "in_dir").symlink_to(root / "sub", target_is_directory=True)
    (root / "broken.wav").symlink_to(root / "gone.wav")
    (root / "folder.wav").mkdir()
    (root / "folder.wav" / "inner.ogg").write_bytes(b"x")
    (root / ".hidden.wav").write_bytes(b"x")
    os.mkfifo(root / "pipe.wav")
    return root.resolve(), other


def test_the_walk_lists_links_for_the_loop_to_skip(tree):
    root, _ = tree
    files = find_audio_files(root)
    assert files == [
        "a.wav",
        "broken.wav",
        "folder.wav/inner.ogg",
        "in_link.wav",
        "out_dir",
        "out_link.wav",
        "pipe.wav",
        "sub/b.flac",
    ]  # in_dir is not entered: its files are found in sub/
    reasons = {rel: outside_reason(root, rel) for rel in files}
    other = tree[1].resolve()
    assert reasons == {
        "a.wav": None,
        "broken.wav": f"a broken link (to {root / 'gone.wav'})",
        "folder.wav/inner.ogg": None,
        "in_link.wav": None,
        "out_dir": f"a link to {other}, outside the audio folder {root}: not read",
        "out_link.wav": f"a link to {other / 'call.wav'}, outside the audio folder {root}: not read",
        "pipe.wav": "not a regular file (a pipe, socket or device): not read",
        "sub/b.flac": None,
    }
    (root / "a.wav").unlink()
    assert outside_reason(root, "a.wav") == "gone since the folder was listed"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "../other/call.wav",
            r"row 2: file '\.\./other/call\.wav' is outside the audio folder .*calls; only files under it are read",
        ),
        ("{other}/call.wav", r"row 2: file '.*other/call\.wav' is outside the audio folder"),
        ("sub/../../other/call.wav", r"row 2: file 'sub/\.\./\.\./other/call\.wav' is outside"),
        (
            "out_link.wav",
            r"row 2: file 'out_link\.wav' \(a link to .*other/call\.wav\) is outside the audio folder",
        ),
        ("out_dir/call.wav", r"row 2: file 'out_dir/call\.wav' \(a link to .*other/call\.wav\) is outside"),
        ("folder.wav", r"row 2: file 'folder\.wav' is a folder, not an audio file"),
        ("pipe.wav", r"row 2: file 'pipe\.wav' not found under"),
    ],
)
def test_a_metadata_row_naming_a_file_outside_the_folder_is_refused(tree, tmp_path, value, message):
    root, other = tree
    meta = tmp_path / "m.csv"
    meta.write_text(f"file,speaker\n{value.format(other=other)},A\n")
    with pytest.raises(InputError, match=r"m\.csv " + message):
        read_metadata(meta, root)


def test_metadata_paths_inside_the_folder_are_taken_relative(tree, tmp_path):
    root, _ = tree
    meta = tmp_path / "m.csv"
    meta.write_text(f"file,speaker\n{root}/a.wav,A\nsub/./b.flac,B\nsub/../in_link.wav,C\nin_dir/b.flac,D\n")
    assert list(read_metadata(meta, root).index) == ["a.wav", "sub/b.flac", "in_link.wav", "in_dir/b.flac"]


def test_a_symlink_loop_and_a_name_that_is_not_utf8_are_skipped_with_their_reason(tree):
    from core.workspace.ingest import NOT_UTF8, shown_name

    root, _ = tree
    (root / "loop.wav").symlink_to(root / "loop.wav")
    (root / "x.wav").write_bytes(b"x")
    os.rename(root / "x.wav", os.fsencode(root) + b"/\xff.wav")
    files = find_audio_files(root)
    assert "loop.wav" in files and "\udcff.wav" in files
    assert outside_reason(root, "loop.wav") == "a symlink loop: not read"
    assert outside_reason(root, "\udcff.wav") == NOT_UTF8
    assert shown_name("\udcff.wav") == "\\xff.wav" and shown_name("café.wav") == "café.wav"


@pytest.mark.parametrize(
    ("on_disk", "in_csv", "hint"),
    [
        ("Sub/A.wav", "Sub/a.wav", "'A.wav': the names differ only in letter case"),
        ("caf\u00e9.wav", "cafe\u0301.wav", "'café.wav': the names differ only in Unicode normalisation"),
        ("a.wav", "b.wav", None),
    ],
    ids=["case", "normalisation", "no-near-miss"],
)
def test_a_missing_file_names_the_file_it_probably_means(tmp_path, on_disk, in_csv, hint):
    root = tmp_path / "calls"
    (root / on_disk).parent.mkdir(parents=True)
    (root / on_disk).write_bytes(b"x")
    meta = tmp_path / "m.csv"
    meta.write_text(f"file,speaker\n{in_csv},A\n")
    with pytest.raises(InputError, match=r"not found under") as err:
        read_metadata(meta, root.resolve())
    assert (f"(the folder holds {hint})" in str(err.value)) if hint else "folder holds" not in str(err.value)
