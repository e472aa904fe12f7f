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


@pytest.mark.parametrize(
    ("arch", "tensor", "value"),
    [
        ("topk", "W_enc", float("nan")),
        ("topk", "b_dec", float("inf")),
        ("jumprelu", "threshold", float("nan")),
    ],
)
def test_a_model_with_non_finite_weights_is_never_saved_over_a_good_one(tmp_path, arch, tensor, value):
    d = save_sae(_sae(arch, k=5 if arch == "topk" else None), tmp_path / "m", metrics={"nmse": 0.1})
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    bad = _sae(arch, k=5 if arch == "topk" else None)
    with torch.no_grad():
        getattr(bad, tensor).view(-1)[3] = value
    with pytest.raises(
        InputError, match=rf"not saved, the model's weights are not finite \(NaN or inf in {tensor}\)"
    ):
        save_sae(bad, d, metrics={"nmse": float("nan")})
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    with pytest.raises(InputError, match="not finite"):  # nor into a fresh folder
        save_sae(bad, tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_a_failed_swap_puts_the_old_model_back(tmp_path, monkeypatch):
    import os

    d = save_sae(_sae(), tmp_path / "m")
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    real_replace = os.replace

    def replace(src, dst):
        if ".tmp" in str(src) and str(dst) == str(d):  # the new folder into place
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(atomic.WriteError, match=rf"cannot write {d}: No space left on device"):
        save_sae(_sae(k=7), d)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging or trash folder left
    assert load_sae(d).cfg.k == 5


def test_a_write_that_fails_in_staging_names_the_model_folder(tmp_path, monkeypatch):
    d = save_sae(_sae(), tmp_path / "m")
    real = atomic.write_bytes

    def full(path, data):
        if path.name == "sae_weights.safetensors":
            try:
                raise OSError(28, "No space left on device")
            except OSError as exc:
                raise atomic.write_failure(path, exc) from None
        return real(path, data)

    monkeypatch.setattr(atomic, "write_bytes", full)
    with pytest.raises(atomic.WriteError, match=rf"^cannot write {d}: No space left on device$"):
        save_sae(_sae(k=7), d)
    monkeypatch.undo()
    assert load_sae(d).cfg.k == 5
