"""Labelled feature datasets (paper IV-A, Tables I-II): which rows are positives and negatives
of an attribute value, split into train/test by speaker.

    ds = FeatureDataset.build(ws, "language", "es", ["en"])      # or FeatureDataset.load_or_build
    ds.train_rows, ds.test_rows      # int row indices into ws.segments / ws.embeddings
    ds.y_train, ds.y_test            # bool, True = positive

Rows come from the segments whose `split` is `feature` when that column holds such rows; speakers
that appear in the `sae` split are dropped so the analysis never sees a speaker the SAE trained on.
The split is a GroupShuffleSplit by speaker (seeded), with an optional balanced test set (the
paper's test sets hold 400 + 400 and 200 + 200 samples). It is saved under
analyses/features/ with the workspace content it was drawn from (fingerprint and segments digest,
core.analysis.store), so a rerun reuses exactly the same rows, and a changed corpus, label column
or `source` (the group of speaker-less rows) draws a new split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core import atomic
from core.constants import FEATURES_SUBDIR, SEGMENT_BASE_COLUMNS, SPLIT_FEATURE, SPLIT_SAE
from core.errors import InputError, NotFoundError
from core.workspace.workspace import Workspace

# the paper's Tables I-II hold out ~40 % (language) and ~50 % (music) of the samples as test
DEFAULT_TEST_SIZE = 0.4
DEFAULT_SEED = 0
MIN_PER_CLASS = 4  # fewer samples than this in a class cannot give both a train and a test part
_SPLIT_TRIES = 50


def class_names(positive: str, negatives: list[str]) -> tuple[str, str]:
    """Display names of the two classes: ('es', 'en'), or ('es', 'not es') for several negatives."""
    neg = negatives[0] if len(negatives) == 1 else ("|".join(negatives) if len(negatives) <= 3 else "")
    return str(positive), (neg or f"not {positive}")


def resolve_values(ws: Workspace, attribute: str, positive: str, negatives) -> list[str]:
    if attribute in SEGMENT_BASE_COLUMNS:
        raise NotFoundError(
            f"workspace {ws.name}: {attribute!r} is a segment column, not an attribute "
            f"(attributes: {', '.join(ws.attributes()) or 'none'})"
        )
    values = ws.attribute_values(attribute)  # NotFoundError names the valid attributes
    positive = str(positive)
    if positive not in values:
        raise NotFoundError(
            f"workspace {ws.name}: attribute {attribute!r} has no value {positive!r} "
            f"(values: {', '.join(values) or 'none'})"
        )
    if negatives is None or (isinstance(negatives, (list, tuple)) and len(negatives) == 0):
        # every other value that the analysed rows (the feature split, when there is one) hold
        present = set(_analysed_values(ws, attribute))
        negs = [v for v in values if v != positive and v in present]
    else:
        negs = [str(negatives)] if isinstance(negatives, str) else [str(v) for v in negatives]
        for v in negs:
            if v not in values:
                raise NotFoundError(
                    f"workspace {ws.name}: attribute {attribute!r} has no value {v!r} "
                    f"(values: {', '.join(values)})"
                )
            if v == positive:
                raise InputError(f"negative value {v!r} is also the positive value of {attribute!r}")
    if not negs:
        raise InputError(
            f"workspace {ws.name}: attribute {attribute!r} has only the value {positive!r}; "
            "nothing to contrast it with"
        )
    return sorted(set(negs))


def _text(col: pd.Series) -> pd.Series:
    """A column as pandas strings, missing values as "" (an Arrow-backed column stays one: no
    Python object per row)."""
    return col.astype("string").fillna("")


def _analysed_values(ws: Workspace, attribute: str) -> list[str]:
    seg = ws.segments
    col = _text(seg[attribute])
    if "split" in seg.columns:
        feat = (_text(seg["split"]) == SPLIT_FEATURE).to_numpy(dtype=bool)
        if feat.any():
            col = col[feat]
    return sorted(v for v in col.unique() if v != "")


def dataset_key(attribute: str, positive: str, negatives: list[str]) -> str:
    """File-name-safe key, e.g. 'language=es_vs_en'."""
    neg = "+".join(negatives)
    raw = f"{attribute}={positive}_vs_{neg}"
    safe = "".join(c if c.isalnum() or c in "=_-+." else "_" for c in raw)
    if len(safe) > 80:
        safe = safe[:60] + "-" + hashlib.sha1(raw.encode()).hexdigest()[:10]
    return safe


def split_hash(ds: FeatureDataset) -> str:
    """Hash of the dataset's train/test rows and labels."""
    h = hashlib.sha256()
    for arr in (ds.train_rows, ds.test_rows, ds.y_train, ds.y_test):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


@dataclass
class FeatureDataset:
    """A binary labelled dataset over workspace rows, split by speaker."""

    attribute: str
    positive: str
    negatives: list[str]
    train_rows: np.ndarray
    test_rows: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    seed: int = DEFAULT_SEED
    test_size: float = DEFAULT_TEST_SIZE
    balance_test: bool = True
    fingerprint: str = ""
    segments: str = ""
    """segments_digest of the workspace the split was drawn from (core.analysis.store)."""
    notes: list[str] = field(default_factory=list)

    def drawn_from(self, ws: Workspace) -> bool:
        """Whether the split was drawn from what `ws` holds now (fingerprint and segment table)."""
        from core.analysis.store import segments_digest

        return self.fingerprint == ws.fingerprint and self.segments == segments_digest(ws)

    # -- naming ------------------------------------------------------------------------
    @property
    def key(self) -> str:
        return dataset_key(self.attribute, self.positive, self.negatives)

    @property
    def class_names(self) -> tuple[str, str]:
        return class_names(self.positive, self.negatives)

    @property
    def rows(self) -> np.ndarray:
        return np.concatenate([self.train_rows, self.test_rows])

    @property
    def y(self) -> np.ndarray:
        return np.concatenate([self.y_train, self.y_test])

    def counts(self, ws: Workspace | None = None, by: str | None = None) -> pd.DataFrame:
        """Table I/II: samples per class (and per `by` subgroup, e.g. gender) in train and test."""
        pos, neg = self.class_names
        frames = []
        for part, rows, y in (
            ("train", self.train_rows, self.y_train),
            ("test", self.test_rows, self.y_test),
        ):
            f = pd.DataFrame({"part": part, "class": np.where(y, pos, neg)})
            if by is not None and ws is not None and by in ws.segments.columns:
                f["class"] = f["class"] + " " + ws.segments[by].iloc[rows].astype(str).to_numpy()
            frames.append(f)
        df = pd.concat(frames)
        table = df.groupby(["class", "part"]).size().unstack("part", fill_value=0)
        return table.reindex(columns=["train", "test"], fill_value=0)

    # -- persistence ---------------------------------------------------------------------
    def to_json(self, ws: Workspace) -> dict:
        ids = ws.segments["segment_id"]
        return {
            "attribute": self.attribute,
            "positive": self.positive,
            "negatives": self.negatives,
            "seed": self.seed,
            "test_size": self.test_size,
            "balance_test": self.balance_test,
            "fingerprint": self.fingerprint,
            "segments": self.segments,
            "notes": self.notes,
            "train_rows": self.train_rows.tolist(),
            "test_rows": self.test_rows.tolist(),
            "y_train": self.y_train.astype(int).tolist(),
            "y_test": self.y_test.astype(int).tolist(),
            "train_ids": ids.iloc[self.train_rows].astype(str).tolist(),  # only these rows' text
            "test_ids": ids.iloc[self.test_rows].astype(str).tolist(),
        }

    @staticmethod
    def path_for(ws: Workspace, attribute: str, positive: str, negatives: list[str]) -> Path:
        return ws.analyses_dir / FEATURES_SUBDIR / f"{dataset_key(attribute, positive, negatives)}.json"

    def save(self, ws: Workspace) -> Path:
        path = self.path_for(ws, self.attribute, self.positive, self.negatives)
        atomic.write_json(path, self.to_json(ws))
        return path

    @classmethod
    def from_json(cls, raw: dict) -> FeatureDataset:
        return cls(
            attribute=raw["attribute"],
            positive=raw["positive"],
            negatives=list(raw["negatives"]),
            train_rows=np.asarray(raw["train_rows"], dtype=np.int64),
            test_rows=np.asarray(raw["test_rows"], dtype=np.int64),
            y_train=np.asarray(raw["y_train"], dtype=bool),
            y_test=np.asarray(raw["y_test"], dtype=bool),
            seed=int(raw["seed"]),
            test_size=float(raw["test_size"]),
            balance_test=bool(raw["balance_test"]),
            fingerprint=raw.get("fingerprint", ""),
            segments=raw.get("segments", ""),
            notes=list(raw.get("notes", [])),
        )

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def load_or_build(
        cls, ws: Workspace, attribute: str, positive: str, negatives=None, *, save: bool = True, **settings
    ) -> FeatureDataset:
        """The saved split when it matches (same workspace content and `settings`: seed, test_size,
        balance_test as `build` takes them), else a new one, saved."""
        negs = resolve_values(ws, attribute, positive, negatives)
        want = split_settings(attribute, **settings)
        saved = _read_dataset(ws, cls.path_for(ws, attribute, str(positive), negs))
        if (
            saved is not None
            and saved.drawn_from(ws)
            and saved.seed == want["seed"]
            and abs(saved.test_size - want["test_size"]) < 1e-9
            and saved.balance_test == want["balance_test"]
        ):
            return saved
        ds = cls.build(ws, attribute, positive, negs, **want)
        if save:
            ds.save(ws)
        return ds

    @classmethod
    def build(
        cls,
        ws: Workspace,
        attribute: str,
        positive: str,
        negatives: list[str] | str | None = None,
        *,
        seed: int = DEFAULT_SEED,
        test_size: float | None = None,
        balance_test: bool = True,
    ) -> FeatureDataset:
        from sklearn.model_selection import GroupShuffleSplit

        from core.analysis.store import segments_digest

        negs = resolve_values(ws, attribute, positive, negatives)
        positive = str(positive)
        test_size = default_test_size(attribute) if test_size is None else float(test_size)
        if not 0.0 < test_size < 1.0:
            raise InputError(f"test_size must be between 0 and 1, got {test_size}")
        seg = ws.segments
        notes: list[str] = []
        # whole columns stay pandas/Arrow strings, compared and matched in vectorised hash passes;
        # only the chosen rows become Python objects (at 10M rows, object arrays of every column
        # and a set of a million speakers took 22 s; see _text)
        values = _text(seg[attribute])
        mask = np.array(values.isin([positive, *negs]), dtype=bool)  # a copy: &= writes it
        has_speaker = "speaker" in seg.columns
        if "split" in seg.columns:
            split = _text(seg["split"])
            feature = (split == SPLIT_FEATURE).to_numpy(dtype=bool)
            if feature.any():
                mask &= feature
                if has_speaker:
                    spk = _text(seg["speaker"])
                    # speakers of the candidate rows that also have rows in the SAE split
                    candidates = spk[mask].unique()
                    in_sae = ((split == SPLIT_SAE) & (spk != "")).to_numpy(dtype=bool)
                    shared = spk[in_sae & spk.isin(candidates).to_numpy(dtype=bool)].unique()
                    overlap = mask & spk.isin(shared).to_numpy(dtype=bool)
                    if overlap.any():
                        notes.append(
                            f"dropped {int(overlap.sum())} feature rows whose speaker is in the SAE split"
                        )
                        mask &= ~overlap
            else:
                notes.append(f"no rows with split == {SPLIT_FEATURE!r}: using every labelled row")
        rows = np.flatnonzero(mask)
        y = values.iloc[rows].to_numpy(dtype=object) == positive
        pos_name, neg_name = class_names(positive, negs)
        for name, n in ((pos_name, int(y.sum())), (neg_name, int((~y).sum()))):
            if n < MIN_PER_CLASS:
                raise InputError(
                    f"workspace {ws.name}: too few samples of class {name!r} for {attribute!r} "
                    f"({n}; need at least {MIN_PER_CLASS} to split into train and test)"
                )
        groups = speaker_groups(ws, rows)
        if groups is None:
            groups = rows.astype(str)
            notes.append("no speaker column: split by row")
        n_groups = len(set(groups))
        if n_groups < 2:
            raise InputError(
                f"workspace {ws.name}: all {attribute!r} samples come from one speaker; "
                "a speaker-disjoint train/test split needs at least 2"
            )
        rng_seed = seed
        chosen = None
        for attempt in range(_SPLIT_TRIES):
            gss = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=rng_seed + attempt)
            tr, te = next(gss.split(rows, y, groups))
            ok = all((y[part] == cls_val).sum() >= 2 for part in (tr, te) for cls_val in (True, False))
            if ok:
                chosen = (tr, te)
                break
        if chosen is None:
            raise InputError(
                f"workspace {ws.name}: too few speakers per class for {attribute!r}={positive!r} to "
                f"give both classes at least 2 samples in train and in test ({n_groups} speakers)"
            )
        tr, te = chosen
        if balance_test:
            rng = np.random.default_rng(seed)
            te_pos, te_neg = te[y[te]], te[~y[te]]
            n = min(len(te_pos), len(te_neg))
            if len(te_pos) != len(te_neg):
                notes.append(f"test balanced to {n} + {n} samples")
            te = np.concatenate(
                [np.sort(rng.choice(te_pos, n, replace=False)), np.sort(rng.choice(te_neg, n, replace=False))]
            )
        tr = np.sort(tr)
        return cls(
            attribute=attribute,
            positive=positive,
            negatives=negs,
            train_rows=rows[tr].astype(np.int64),
            test_rows=rows[te].astype(np.int64),
            y_train=y[tr].astype(bool),
            y_test=y[te].astype(bool),
            seed=seed,
            test_size=test_size,
            balance_test=balance_test,
            fingerprint=ws.fingerprint,
            segments=segments_digest(ws),
            notes=notes,
        )


def speaker_groups(ws: Workspace, rows: np.ndarray) -> np.ndarray | None:
    """The speaker of each of `rows` (object array), the unit the split keeps apart and the
    intervals resample (core.analysis.intervals); None when the workspace has no speaker column.
    A row without a speaker id (hold music) groups by its call, else stands alone: segments of
    one call's music are near-duplicates and must not straddle train and test."""
    seg = ws.segments
    if "speaker" not in seg.columns:
        return None
    rows = np.asarray(rows, dtype=np.int64)
    groups = _text(seg["speaker"].iloc[rows]).to_numpy(dtype=object)  # only these rows' strings
    if "source" in seg.columns:
        fallback = ("source:" + seg["source"].iloc[rows].astype(str)).to_numpy(dtype=object)
    else:
        fallback = np.char.add("row:", np.asarray(rows).astype(str)).astype(object)
    return np.where(groups == "", fallback, groups)


def split_settings(
    attribute: str, seed: int = DEFAULT_SEED, test_size: float | None = None, balance_test: bool = True
) -> dict:
    """How a dataset is split, defaults filled in: seed, test_size, balance_test."""
    test_size = default_test_size(attribute) if test_size is None else float(test_size)
    return {"seed": int(seed), "test_size": test_size, "balance_test": bool(balance_test)}


def default_test_size(attribute: str) -> float:
    """Table I holds out ~40 % of the language samples, Table II ~50 % of the music ones."""
    return 0.5 if attribute == "class" else DEFAULT_TEST_SIZE


def load_feature_dataset(
    ws: Workspace, attribute: str, positive: str, negatives=None
) -> FeatureDataset | None:
    """The saved dataset, or None when none was saved (the dashboard calls this)."""
    negs = resolve_values(ws, attribute, positive, negatives)
    saved = _read_dataset(ws, FeatureDataset.path_for(ws, attribute, str(positive), negs))
    return saved if saved is not None and saved.drawn_from(ws) else None


def _read_dataset(ws: Workspace, path: Path) -> FeatureDataset | None:
    """The dataset saved at `path`; None when missing or corrupt (said, then rebuilt)."""
    from core.analysis.store import ResultStore, warn_corrupt

    raw = ResultStore(ws).read_json(path)
    if raw is None:
        return None
    try:
        ds = FeatureDataset.from_json(raw)
        for rows, y in ((ds.train_rows, ds.y_train), (ds.test_rows, ds.y_test)):
            if (
                rows.ndim != 1
                or len(rows) != len(y)
                or (rows.size and not 0 <= rows.min() <= rows.max() < len(ws))
            ):
                raise ValueError(f"rows outside 0..{len(ws) - 1} or not one label per row")
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        warn_corrupt(path, f"not a feature dataset: {exc}")
        return None
    return ds


# -- command-line arguments shared by the analysis commands (identify, steer) -------------------
def add_dataset_arguments(parser) -> None:
    """--workspace, --attribute, --positive, --negative, --model-workspace, --json."""
    parser.add_argument("--workspace", required=True, help="workspace name or path")
    parser.add_argument("--attribute", required=True, help="metadata column, e.g. language")
    parser.add_argument("--positive", required=True, help="the value to detect, e.g. es")
    parser.add_argument(
        "--negative", action="append", default=None, help="negative value(s) (default: all other values)"
    )
    parser.add_argument("--model-workspace", default=None, help="use the SAEs trained on this workspace")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def dataset_arguments(args) -> tuple[Workspace, str, str, list[str] | None]:
    """(workspace, attribute, positive, negatives) named by add_dataset_arguments' options."""
    return Workspace.open(args.workspace), args.attribute, args.positive, args.negative
