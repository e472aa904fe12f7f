"""The measured attributes are the tool's: a metadata CSV that brings a column named like one of
them (f0_median_hz, snr_db, ...) is refused before any work, with one error naming the column and
the CSV, and nothing written (an existing workspace of that name untouched)."""

from __future__ import annotations

import pytest
from bad_audio import write_voice
from hostile_harness import assert_refused, run_cli, snapshot

from core.constants import MEASURED_ATTRIBUTES


@pytest.fixture
def calls(tmp_path):
    folder = tmp_path / "calls"
    write_voice(folder / "a.wav", seed=1)
    return folder


@pytest.mark.parametrize("column", [MEASURED_ATTRIBUTES[0], "snr_db"])
def test_a_metadata_column_named_like_a_measured_attribute(calls, tmp_path, data_root, column):
    meta = tmp_path / "meta.csv"
    meta.write_text(f"file,speaker,{column}\na.wav,A,120\n")
    roots = [data_root, calls, meta]
    before = snapshot(*roots)
    out = run_cli("ingest", calls, "--workspace", "w", "--metadata", meta, "--jobs", "1")
    assert_refused(
        out,
        str(meta),
        f"column(s) {column} are measured from the audio by ingest",
        "rename them in the CSV",
        before=before,
        roots=roots,
        allow_new=False,
    )
    assert not (data_root / "w").exists()


def test_the_refusal_leaves_an_existing_workspace_as_it_was(calls, tmp_path, data_root):
    assert run_cli("ingest", calls, "--workspace", "w", "--jobs", "1").rc == 0
    meta = tmp_path / "meta.csv"
    meta.write_text("file,loudness_dbfs,voiced_fraction\na.wav,-20,0.5\n")
    roots = [data_root, calls, meta]
    before = snapshot(*roots)
    out = run_cli("ingest", calls, "--workspace", "w", "--metadata", meta, "--jobs", "1")
    assert_refused(
        out, "meta.csv", "column(s) loudness_dbfs, voiced_fraction are measured", before=before, roots=roots
    )
