"""core.sae.catalog: a model folder that cannot be used is never dropped silently (scan_models
names it and says why), a corrupt metrics.json keeps the model, and latent ids are checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sae_synth import segments_for

from core.errors import InputError, NotFoundError
from core.sae import SAEConfig, create_sae
from core.sae.catalog import check_latent, get_model, list_models, model_version, scan_models
from core.sae.checkpoint import save_sae
from core.workspace.workspace import Workspace

D_IN = 6


@pytest.fixture
def ws(tmp_path):
    """A workspace with two good models: good-L8 (topk, K 2) and good-L12 (topk, K 3)."""
    x = np.random.default_rng(0).standard_normal((20, D_IN)).astype(np.float32)
    ws = Workspace.create(tmp_path / "w", segments_for(20), x, embedder="synthetic", sample_rate=0)
    for name, d_sae, k in (("good-L8", 8, 2), ("good-L12", 12, 3)):
        save_sae(
            create_sae(SAEConfig(architecture="topk", d_in=D_IN, d_sae=d_sae, k=k)),
            ws.models_dir / name,
            metrics={"nmse": 0.25},
        )
    return ws


def _bad_model(ws, name="bad", d_in=D_IN):
    return save_sae(create_sae(SAEConfig(architecture="topk", d_in=d_in, d_sae=4, k=1)), ws.models_dir / name)


def _edit_cfg(path, edit):
    cfg = json.loads((path / "cfg.json").read_text())
    edit(cfg)
    (path / "cfg.json").write_text(json.dumps(cfg))


def _set(section, key, value):
    def edit(cfg):
        target = cfg["voxsae"] if section == "voxsae" else cfg["voxsae"]["config"]
        if value is _DELETE:
            del target[key]
        else:
            target[key] = value

    return edit


_DELETE = object()

BROKEN = {
    "not JSON": (
        lambda d: (d / "cfg.json").write_text('{"voxsae": {'),
        "cfg.json: corrupt SAE config (not JSON",
    ),
    "a JSON list": (lambda d: (d / "cfg.json").write_text("[1, 2]"), "a JSON list, not an object"),
    "nested too deep": (
        lambda d: (d / "cfg.json").write_text("[" * 100_000 + "]" * 100_000),
        "nested too deeply",
    ),
    "no voxsae section": (
        lambda d: (d / "cfg.json").write_text(json.dumps({"d_in": D_IN, "d_sae": 4})),
        "not a VoxSAE SAE checkpoint",
    ),
    "config missing": (lambda d: _edit_cfg(d, _set("voxsae", "config", _DELETE)), "voxsae.config is missing"),
    "d_sae missing": (lambda d: _edit_cfg(d, _set("config", "d_sae", _DELETE)), "d_sae None is not"),
    "d_sae text": (lambda d: _edit_cfg(d, _set("config", "d_sae", "4")), "d_sae '4' is not a positive whole"),
    "d_sae a bool": (lambda d: _edit_cfg(d, _set("config", "d_sae", True)), "d_sae True is not"),
    "d_sae zero": (lambda d: _edit_cfg(d, _set("config", "d_sae", 0)), "d_sae 0 is not"),
    "k a float": (lambda d: _edit_cfg(d, _set("config", "k", 1.5)), "k 1.5 is not"),
    "architecture a number": (
        lambda d: _edit_cfg(d, _set("config", "architecture", 3)),
        "architecture 3 is not a name",
    ),
    "no weights hash": (
        lambda d: _edit_cfg(d, _set("voxsae", "weights_sha256", _DELETE)),
        "weights_sha256 None",
    ),
    "weights truncated": (
        lambda d: (d / "sae_weights.safetensors").write_bytes(
            (d / "sae_weights.safetensors").read_bytes()[:100]
        ),
        "sae_weights.safetensors: weights do not match cfg.json (truncated",
    ),
    "weights missing": (lambda d: (d / "sae_weights.safetensors").unlink(), "the weights file is missing"),
    "no cfg.json": (lambda d: (d / "cfg.json").unlink(), "no SAE here (no cfg.json)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_model_is_named_with_its_reason(ws, case):
    break_it, reason = BROKEN[case]
    break_it(_bad_model(ws))
    models, problems = scan_models(ws)
    assert [m.name for m in models] == ["good-L8", "good-L12"]  # the good ones stay
    assert [(p.name, p.skipped) for p in problems] == [("bad", True)]
    assert reason in problems[0].reason, problems[0].reason
    assert str(ws.models_dir) not in problems[0].reason  # the line names the model, not its path
    assert problems[0].line() == f"warning: model bad skipped: {problems[0].reason}"
    with pytest.raises(InputError, match=r"model bad cannot be used: .*" + reason.split(" (")[0][:20]):
        get_model(ws, "bad")


def test_a_model_for_another_dim_is_skipped_with_the_dims(ws):
    _bad_model(ws, "wide", d_in=D_IN + 2)
    [problem] = scan_models(ws)[1]
    assert problem.reason == f"it takes {D_IN + 2}-d inputs but workspace w has {D_IN}-d embeddings"


@pytest.mark.parametrize(
    "text, why",
    [("{nope", "corrupt metrics (not JSON"), ("[0.5]", "a JSON list, not an object"), ('"x"', "a JSON str")],
)
def test_corrupt_metrics_keep_the_model_and_say_so(ws, text, why):
    (ws.models_dir / "good-L8" / "metrics.json").write_text(text)
    models, problems = scan_models(ws)
    assert [m.name for m in models] == ["good-L8", "good-L12"]
    assert models[0].metrics == {} and models[1].metrics == {"nmse": 0.25}
    assert [(p.name, p.skipped) for p in problems] == [("good-L8", False)]
    assert why in problems[0].reason and str(ws.models_dir) not in problems[0].reason
    assert problems[0].line().endswith("its training metrics are not shown")
    assert get_model(ws, "good-L8").metrics == {}


def test_version_is_the_hash_of_the_weights_on_disk(ws):
    path = ws.models_dir / "good-L8"
    recorded = json.loads((path / "cfg.json").read_text())["voxsae"]["weights_sha256"]
    assert get_model(ws, "good-L8").version == recorded[:16] == model_version(path)
    save_sae(create_sae(SAEConfig(architecture="topk", d_in=D_IN, d_sae=8, k=2, seed=5)), path)
    assert get_model(ws, "good-L8").version != recorded[:16]  # rewritten: hashed again


def test_weights_rewritten_in_place_with_their_mtime_put_back_are_hashed_again(tmp_path):
    # same path, inode and size, mtime restored by os.utime: only the ctime tells, so a version
    # remembered by (inode, mtime, size) alone would outlive the bytes it was computed from
    import os

    from core.sae.catalog import file_sha256

    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 64)
    st = os.stat(f)
    first = file_sha256(f)
    with open(f, "r+b") as fh:
        fh.write(b"b")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(f).st_ino, os.stat(f).st_size, os.stat(f).st_mtime_ns) == (st.st_ino, 64, st.st_mtime_ns)
    assert file_sha256(f) != first


def test_unknown_model_lists_the_usable_ones(ws):
    with pytest.raises(NotFoundError, match=r"no model 'x' \(available: good-L8, good-L12\)"):
        get_model(ws, "x")
    assert [m.name for m in list_models(ws)] == ["good-L8", "good-L12"]


@pytest.mark.parametrize("latent, want", [(0, 0), (7, 7), (np.int64(3), 3), ("5", 5), (" 2 ", 2)])
def test_check_latent_accepts_whole_numbers(ws, latent, want):
    assert check_latent(get_model(ws, "good-L8"), latent) == want


@pytest.mark.parametrize("latent", [True, 2.5, 3.0, "abc", "1.5", None, "", [1]])
def test_check_latent_refuses_what_is_not_a_whole_number(ws, latent):
    with pytest.raises(InputError, match="is not a whole number"):
        check_latent(get_model(ws, "good-L8"), latent)


@pytest.mark.parametrize("latent", [8, -1, 2**70])
def test_check_latent_refuses_ids_outside_the_model(ws, latent):
    with pytest.raises(NotFoundError, match=rf"latent {latent} is out of range \(0\.\.7\)"):
        check_latent(get_model(ws, "good-L8"), latent)
