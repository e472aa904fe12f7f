"""Checkpoints: SAELens names/shapes, SAELens loads them with matching reconstructions, and every
corrupt / truncated / foreign file is refused with InputError (nothing is ever unpickled)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

from core import atomic
from core.errors import InputError, NotFoundError
from core.sae import SAEConfig, create_sae
from core.sae.checkpoint import load_sae, save_sae


def _sae(arch="topk", k=5, d_in=12, d_sae=30):
    sae = create_sae(SAEConfig(arch, d_in=d_in, d_sae=d_sae, k=k, seed=3))
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(0, 0.1)
        if arch == "batchtopk":
            sae.threshold.fill_(0.05)
    return sae


def _rehash(model_dir):
    """Make cfg.json's weights hash match whatever is now in the weights file (a forged folder)."""
    cfg = json.loads((model_dir / "cfg.json").read_text())
    cfg["voxsae"]["weights_sha256"] = hashlib.sha256(
        (model_dir / "sae_weights.safetensors").read_bytes()
    ).hexdigest()
    (model_dir / "cfg.json").write_text(json.dumps(cfg))


def test_round_trip_and_file_layout(tmp_path):
    sae = _sae()
    d = save_sae(sae, tmp_path / "m", metrics={"nmse": 0.1}, info={"fingerprint": "abc", "embedder": "x"})
    assert sorted(p.name for p in d.iterdir()) == ["cfg.json", "metrics.json", "sae_weights.safetensors"]
    cfg = json.loads((d / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["d_in"] == 12 and cfg["d_sae"] == 30 and cfg["k"] == 5
    assert cfg["voxsae"]["fingerprint"] == "abc" and cfg["voxsae"]["config"]["d_in"] == 12
    from safetensors import safe_open

    with safe_open(str(d / "sae_weights.safetensors"), "pt") as fh:
        shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    assert shapes == {"W_enc": (12, 30), "b_enc": (30,), "W_dec": (30, 12), "b_dec": (12,)}
    back = load_sae(d)
    x = torch.randn(20, 12)
    torch.testing.assert_close(back(x).recon, sae(x).recon)


@pytest.mark.parametrize(
    "arch,k,sl_name", [("topk", 5, "TopKSAE"), ("relu", None, "StandardSAE"), ("batchtopk", 4, "JumpReLUSAE")]
)
def test_saelens_loads_our_checkpoint(tmp_path, arch, k, sl_name):
    from sae_lens import SAE as SaeLensSAE

    sae = _sae(arch, k)
    save_sae(sae, tmp_path / arch)
    theirs = SaeLensSAE.load_from_disk(tmp_path / arch)
    assert type(theirs).__name__ == sl_name
    x = torch.randn(64, 12)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), sae(x).recon, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(theirs.encode(x), sae.encode(x), atol=1e-5, rtol=1e-5)


def test_missing_corrupt_truncated_foreign(tmp_path):
    with pytest.raises(NotFoundError):
        load_sae(tmp_path / "nothing")
    d = save_sae(_sae(), tmp_path / "m")
    w = d / "sae_weights.safetensors"
    good = w.read_bytes()

    # truncated weights
    w.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match="truncated|corrupt"):
        load_sae(d)
    # a torch.save pickle in place of the weights (hash forged to match): refused, never unpickled
    torch.save({"W_enc": torch.zeros(12, 30)}, w)
    _rehash(d)
    with pytest.raises(InputError, match="not a readable safetensors"):
        load_sae(d)
    # a safetensors file with other names, then other shapes
    save_file({"encoder.weight": torch.zeros(30, 12)}, str(w))
    _rehash(d)
    with pytest.raises(InputError, match="tensor names"):
        load_sae(d)
    save_file(
        {
            "W_enc": torch.zeros(12, 31),
            "b_enc": torch.zeros(30),
            "W_dec": torch.zeros(30, 12),
            "b_dec": torch.zeros(12),
        },
        str(w),
    )
    _rehash(d)
    with pytest.raises(InputError, match="shape"):
        load_sae(d)
    # NaN weights
    save_file(
        {
            "W_enc": torch.full((12, 30), float("nan")),
            "b_enc": torch.zeros(30),
            "W_dec": torch.zeros(30, 12),
            "b_dec": torch.zeros(12),
        },
        str(w),
    )
    _rehash(d)
    with pytest.raises(InputError, match="NaN"):
        load_sae(d)
    # corrupt cfg.json
    (d / "cfg.json").write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        load_sae(d)
    # a foreign (plain SAELens) cfg.json without our section
    (d / "cfg.json").write_text(json.dumps({"architecture": "topk", "d_in": 12, "d_sae": 30, "k": 5}))
    with pytest.raises(InputError, match="not a VoxSAE"):
        load_sae(d)
    # weights missing
    d2 = save_sae(_sae(), tmp_path / "m2")
    (d2 / "sae_weights.safetensors").unlink()
    with pytest.raises(InputError, match="missing"):
        load_sae(d2)


def test_crash_during_save_keeps_old_model(tmp_path, monkeypatch):
    old = _sae()
    d = save_sae(old, tmp_path / "m")
    new = _sae(k=7)

    def boom(*a, **k):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(atomic, "write_json", boom)
    with pytest.raises(RuntimeError):
        save_sae(new, d)
    monkeypatch.undo()
    back = load_sae(d)
    assert back.cfg.k == 5
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging leftovers
