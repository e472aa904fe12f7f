"""The analysis commands (identify, steer, analyze, report, dashboard-cache, summary) as a hostile
user would run them: unknown names, latent ids and values that are not what they should be,
models that cannot be used, a full or read-only analyses folder, and kill -9 mid-analyze.

Each refusal: non-zero exit, one `error:` line naming the input and what is wrong, no traceback,
every file that existed before byte-identical. A model folder that cannot be used is never
dropped silently: one `warning:` line per such model, naming it and why.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hostile_harness import (
    REPO,
    assert_refused,
    fill_disk,
    read_only,
    run_cli,
    small_disk,
    snapshot,
)

# the workspace tests/hostile/conftest.py trains (`trained_ws`, `analysed_ws`) and its models
WORKSPACE = "w"
MODELS = ("topk-L8-K2", "topk-L16-K2")
W = ("--workspace", WORKSPACE)
LANG = ("--attribute", "language", "--positive", "es")
SMALL, LARGE = MODELS  # topk-L8-K2, topk-L16-K2


@pytest.fixture
def other_dim_ws(data_root) -> Path:
    """VOXSAE_DATA/wide: a workspace of 32-d embeddings with one model of its own."""
    import torch

    from core.sae import SAEConfig, create_sae
    from core.sae.checkpoint import save_sae
    from core.workspace.workspace import Workspace

    seg = pd.DataFrame(
        {
            "segment_id": [f"x{i}" for i in range(12)],
            "source": "",
            "start_s": 0.0,
            "end_s": 1.0,
            "duration_s": 1.0,
            "language": ["es", "en"] * 6,
        }
    )
    x = np.random.default_rng(0).standard_normal((12, 32)).astype(np.float32)
    ws = Workspace.create(data_root / "wide", seg, x, embedder="synthetic", sample_rate=16000)
    torch.manual_seed(0)
    save_sae(create_sae(SAEConfig(architecture="topk", d_in=32, d_sae=8, k=2)), ws.models_dir / "topk-L8-K2")
    return ws.root


def _corrupt_cfg(model_dir: Path, text: str = '{"voxsae": {"format": "voxsae-sae", ') -> None:
    (model_dir / "cfg.json").write_text(text)


def _foreign_model(ws_root: Path, name: str = "topk-L8-K2", d_in: int = 32) -> None:
    """models/NAME replaced by a model taking `d_in`-d inputs."""
    import torch

    from core.sae import SAEConfig, create_sae
    from core.sae.checkpoint import save_sae

    torch.manual_seed(1)
    save_sae(create_sae(SAEConfig(architecture="topk", d_in=d_in, d_sae=8, k=2)), ws_root / "models" / name)


def _refused(ws_root: Path, argv, *needles):
    before = snapshot(ws_root)
    out = run_cli(*argv)
    return assert_refused(out, *needles, before=before, roots=[ws_root])


# -- identify ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, needles",
    [
        (("--attribute", "accent", "--positive", "x"), ("no attribute 'accent'", "attributes: ")),
        (("--attribute", "source", "--positive", "call1.wav"), ("'source'", "not an attribute")),
        (("--attribute", "language", "--positive", "fr"), ("no value 'fr'", "values: en, es")),
        ((*LANG, "--negative", "de"), ("no value 'de'",)),
        ((*LANG, "--negative", "es"), ("negative value 'es'", "also the positive")),
        (("--attribute", "split", "--positive", "sae"), ("too few samples of class 'sae'",)),
        (("--attribute", "language", "--positive", ""), ("no value ''",)),
    ],
    ids=[
        "unknown-attribute",
        "base-column",
        "unknown-value",
        "unknown-negative",
        "negative-is-positive",
        "class-without-samples",
        "empty-value",
    ],
)
def test_identify_refuses_bad_feature(analysed_ws, args, needles):
    _refused(analysed_ws, ("identify", *W, *args), *needles)


def test_identify_unknown_workspace(analysed_ws):
    _refused(analysed_ws, ("identify", "--workspace", "nope", *LANG), "workspace", "nope", "does not exist")


def test_identify_unknown_model_workspace(analysed_ws):
    _refused(analysed_ws, ("identify", *W, *LANG, "--model-workspace", "nope"), "nope", "does not exist")


def test_identify_with_models_of_another_dim(analysed_ws, other_dim_ws):
    _refused(
        analysed_ws,
        ("identify", *W, *LANG, "--model-workspace", "wide"),
        "models of workspace wide",
        "dim 32",
        "dim 24",
        "must match",
    )


def test_identify_when_every_model_is_corrupt_lists_them(analysed_ws):
    _corrupt_cfg(analysed_ws / "models" / SMALL)
    (analysed_ws / "models" / LARGE / "cfg.json").write_text("[1, 2, 3]")
    line = _refused(analysed_ws, ("identify", *W, *LANG), "no usable model", SMALL, LARGE)
    assert "not JSON" in line and "a JSON list, not an object" in line


def test_identify_when_the_only_model_takes_another_dim(analysed_ws):
    shutil.rmtree(analysed_ws / "models" / LARGE)
    _foreign_model(analysed_ws, SMALL, d_in=32)
    _refused(analysed_ws, ("identify", *W, *LANG), "no usable model", SMALL, "takes 32-d inputs", "24-d")


def test_identify_without_models(analysed_ws):
    shutil.rmtree(analysed_ws / "models")
    _refused(analysed_ws, ("identify", *W, *LANG), "no trained models", "python -m core train")


# -- steer ------------------------------------------------------------------------------------
STEER = ("steer", *W, *LANG, "--model", LARGE)


@pytest.mark.parametrize(
    "args, needles",
    [
        (("--latent", "16"), ("latent 16", "out of range (0..15)")),
        (("--latent", "-1"), ("latent -1", "out of range (0..15)")),
        (("--latent", "99999999999999999999999"), ("latent 99999999999999999999999", "out of range")),
        (("--latent", "abc"), ("latent 'abc'", "not a whole number")),
        (("--latent", "2.5"), ("latent '2.5'", "not a whole number")),
        (("--latent", ""), ("latent ''", "not a whole number")),
        (("--value", "nan"), ("--value", "'nan'", "not a finite positive number")),
        (("--value", "inf"), ("--value", "'inf'", "not a finite positive number")),
        (("--value=-inf",), ("--value", "'-inf'", "not a finite positive number")),
        (("--value", "0"), ("--value", "'0'", "not a finite positive number")),
        (("--value", "-1"), ("--value", "'-1'", "not a finite positive number")),
        (("--value", "abc"), ("--value", "'abc'", "not a finite positive number")),
        (("--value", "1e999"), ("--value", "'1e999'")),
    ],
    ids=lambda v: "=".join(v) if isinstance(v, tuple) and v[0].startswith("--") else "",
)
def test_steer_refuses_bad_latent_or_value(analysed_ws, args, needles):
    _refused(analysed_ws, (*STEER, *args), *needles)
    assert not (analysed_ws / "analyses" / "features" / "language=es_vs_nope.json").exists()


def test_steer_checks_latent_and_value_before_writing_anything(trained_ws):
    """On a workspace never analysed: a bad --latent leaves no dataset split or result behind."""
    before = snapshot(trained_ws)
    out = run_cli(*STEER, "--latent", "40")
    assert_refused(out, "latent 40", before=before, roots=[trained_ws], allow_new=False)
    out = run_cli(*STEER, "--value", "nan")
    assert_refused(out, "'nan'", before=before, roots=[trained_ws], allow_new=False)


def test_steer_unknown_model(analysed_ws):
    _refused(
        analysed_ws, ("steer", *W, *LANG, "--model", "topk-L99-K2"), "no model 'topk-L99-K2'", SMALL, LARGE
    )


def test_steer_a_corrupt_model_says_why(analysed_ws):
    _corrupt_cfg(analysed_ws / "models" / LARGE)
    _refused(analysed_ws, STEER, f"model {LARGE} cannot be used", "cfg.json", "not JSON")


def test_steer_a_model_with_nan_weights_says_why(analysed_ws):
    """Weights that hash right but hold NaN (saved by an old version): refused when loaded."""
    from safetensors.numpy import load_file, save_file

    from core.sae.catalog import file_sha256

    path = analysed_ws / "models" / LARGE
    tensors = load_file(str(path / "sae_weights.safetensors"))
    tensors["W_dec"][0, 0] = np.nan
    save_file(tensors, str(path / "sae_weights.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((path / "cfg.json").read_text())
    cfg["voxsae"]["weights_sha256"] = file_sha256(path / "sae_weights.safetensors")
    (path / "cfg.json").write_text(json.dumps(cfg))
    _refused(analysed_ws, STEER, f"model {LARGE} cannot be used", "W_dec contains NaN or inf")


def test_steer_with_models_of_another_dim(analysed_ws, other_dim_ws):
    _refused(
        analysed_ws,
        ("steer", *W, *LANG, "--model", SMALL, "--model-workspace", "wide"),
        "models of workspace wide",
        "dim 32",
    )


# -- analyze, report, dashboard-cache, summary ---------------------------------------------------
@pytest.mark.parametrize("command", ["analyze", "report", "dashboard-cache"])
def test_every_model_corrupt_is_one_error_listing_them(analysed_ws, command):
    _corrupt_cfg(analysed_ws / "models" / SMALL)
    (analysed_ws / "models" / LARGE / "sae_weights.safetensors").write_bytes(b"\0" * 10)
    line = _refused(analysed_ws, (command, *W), "no usable model", SMALL, LARGE)
    assert "weights do not match cfg.json" in line


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_analyses_without_models(trained_ws, command):
    shutil.rmtree(trained_ws / "models")
    _refused(trained_ws, (command, *W), "no trained models")


def test_analyze_with_models_of_another_dim(analysed_ws, other_dim_ws):
    _refused(analysed_ws, ("analyze", *W, "--model-workspace", "wide"), "dim 32", "dim 24")


@pytest.mark.parametrize("command", ["analyze", "report", "dashboard-cache", "summary"])
def test_unknown_workspace(data_root, command):
    before = snapshot(data_root)
    out = run_cli(command, "--workspace", "nowhere")
    assert_refused(out, "nowhere", "does not exist", before=before, roots=[data_root], allow_new=False)


def test_a_corrupt_workspace_json(analysed_ws):
    (analysed_ws / "workspace.json").write_text('{"name": "w", "dim": ')
    for command in ("analyze", "identify", "dashboard-cache"):
        extra = LANG if command == "identify" else ()
        _refused(analysed_ws, (command, *W, *extra), "workspace.json", "not a VoxSAE workspace file")


# -- a corrupt model among good ones: named, with the reason, everywhere it is left out ----------
CORRUPTIONS = {
    "cfg-not-json": (lambda d: _corrupt_cfg(d), "skipped: cfg.json: corrupt SAE config (not JSON"),
    "cfg-a-list": (lambda d: _corrupt_cfg(d, "[]"), "skipped: cfg.json: corrupt SAE config (a JSON list"),
    "d_sae-text": (
        lambda d: _corrupt_cfg(d, (d / "cfg.json").read_text().replace('"d_sae": 8', '"d_sae": "8"')),
        "d_sae '8' is not a positive whole number",
    ),
    "weights-truncated": (
        lambda d: (d / "sae_weights.safetensors").write_bytes(
            (d / "sae_weights.safetensors").read_bytes()[:64]
        ),
        "skipped: sae_weights.safetensors: weights do not match cfg.json (truncated",
    ),
    "metrics-not-json": (
        lambda d: (d / "metrics.json").write_text("{nmse"),
        "metrics.json: corrupt metrics (not JSON",
    ),
}


@pytest.mark.parametrize(
    "command, corruption",
    [("identify", c) for c in sorted(CORRUPTIONS)]
    + [
        (cmd, c)
        for cmd in ("analyze", "report", "dashboard-cache")
        for c in ("cfg-a-list", "metrics-not-json")
    ],
)
def test_a_corrupt_model_is_named_and_the_rest_analysed(analysed_ws, command, corruption):
    corrupt, reason = CORRUPTIONS[corruption]
    corrupt(analysed_ws / "models" / SMALL)
    extra = {"identify": LANG, "dashboard-cache": ("--no-umap",)}.get(command, ())
    out = run_cli(command, *W, *extra)
    assert out.rc == 0, out
    warnings = [line for line in out.err.splitlines() if line.startswith("warning: model")]
    assert len(warnings) == 1, out
    assert warnings[0].startswith(f"warning: model {SMALL}") and reason in warnings[0], warnings
    if corruption == "metrics-not-json":
        assert warnings[0].endswith("its training metrics are not shown")
        return  # the model itself is fine and still analysed
    if command == "identify":
        assert SMALL not in out.out and LARGE in out.out
    if command == "report":
        report = json.loads((analysed_ws / "analyses" / "report.json").read_text())
        assert [m["name"] for m in report["models"]] == [LARGE]
        assert any(s.startswith(f"model {SMALL}: ") for s in report["skipped"]), report["skipped"]
        assert f"model {SMALL}: " in (analysed_ws / "analyses" / "report.html").read_text()


# -- a full disk and a read-only analyses folder ------------------------------------------------
@pytest.fixture
def analyses_disk(analysed_ws, tmp_path):
    """The analysed workspace's analyses/ on a 1 MiB tmpfs of its own (same files)."""
    saved = tmp_path / "analyses-copy"
    shutil.copytree(analysed_ws / "analyses", saved)
    shutil.rmtree(analysed_ws / "analyses")
    with small_disk(analysed_ws / "analyses", "1m") as disk:
        shutil.copytree(saved, disk, dirs_exist_ok=True)
        yield disk


@pytest.mark.parametrize(
    "argv",
    [(*STEER, "--latent", "3"), ("analyze", *W, "--force"), ("report", *W)],
    ids=["steer", "analyze", "report"],
)
def test_a_full_analyses_disk(analysed_ws, analyses_disk, argv):
    fill_disk(analyses_disk)
    before = snapshot(analysed_ws)
    out = run_cli(*argv)
    assert_refused(
        out, "cannot write", str(analyses_disk), "No space left on device", before=before, roots=[analysed_ws]
    )
    assert not [p for p in analyses_disk.rglob("*.tmp")], "a temporary file was left behind"


@pytest.mark.parametrize(
    "argv",
    [(*STEER, "--latent", "3"), ("analyze", *W, "--force"), ("report", *W)],
    ids=["steer", "analyze", "report"],
)
def test_a_read_only_analyses_folder(analysed_ws, analyses_disk, argv):
    before = snapshot(analysed_ws)
    with read_only(analyses_disk):
        out = run_cli(*argv)
    assert_refused(
        out, "cannot write", str(analyses_disk), "Read-only file system", before=before, roots=[analysed_ws]
    )


def test_a_full_cache_disk_for_dashboard_cache(analysed_ws, tmp_path):
    shutil.rmtree(analysed_ws / "cache")
    with small_disk(analysed_ws / "cache", "64k") as disk:
        fill_disk(disk)
        before = snapshot(analysed_ws)
        out = run_cli("dashboard-cache", *W, "--no-umap")
        assert_refused(
            out, "cannot write", str(disk), "No space left on device", before=before, roots=[analysed_ws]
        )
        left = [p for p in disk.rglob("*") if p.is_file() and p.name != ".filler"]
        assert not left, f"half-built cache left behind: {left}"


# -- kill -9 mid-analyze -------------------------------------------------------------------------
def _start_analyze(data_root: Path) -> subprocess.Popen:
    import os

    return subprocess.Popen(
        [sys.executable, "-m", "core", "analyze", *W],
        cwd=REPO,
        env={**os.environ, "VOXSAE_DATA": str(data_root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stored_results(analyses: Path) -> dict[str, object]:
    """Every visible result file, parsed (a half-written one fails to parse)."""
    out = {}
    for path in sorted(analyses.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        rel = str(path.relative_to(analyses))
        out[rel] = pd.read_parquet(path) if path.suffix == ".parquet" else json.loads(path.read_text())
    return out


def test_kill_9_mid_analyze_then_rerun_completes(trained_ws, data_root, tmp_path, monkeypatch):
    analyses = trained_ws / "analyses"
    proc = _start_analyze(data_root)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if analyses.is_dir() and any(
                p.is_file() and not p.name.startswith(".") for p in analyses.rglob("*")
            ):
                break
            time.sleep(0.005)
        assert proc.poll() is None, "analyze ended before it was killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (analyses / "manifest.json").exists(), "killed too late to test anything"
    partial = _stored_results(analyses)  # every file there is whole
    assert partial
    out = run_cli("analyze", *W)
    assert out.rc == 0 and "up to date" not in out.out, out
    after = _stored_results(analyses)
    assert set(partial) <= set(after)
    # the same results as one uninterrupted run on a fresh copy
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copytree(trained_ws, clean / WORKSPACE, ignore=shutil.ignore_patterns("analyses", "cache"))
    monkeypatch.setenv("VOXSAE_DATA", str(clean))
    assert run_cli("analyze", *W).rc == 0
    want = _stored_results(clean / WORKSPACE / "analyses")
    assert set(want) == set(after)
    for rel in want:
        if rel.endswith(".json"):
            a, b = dict(after[rel]), dict(want[rel])
            for volatile in ("seconds", "computed_at"):
                a.pop(volatile, None), b.pop(volatile, None)
            assert a == b, rel
        else:
            pd.testing.assert_frame_equal(after[rel], want[rel])
    monkeypatch.setenv("VOXSAE_DATA", str(data_root))
    assert run_cli("analyze", *W).out.startswith("analyses of w are up to date")


# -- stored results and caches deleted or corrupted by hand: said, and computed again -----------
def _one(folder: Path, pattern: str) -> Path:
    [path] = sorted(folder.glob(pattern))
    return path


def test_a_deleted_result_is_computed_again(analysed_ws):
    ident = _one(analysed_ws / "analyses" / "identification", "language=*.json")
    want = json.loads(ident.read_text())["models"]
    ident.unlink()
    out = run_cli("analyze", *W)
    assert out.rc == 0 and "up to date" not in out.out, out
    assert json.loads(ident.read_text())["models"] == want


def test_report_after_a_deleted_feature_split(analysed_ws):
    """The manifest still lists the feature; the report recomputes what is gone instead of failing."""
    _one(analysed_ws / "analyses" / "features", "language=*.json").unlink()
    out = run_cli("report", *W)
    assert out.rc == 0 and "Traceback" not in out.err, out
    assert "language: topk-L" in out.out


@pytest.mark.parametrize(
    "target, damage",
    [
        (
            "features/language=es_vs_en.json",
            lambda p: p.write_text(p.read_text().replace('"test_rows": [', '"test_rows": [99999, ')),
        ),
        ("identification/language=es_vs_en.json", lambda p: p.write_text(p.read_text()[:200])),
        ("grid/language=es_vs_en.parquet", lambda p: p.write_bytes(b"PAR1" + b"\0" * 40)),
        ("suggestions/topk-L16-K2.parquet", lambda p: p.write_bytes(p.read_bytes()[:100])),
        ("identification/class=music_vs_voice.json", lambda p: p.write_text("[" * 100_000)),
    ],
    ids=["split-rows-out-of-range", "truncated-json", "not-parquet", "truncated-parquet", "deep-json"],
)
def test_a_corrupt_stored_result_is_said_and_recomputed(analysed_ws, target, damage):
    damage(analysed_ws / "analyses" / target)
    out = run_cli("analyze", *W)
    assert out.rc == 0 and "Traceback" not in out.err, out
    said = [line for line in out.err.splitlines() if line.startswith("warning:") and target in line]
    assert said and "corrupt stored result" in said[0], out
    again = run_cli("analyze", *W)
    assert again.out.startswith("analyses of w are up to date") and "warning" not in again.err, again


@pytest.mark.parametrize(
    "name, damage",
    [
        ("meta.json", lambda p: p.write_text("{")),
        ("rows.npy", lambda p: p.write_bytes(p.read_bytes()[:90])),
        ("stats.parquet", lambda p: p.write_bytes(b"junk")),
        ("indptr.npy", lambda p: np.save(p, np.arange(3))),
    ],
)
def test_a_corrupt_browse_index_is_said_and_rebuilt(analysed_ws, name, damage):
    from core.dashboard.browse import load_index
    from core.workspace.workspace import Workspace

    folder = _one(analysed_ws / "cache" / "browse", f"{LARGE}-*")
    damage(folder / name)
    out = run_cli("dashboard-cache", *W, "--no-umap")
    assert out.rc == 0, out
    assert any(line.startswith(f"warning: {folder}: corrupt") for line in out.err.splitlines()), out
    index = load_index(Workspace.open(analysed_ws), LARGE)
    assert index is not None and index.indptr.shape == (17,) and int(index.indptr[-1]) == len(index.rows)


def test_corrupt_cached_activations_are_said_and_recomputed(analysed_ws):
    cache = _one(analysed_ws / "cache" / "activations", f"{LARGE}-*.npz")
    good = np.load(cache)["indices"]
    np.savez(cache, indices=np.full_like(good, 999), values=np.ones(good.shape, np.float32))
    out = run_cli(*STEER, "--latent", "3")
    assert out.rc == 0, out
    assert f"warning: {cache}: corrupt cached activations (latent ids outside 0..15)" in out.err
    np.testing.assert_array_equal(np.load(cache)["indices"], good)


def test_a_corrupt_umap_map_is_said_and_not_shown(analysed_ws, capsys):
    from core.dashboard.projection import load_projection, projection_path, save_projection
    from core.workspace.workspace import Workspace

    ws = Workspace.open(analysed_ws)
    save_projection(ws, np.arange(len(ws)), np.zeros((len(ws), 2)))
    path = projection_path(ws)
    for junk in (b"not an npz", None):
        if junk is None:  # a readable map whose rows are not this workspace's
            np.savez(path, rows=np.arange(len(ws) + 5), coords=np.zeros((len(ws) + 5, 2)))
        else:
            path.write_bytes(junk)
        assert load_projection(ws) is None
        assert f"warning: {path}: corrupt stored result" in capsys.readouterr().err
