"""The dashboard as a hostile user meets it: playback of sources outside the workspace's audio,
bad uploads on the Probe a clip page, hostile label files, and label saves on a full disk or a
read-only folder.

The dashboard answers a request, not a command line, so each case runs the function a page calls
through `hostile_harness.request`, which turns its outcome into what the harness checks: a
VoxSAEError is one `error: <message>` line (what the page shows in st.error), anything else
escaping is a traceback.
A label import that rejects rows answers with its report as the one error line. Every case then
goes through `assert_refused`: a refusal, one line naming the input and what is wrong, no
traceback, every file that existed before byte-identical.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dashboard_ws import hostile_uploads, ingested_with_escape, wav_of, zero_hz_wav
from hostile_harness import Outcome, assert_refused, fill_disk, read_only, request, run_cli, snapshot

SR = 16_000
MODEL = "topk-L8-K2"  # d_sae 8 (tests/hostile/conftest.py)


# -- playback: only files under the workspace's audio folders ----------------------------------
SOURCES = {
    "seg-up": "../../secret.wav",
    "seg-absolute": None,  # the absolute path of secret.wav, filled in by the fixture
    "seg-link": "link-out.wav",
    "seg-deep-up": "sub/../../../secret.wav",
}


@pytest.fixture
def playback_ws(trained_ws, metadata_csv, embeddings_npy, data_root, tmp_path):
    """Workspace `p`, made the way a user makes one (`import-embeddings` with a metadata CSV),
    whose `source` column names call.wav for most rows and, for SOURCES, files outside its audio
    folder: the secret.wav beside the data root (a real WAV, so a leak would play)."""
    secret = data_root / "secret.wav"
    from core.audio.read import save_wav

    save_wav(secret, np.full(SR, 0.5, np.float32), SR)
    meta = pd.read_csv(metadata_csv)
    meta["source"] = "call.wav"
    for i, (sid, source) in enumerate(SOURCES.items()):
        meta.loc[i, "segment_id"] = sid
        meta.loc[i, "source"] = source or str(secret)
    meta.loc[len(SOURCES), "segment_id"] = "seg-zero-hz"
    meta.loc[len(SOURCES), "source"] = "zero.wav"
    meta[["start_s", "end_s"]] = [0.0, 0.5]
    csv_path = tmp_path / "hostile-sources.csv"
    meta.to_csv(csv_path, index=False)
    out = run_cli("import-embeddings", embeddings_npy, "--workspace", "p", "--metadata", csv_path)
    assert out.rc == 0, out
    from core.workspace.workspace import Workspace

    ws = Workspace.open("p")
    save_wav(ws.audio_dir / "call.wav", np.full(SR, 0.25, np.float32), SR)
    (ws.audio_dir / "zero.wav").write_bytes(zero_hz_wav(SR))
    (ws.audio_dir / "link-out.wav").symlink_to(secret)
    return ws


@pytest.mark.parametrize("segment", list(SOURCES))
def test_playback_refuses_a_source_outside_the_audio_folder(playback_ws, data_root, segment, caplog):
    from core.dashboard.playback import segment_wav

    before = snapshot(data_root)
    with caplog.at_level("WARNING", logger="core.workspace.workspace"):
        out = request(segment_wav, playback_ws, segment)
    assert_refused(out, segment, "outside the workspace's audio folder", before=before, roots=[data_root])
    assert any("refused source" in r.getMessage() for r in caplog.records)


def test_playback_serves_the_workspaces_own_audio(playback_ws):
    """The control: the same workspace plays a segment of audio/call.wav."""
    import io

    import soundfile as sf

    from core.dashboard.playback import segment_wav

    ok = playback_ws.segments["segment_id"].iloc[len(SOURCES) + 1]
    data, rate = sf.read(io.BytesIO(segment_wav(playback_ws, ok)))
    assert rate == SR and len(data) == SR // 2 and np.allclose(data, 0.25, atol=1e-3)


def test_playback_refuses_a_0_hz_file(playback_ws, data_root):
    from core.dashboard.playback import segment_wav

    before = snapshot(data_root)
    out = request(segment_wav, playback_ws, "seg-zero-hz")
    assert_refused(
        out, "zero.wav", "corrupt audio header (sample rate 0 Hz", before=before, roots=[data_root]
    )


@pytest.mark.parametrize("segment_id", ["../secret.wav", "/etc/passwd", "x" * 10_000])
def test_playback_serves_catalogue_ids_only(playback_ws, data_root, segment_id):
    from core.dashboard.playback import segment_wav

    before = snapshot(data_root)
    out = request(segment_wav, playback_ws, segment_id)
    line = assert_refused(out, "no segment", "in the catalogue", before=before, roots=[data_root])
    assert len(line) < 300


def test_playback_of_an_ingested_workspace_stays_in_its_audio_root(data_root, tmp_path, caplog):
    """An ingested workspace (provenance['audio_root']) whose table names `../private.wav`, as
    one ingested before ingest checked its metadata could."""
    from core.dashboard.playback import segment_wav

    calls = tmp_path / "calls"
    ws = ingested_with_escape(data_root / "ingested", calls, tmp_path / "private.wav")
    assert len(segment_wav(ws, "a")) > SR
    before = snapshot(data_root, tmp_path)
    with caplog.at_level("WARNING", logger="core.workspace.workspace"):
        out = request(segment_wav, ws, "escape")
    assert_refused(
        out, "'escape'", "'../private.wav' is outside", str(calls), before=before, roots=[data_root, tmp_path]
    )
    assert any("private.wav" in r.getMessage() for r in caplog.records)


# -- the Probe a clip page's upload ------------------------------------------------------------
@pytest.mark.parametrize(("name", "data", "why"), hostile_uploads(), ids=[u[0] for u in hostile_uploads()])
def test_upload_refused(trained_ws, data_root, name, data, why):
    from core.dashboard.probe import embed_upload
    from core.workspace.workspace import Workspace

    ws = Workspace.open("w")
    before = snapshot(data_root)
    out = request(embed_upload, ws, name, data)
    assert_refused(out, f"error: {name}: ", why, before=before, roots=[data_root])
    assert "/tmp" not in out.err


def test_upload_past_the_size_limit_refused(trained_ws, data_root):
    from core.dashboard.probe import MAX_UPLOAD_BYTES, embed_upload
    from core.workspace.workspace import Workspace

    before = snapshot(data_root)
    out = request(embed_upload, Workspace.open("w"), "huge.wav", b"\0" * (MAX_UPLOAD_BYTES + 1))
    assert_refused(out, "huge.wav", "more than the 25 MB", before=before, roots=[data_root])


def test_upload_of_hours_of_audio_refused_from_the_header(trained_ws, data_root):
    from core.dashboard.probe import embed_upload
    from core.workspace.workspace import Workspace

    long_wav = wav_of(np.full(8_000 * 900, 0.1), sr=8_000, subtype="PCM_U8")  # 15 min in 7 MB
    before = snapshot(data_root)
    out = request(embed_upload, Workspace.open("w"), "call.wav", long_wav)
    assert_refused(out, "call.wav", "15.0 min of audio", "at most 10 min", before=before, roots=[data_root])


# -- label import ------------------------------------------------------------------------------
@pytest.fixture
def labelled(trained_ws):
    """The trained workspace's label store with two labels already saved (and closed, so only
    labels.sqlite is on disk)."""
    from core.labels.store import LabelStore
    from core.workspace.workspace import Workspace

    store = LabelStore.for_workspace(Workspace.open("w"))
    store.save(MODEL, 1, "Spanish", tags="lang", author="ana")
    store.save(MODEL, 2, "music", confidence=0.9, author="bo")
    return store


def _known():
    from core.dashboard.labeling_view import known_models
    from core.workspace.workspace import Workspace

    return known_models(Workspace.open("w"))


IMPORT_CASES = [
    ("int64-overflow", [{"model": MODEL, "latent": 2**64, "name": "x"}], "past the largest latent id"),
    ("bool-latent", [{"model": MODEL, "latent": True, "name": "x"}], "latent is not an integer: True"),
    ("dict-name", [{"model": MODEL, "latent": 3, "name": {"a": 1}}], "name is not text: a dict"),
    ("list-name", [{"model": MODEL, "latent": 3, "name": ["a"]}], "name is not text: a list"),
    ("negative", [{"model": MODEL, "latent": -4, "name": "x"}], "latent -4 is negative"),
    ("past-d_sae", [{"model": MODEL, "latent": 8, "name": "x"}], f"latent 8 out of range for {MODEL} (0..7)"),
    (
        "nan-confidence",
        [{"model": MODEL, "latent": 3, "name": "x", "confidence": float("nan")}],
        "not a number",
    ),
    (
        "huge-name",
        [{"model": MODEL, "latent": 3, "name": "n" * 1_000_000}],
        "name longer than 200 characters",
    ),
    (
        "huge-tag",
        [{"model": MODEL, "latent": 3, "name": "x", "tags": ["t" * 1_000_000]}],
        "a tag longer than 100",
    ),
    (
        "unknown-model",
        [{"model": "topk-L99-K9", "latent": 3, "name": "x"}],
        "'topk-L99-K9' is not in this workspace",
    ),
]


def _as_refusal(store, text: str, fmt: str = "json") -> Outcome:
    """store.import_text (with the workspace's models known) as a request: a file whose rows were
    all or partly rejected answers with its report's summary as the one error line."""

    def answer(report) -> Outcome:
        return Outcome(2 if report.errors else 0, "", f"error: {report.summary()}\n" if report.errors else "")

    return request(store.import_text, text, fmt, known_models=_known(), where=f"labels.{fmt}", answer=answer)


@pytest.mark.parametrize(("rows", "why"), [c[1:] for c in IMPORT_CASES], ids=[c[0] for c in IMPORT_CASES])
def test_label_import_rejects_the_row(labelled, trained_ws, rows, why):
    before = snapshot(trained_ws)
    out = _as_refusal(labelled, json.dumps(rows))
    assert_refused(out, "imported 0 label(s)", "line 1: ", why, before=before, roots=[trained_ws])
    assert len(out.error_lines[0]) < 300  # a 1,000,000-character value is not echoed back
    assert [(lab.latent, lab.name) for lab in labelled.all()] == [(1, "Spanish"), (2, "music")]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[" * 200_000 + "]" * 200_000, "JSON nested too deeply to read"),
        ('[{"model": "m", "latent": ' + "9" * 5000 + ', "name": "x"}]', "unreadable JSON"),
    ],
    ids=["deeply-nested", "number-past-the-digit-limit"],
)
def test_label_import_refuses_an_unreadable_file(labelled, trained_ws, text, why):
    before = snapshot(trained_ws)
    out = _as_refusal(labelled, text)
    assert_refused(out, "labels.json", why, before=before, roots=[trained_ws])


def test_label_import_of_a_csv_with_bad_cells(labelled, trained_ws):
    before = snapshot(trained_ws)
    text = f"model,latent,name,confidence\n{MODEL},True,x,0.5\n{MODEL},99999999999999999999,y,0.5\n{MODEL},3,z,nan\n"
    out = _as_refusal(labelled, text, "csv")
    assert_refused(
        out,
        "imported 0 label(s); rejected 3 row(s)",
        "line 2: latent is not an integer: 'True'",
        "line 3: latent '99999999999999999999' is past the largest latent id",
        "line 4: confidence is not a number: 'nan'",
        before=before,
        roots=[trained_ws],
    )


# -- label saves on a full disk and in a read-only folder --------------------------------------
@pytest.fixture
def store_on_disk(disk):
    """A label store on the small tmpfs with two labels saved (then closed: only labels.sqlite)."""
    from core.labels.store import LabelStore

    store = LabelStore(disk / "w" / "labels.sqlite")
    store.save(MODEL, 1, "Spanish", author="ana")
    store.save(MODEL, 2, "music", author="bo")
    assert sorted(p.name for p in (disk / "w").iterdir()) == ["labels.sqlite"]
    return store


def _intact(store) -> None:
    """The stored labels are all there and readable."""
    from core.labels.store import LabelStore

    again = LabelStore(store.path)
    assert [(lab.latent, lab.name, lab.version) for lab in again.all()] == [
        (1, "Spanish", 1),
        (2, "music", 1),
    ]
    assert len(again.history()) == 2


def test_label_save_on_a_full_disk(store_on_disk, disk):
    fill_disk(disk)
    before = snapshot(disk)
    out = request(store_on_disk.save, MODEL, 3, "new label", description="d" * 4000)
    assert_refused(
        out, f"cannot write {store_on_disk.path}", "No space left on device", before=before, roots=[disk]
    )
    _intact(store_on_disk)  # still readable on the full disk


def test_label_import_on_a_full_disk_imports_nothing(store_on_disk, disk):
    fill_disk(disk)
    before = snapshot(disk)
    rows = [{"model": MODEL, "latent": i, "name": f"imported {i}"} for i in range(3, 8)]
    out = request(store_on_disk.import_text, json.dumps(rows), "json")
    assert_refused(out, "cannot write", "No space left on device", before=before, roots=[disk])
    (disk / ".filler").unlink()
    _intact(store_on_disk)  # none of the five rows half-imported


def test_label_save_in_a_read_only_folder(store_on_disk, disk):
    before = snapshot(disk)
    with read_only(disk):
        out = request(store_on_disk.save, MODEL, 1, "overwrite", author="eve")
        _intact(store_on_disk)  # reads work on the read-only folder
    assert_refused(
        out, f"cannot write {store_on_disk.path}", "Read-only file system", before=before, roots=[disk]
    )
    _intact(store_on_disk)


def test_a_new_label_store_in_a_read_only_folder(disk):
    from core.labels.store import LabelStore

    store = LabelStore(disk / "fresh" / "labels.sqlite")
    before = snapshot(disk)
    with read_only(disk):
        assert store.for_model(MODEL) == {}  # nothing saved yet reads as empty
        out = request(store.save, MODEL, 1, "x")
    assert_refused(out, "cannot write", "labels.sqlite", "Read-only file system", before=before, roots=[disk])
    assert not (disk / "fresh").exists()


def test_a_corrupt_label_store(trained_ws):
    from core.labels.store import LabelStore
    from core.workspace.workspace import Workspace

    path = Workspace.open("w").labels_path
    path.write_bytes(b"\x00junk" * 2000)
    before = snapshot(trained_ws)
    store = LabelStore(path)
    assert_refused(
        request(store.for_model, MODEL),
        str(path),
        "file is not a database",
        before=before,
        roots=[trained_ws],
    )
    out = request(store.save, MODEL, 1, "x")
    assert_refused(out, f"cannot write {path}", "file is not a database", before=before, roots=[trained_ws])


def test_label_save_through_the_page_on_a_full_disk(trained_ws, disk, monkeypatch):
    """The labeling page's Save on a full disk: one st.error saying where and why, no exception
    box, the stored label unchanged (the page reads it back)."""
    from streamlit.testing.v1 import AppTest

    from core.labels.store import LabelStore

    dest = disk / "w"
    shutil.copytree(trained_ws, dest, ignore=shutil.ignore_patterns("cache", "analyses"))
    LabelStore(dest / "labels.sqlite").save(MODEL, 0, "Spanish", author="ana")
    monkeypatch.setenv("VOXSAE_DATA", str(disk))
    monkeypatch.setenv("VOXSAE_WORKSPACE", "w")
    monkeypatch.setenv("VOXSAE_START_PAGE", "labeling")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=60)
    at.query_params["model"] = MODEL
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    fk = f"{MODEL}_0_1"
    at.text_input(key=f"name_{fk}").input("Spanish, renamed")
    fill_disk(disk)
    before = snapshot(disk)
    next(b for b in at.button if b.label == "Save label").click().run()
    out = Outcome(
        2 if at.error else 0,
        "",
        "".join(f"error: {e.value}\n" for e in at.error) + ("Traceback\n" if at.exception else ""),
    )
    assert_refused(
        out, f"cannot write {dest / 'labels.sqlite'}", "No space left on device", before=before, roots=[disk]
    )
    (disk / ".filler").unlink()
    assert LabelStore(dest / "labels.sqlite").get(MODEL, 0).name == "Spanish"
