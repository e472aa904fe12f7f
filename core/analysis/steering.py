"""Feature steering (paper III-D, Eqs. 1-3, V-C, Tables III-IV, Figs. 5-6).

For SAE latent phi and value a: a positive test sample gets v_phi := -a (Eq. 1, deactivate), a
negative one v_phi := +a (Eq. 2, activate); the steered latent vector is decoded. delta_s(x) =
cos(x, c_pos) - cos(x, c_neg) (Eq. 3), with c_pos / c_neg the centroids of the SAE-RECONSTRUCTED
train-split embeddings of each class, for x = the reconstruction before and after steering.
Also: cosine of each sample to its own speaker's centroid (leave-one-out, reconstructed test
embeddings of that speaker) before and after: does steering keep the speaker?

Vectorised: the decoder is affine, so decode(v~) = decode(v) + (v~_phi - v_phi) W_dec[phi]; with the
dot products against the centroids precomputed once per session, a steering step is O(n d).

    session = SteeringSession.build(ws, model_ref, dataset)   # encodes once (the slow part)
    out = session.steer(latent, value)                         # ~1 ms for 800 samples
    out.summary()  ->  {"model", "latent", "value", "classes": {CLASS: {n, mean_before, ...}}}

Command: python -m core steer --workspace NAME --model MODEL --attribute language --positive es
         [--negative en] [--latent I] [--value A] [--model-workspace W] [--json]
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.analysis import datasets
from core.analysis.datasets import FeatureDataset, dataset_key, resolve_values, split_hash
from core.analysis.models import (
    ModelRef,
    check_latent,
    decoder_affine,
    encode_rows,
    find_model,
)
from core.analysis.store import ResultStore
from core.constants import STEERING_SUBDIR
from core.errors import InputError
from core.workspace.workspace import Workspace

DEFAULT_VALUE = 1.0  # the paper's a_phi


def check_value(value) -> float:
    """The steering value a (the paper's a_phi) as a float: a finite number > 0 (a number, or text
    holding one); InputError naming what was given otherwise."""
    try:
        a = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        a = None
    if isinstance(value, bool) or a is None or not np.isfinite(a) or a <= 0:
        raise InputError(
            f"steering value (--value) {value!r} is not a finite positive number (the paper's a_phi)"
        )
    return a


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


@dataclass
class SteeringResult:
    model: str
    latent: int
    value: float
    class_names: tuple[str, str]
    y: np.ndarray
    delta_before: np.ndarray
    delta_after: np.ndarray
    speaker_cos_before: np.ndarray
    speaker_cos_after: np.ndarray
    target: np.ndarray
    """The value v_phi was set to, per sample (-a for positives, +a for negatives)."""

    def class_summary(self, positive: bool) -> dict:
        m = self.y == positive
        before, after = self.delta_before[m], self.delta_after[m]
        # a positive sample sits on the + side of delta_s and is pushed to -; a negative the reverse
        sign = 1.0 if positive else -1.0
        own_side = sign * before > 0
        crossed = own_side & (sign * after < 0)
        spk_b, spk_a = self.speaker_cos_before[m], self.speaker_cos_after[m]
        ok = np.isfinite(spk_b)
        return {
            "n": int(m.sum()),
            "direction": "deactivate" if positive else "activate",
            "set_to": float(-self.value if positive else self.value),
            "mean_before": float(before.mean()) if before.size else float("nan"),
            "mean_after": float(after.mean()) if after.size else float("nan"),
            # of the samples on their own class's side before steering, the share that crossed over
            "flipped_fraction": float(crossed.sum() / own_side.sum()) if own_side.any() else 0.0,
            # share of all samples of the class on the other class's side after steering
            "other_side_after_fraction": float((sign * after < 0).mean()) if after.size else 0.0,
            "speaker_cos_before": float(spk_b[ok].mean()) if ok.any() else None,
            "speaker_cos_after": float(spk_a[ok].mean()) if ok.any() else None,
            "speaker_cos_change": float((spk_a[ok] - spk_b[ok]).mean()) if ok.any() else None,
        }

    def summary(self) -> dict:
        pos, neg = self.class_names
        return {
            "model": self.model,
            "latent": int(self.latent),
            "value": float(self.value),
            "classes": {pos: self.class_summary(True), neg: self.class_summary(False)},
        }

    def json_summary(self) -> dict:
        """Exactly the `steer --json` shape."""
        s = self.summary()
        keys = ("n", "mean_before", "mean_after", "flipped_fraction")
        return {
            "model": s["model"],
            "latent": s["latent"],
            "value": s["value"],
            "classes": {c: {k: v[k] for k in keys} for c, v in s["classes"].items()},
        }

    def to_dict(self) -> dict:
        """summary() plus 'distributions' (what steering_chart draws)."""
        return {**self.summary(), "distributions": self.distributions()}

    def distributions(self) -> dict:
        """Per-sample delta_s before/after per class (Figs. 5-6 data)."""
        pos, neg = self.class_names
        out = {}
        for name, flag in ((pos, True), (neg, False)):
            m = self.y == flag
            out[name] = {
                "before": self.delta_before[m].round(6).tolist(),
                "after": self.delta_after[m].round(6).tolist(),
            }
        return out


class SteeringSession:
    """Everything that does not depend on (latent, value), computed once; `steer` is cheap."""

    def __init__(
        self,
        model: str,
        d_sae: int,
        z_test: np.ndarray,
        y_test: np.ndarray,
        z_train: np.ndarray,
        y_train: np.ndarray,
        w_dec: np.ndarray,
        b_dec: np.ndarray,
        class_names: tuple[str, str],
        speakers: np.ndarray | None = None,
    ):
        self.model = model
        self.d_sae = int(d_sae)
        self.class_names = class_names
        self.z = np.ascontiguousarray(z_test, dtype=np.float32)
        self.y = np.asarray(y_test, dtype=bool)
        self.w_dec = np.ascontiguousarray(w_dec, dtype=np.float32)
        self.b_dec = np.asarray(b_dec, dtype=np.float32)
        y_train = np.asarray(y_train, dtype=bool)
        if y_train.all() or (~y_train).all():
            raise InputError("steering needs train samples of both classes for the centroids")
        recon_train = z_train @ self.w_dec + self.b_dec
        self.c_pos = recon_train[y_train].mean(axis=0).astype(np.float64)
        self.c_neg = recon_train[~y_train].mean(axis=0).astype(np.float64)
        self.recon = (self.z @ self.w_dec + self.b_dec).astype(np.float64)
        # precomputed dot products for the O(n) steering step
        self.u_pos, self.u_neg = _unit(self.c_pos), _unit(self.c_neg)
        self.e_pos = self.recon @ self.u_pos
        self.e_neg = self.recon @ self.u_neg
        self.e_sq = np.einsum("ij,ij->i", self.recon, self.recon)
        self.w_pos = self.w_dec.astype(np.float64) @ self.u_pos  # [d_sae]
        self.w_neg = self.w_dec.astype(np.float64) @ self.u_neg
        self.w_sq = np.einsum("ij,ij->i", self.w_dec, self.w_dec).astype(np.float64)
        norm = np.sqrt(self.e_sq)
        safe = np.where(norm > 0, norm, 1.0)
        self.delta_before = (self.e_pos - self.e_neg) / safe
        # leave-one-out speaker centroids of the reconstructed test embeddings
        self.spk_c = None
        if speakers is not None:
            spk = np.asarray(speakers).astype(str)
            uniq, inv = np.unique(spk, return_inverse=True)
            sums = np.zeros((len(uniq), self.recon.shape[1]))
            np.add.at(sums, inv, self.recon)
            counts = np.bincount(inv, minlength=len(uniq))
            n_i = counts[inv]
            c = (sums[inv] - self.recon) / np.maximum(n_i - 1, 1)[:, None]
            c[n_i < 2] = np.nan
            self.spk_c = c
            cn = np.linalg.norm(c, axis=1)
            self.spk_cnorm = cn
            self.e_c = np.einsum("ij,ij->i", self.recon, c)
            self.speaker_cos_before = self.e_c / (safe * np.where(cn > 0, cn, 1.0))

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def build(cls, ws: Workspace, ref: ModelRef, ds: FeatureDataset) -> SteeringSession:
        z_train = encode_rows(ws, ref, ds.train_rows)
        z_test = encode_rows(ws, ref, ds.test_rows)
        w, b = decoder_affine(ref)
        speakers = None
        if "speaker" in ws.segments.columns:
            speakers = (
                ws.segments["speaker"].iloc[ds.test_rows].astype("string").fillna("").to_numpy(dtype=object)
            )
        return cls(
            ref.name, ref.d_sae, z_test, ds.y_test, z_train, ds.y_train, w, b, ds.class_names, speakers
        )

    # -- the cheap part -------------------------------------------------------------------
    def steer(self, latent: int, value: float = DEFAULT_VALUE) -> SteeringResult:
        latent = int(latent)
        if not 0 <= latent < self.d_sae:
            from core.errors import NotFoundError

            raise NotFoundError(f"model {self.model}: latent {latent} is out of range (0..{self.d_sae - 1})")
        a = check_value(value)
        target = np.where(self.y, -a, a)  # Eq. 1 for positives, Eq. 2 for negatives
        t = target - self.z[:, latent]  # change of v_phi
        w = self.w_dec[latent].astype(np.float64)
        e_w = self.recon @ w
        sq = self.e_sq + 2 * t * e_w + t * t * self.w_sq[latent]
        norm = np.sqrt(np.maximum(sq, 0.0))
        safe = np.where(norm > 0, norm, 1.0)
        delta_after = (self.e_pos - self.e_neg + t * (self.w_pos[latent] - self.w_neg[latent])) / safe
        if self.spk_c is not None:
            cw = self.spk_c @ w
            cn = np.where(self.spk_cnorm > 0, self.spk_cnorm, 1.0)
            spk_after = (self.e_c + t * cw) / (safe * cn)
            spk_before = self.speaker_cos_before
        else:
            spk_after = spk_before = np.full(len(self.y), np.nan)
        return SteeringResult(
            model=self.model,
            latent=latent,
            value=a,
            class_names=self.class_names,
            y=self.y,
            delta_before=self.delta_before,
            delta_after=delta_after,
            speaker_cos_before=spk_before,
            speaker_cos_after=spk_after,
            target=target,
        )


def steering_session(
    ws: Workspace | str, model: str, attribute: str, positive: str, negatives=None, *, model_workspace=None
) -> SteeringSession:
    """A session for the dashboard slider: build once, then session.steer(latent, value) per move."""
    ws = Workspace.of(ws)
    ds = FeatureDataset.load_or_build(ws, attribute, positive, negatives)
    return SteeringSession.build(ws, find_model(ws, model, model_workspace), ds)


def steer_naive(
    sae, z_test, y_test, latent: int, value: float, c_pos, c_neg
) -> tuple[np.ndarray, np.ndarray]:
    """Reference implementation, one sample at a time through sae.decode (tests + bench baseline).
    Returns (delta_before, delta_after)."""
    import torch

    def cos(a, b):
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))

    before, after = [], []
    for i in range(len(y_test)):
        v = np.array(z_test[i], dtype=np.float32)
        with torch.no_grad():
            eps = sae.decode(torch.as_tensor(v[None]))[0].numpy().astype(np.float64)
        v_t = v.copy()
        v_t[latent] = -value if y_test[i] else value
        with torch.no_grad():
            eps_t = sae.decode(torch.as_tensor(v_t[None]))[0].numpy().astype(np.float64)
        before.append(cos(eps, c_pos) - cos(eps, c_neg))
        after.append(cos(eps_t, c_pos) - cos(eps_t, c_neg))
    return np.array(before), np.array(after)


# -- stored results --------------------------------------------------------------------------
def _value_text(value: float) -> str:
    """a as a file name part: short ('1', '0.5') when that is exact, else every digit, so two
    values never share a stored result (a = 1.00000001 is not a = 1)."""
    short = f"{float(value):g}"
    return short if float(short) == float(value) else repr(float(value))


def _result_name(model: str, latent: int, value: float) -> str:
    return f"{model}-L{int(latent)}-a{_value_text(value)}"


def run_steering(
    ws: Workspace,
    attribute: str,
    positive: str,
    negatives=None,
    *,
    model: str,
    latent: int | None = None,
    value: float = DEFAULT_VALUE,
    model_workspace=None,
    save: bool = True,
) -> dict:
    """Steer one model's latent (default: the identified one) and store summary + distributions.
    Every argument is checked before anything is computed or written."""
    store = ResultStore(ws, model_workspace)
    ws = store.ws
    ref = find_model(ws, model, store.model_ws)
    if latent is not None:
        latent = check_latent(ref, latent)
    value = check_value(value)
    ds = FeatureDataset.load_or_build(ws, attribute, positive, negatives)
    if latent is None:
        latent = identified_latent(ws, ds, ref, model_workspace)
    session = SteeringSession.build(ws, ref, ds)
    res = session.steer(latent, value)
    out = res.summary()
    out.update(
        attribute=ds.attribute,
        positive=ds.positive,
        negatives=ds.negatives,
        key=ds.key,
        checksum=ref.checksum,
        fingerprint=ws.fingerprint,
        distributions=res.distributions(),
    )
    if save:
        inputs = store.inputs([ref], split=split_hash(ds), latent=latent, value=float(value))
        out = store.save_json(
            f"{STEERING_SUBDIR}/{ds.key}", _result_name(ref.name, latent, value), out, inputs
        )
    out["_result"] = res
    return out


def identified_latent(ws: Workspace, ds: FeatureDataset, ref: ModelRef, model_workspace=None) -> int:
    """The latent identification found for this model (stored result, else computed now)."""
    from core.analysis.identification import identify_model, load_identification

    stored = load_identification(ws, ds.attribute, ds.positive, ds.negatives, model_workspace)
    if stored:
        for m in stored["models"]:
            if m["model"] == ref.name and m.get("checksum") == ref.checksum:
                return int(m["latent"])
    return int(identify_model(ws, ref, ds)["latent"])


def load_steering(
    ws: Workspace | str,
    attribute: str,
    positive: str,
    model: str,
    latent: int | None = None,
    value: float = DEFAULT_VALUE,
    negatives=None,
    model_workspace=None,
) -> dict | None:
    """Stored steering result (summary + 'distributions'), or None. With latent None: the first
    stored for that model and value."""
    store = ResultStore(ws, model_workspace)
    negs = resolve_values(store.ws, attribute, positive, negatives)
    kind = f"{STEERING_SUBDIR}/{dataset_key(attribute, str(positive), negs)}"
    if latent is not None:
        return store.load_json(kind, _result_name(model, latent, value))
    folder = store.path(kind, "x").parent
    pattern = f"{model}-L*-a{_value_text(value)}{store.suffix}.json"
    for path in sorted(folder.glob(pattern)):
        out = store.load_json(kind, path.name[: -len(store.suffix + ".json")])
        if out is not None:
            return out
    return None


def add_arguments(parser) -> None:
    datasets.add_dataset_arguments(parser)
    parser.add_argument("--model", required=True, help="model name, e.g. topk-L200-K20")
    # read as text and checked by run_steering, so a bad one is one `error: ...` line naming it
    parser.add_argument("--latent", default=None, help="latent index (default: the identified one)")
    parser.add_argument("--value", default=DEFAULT_VALUE, help="a_phi > 0 (default 1, as in the paper)")


def main(args) -> int:
    out = run_steering(
        *datasets.dataset_arguments(args),
        model=args.model,
        latent=args.latent,
        value=args.value,
        model_workspace=args.model_workspace,
    )
    res: SteeringResult = out["_result"]
    if args.json:
        print(json.dumps(res.json_summary()))
        return 0
    s = res.summary()
    print(
        f"{s['model']}: latent {s['latent']}, a = {s['value']:g}   (delta_s = cos to {res.class_names[0]} "
        f"- cos to {res.class_names[1]})"
    )
    print(f"{'class':<14}{'n':>6}{'action':>12}{'before':>9}{'after':>9}{'flipped':>9}{'spk cos change':>16}")
    for name, c in s["classes"].items():
        spk = "-" if c["speaker_cos_change"] is None else f"{c['speaker_cos_change']:+.3f}"
        print(
            f"{name:<14}{c['n']:>6}{c['direction']:>12}{c['mean_before']:>9.3f}{c['mean_after']:>9.3f}"
            f"{100 * c['flipped_fraction']:>8.1f}%{spk:>16}"
        )
    return 0


def steering_frame(result: dict) -> pd.DataFrame:
    """Long table of the stored distributions: class, phase ('before'/'after'), delta_s."""
    rows = []
    for cls, d in result["distributions"].items():
        for phase in ("before", "after"):
            rows.append(pd.DataFrame({"class": cls, "phase": phase, "delta_s": d[phase]}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["class", "phase", "delta_s"])


def steering_chart(result: dict):
    """Figs. 5-6: histograms of delta_s per class, before and after steering."""
    import altair as alt

    df = steering_frame(result)
    return (
        alt.Chart(df)
        .mark_bar(opacity=0.6)
        .encode(
            x=alt.X(
                "delta_s:Q", bin=alt.Bin(maxbins=40), title="delta_s (cos to positive - cos to negative)"
            ),
            y=alt.Y("count():Q", stack=None, title="samples"),
            color=alt.Color("class:N"),
            row=alt.Row("phase:N", sort=["before", "after"], title=None),
        )
        .properties(
            title=f"{result['model']}: steering latent {result['latent']} (a = {result['value']:g})",
            width=420,
            height=110,
        )
    )
