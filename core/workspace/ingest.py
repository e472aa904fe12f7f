"""`python -m core ingest AUDIO_DIR --workspace NAME`: a folder of audio -> a workspace.

Walk the folder for audio (wav, flac, mp3, ogg, ...), read each file as 16 kHz mono, cut its
non-silent audio into 4-8 s segments, embed them (and, in the same pass, their sub-segment
windows: core.embedders.embed_segments_with_windows, WINDOWS), measure each segment's continuous
attributes (core.audio.attributes: F0, loudness, speaking rate, SNR, voicing, on the audio as
embedded), attach metadata CSV columns, and write the workspace atomically (Workspace.create), so
a failed run leaves any existing workspace intact. The measured columns are the tool's: a
metadata CSV with a column of one of their names (core.constants.MEASURED_ATTRIBUTES) is refused;
metadata columns whose every value is a number are stored as numbers (metadata.numeric_columns).

Only files under AUDIO_DIR are read (paths resolved, symlinks included): a metadata row naming a
file outside it (`../x.wav`, an absolute path elsewhere, a link that leads out) is an InputError
naming the row; a link the folder walk finds that leads out is skipped, never opened. The
workspace folder is checked before any work (workspace.check_target: a user's own folder is
refused) and must be writable before anything is decoded.

Unreadable, corrupt, silent or vanished files, symlink loops and files whose name is not valid
UTF-8 (shown with \\xNN escapes) are skipped and listed in the summary (and in
provenance['skipped']); one bad file never stops the rest of the folder. A metadata `file` that
is not found, but differs from a file in its folder only in letter case or Unicode normalisation,
is named in the error. Per-file results (segments, segment and window embeddings, measured
attributes) are cached under ws.cache_dir/ingest keyed by (file content, embedder, checkpoint
content, segmentation settings, telephony, window settings, attributes version): re-running on
the same folder recomputes nothing, a changed file re-embeds only that file, a changed
measurement re-measures (and re-embeds) every file, and a run killed midway resumes from what it
had cached. Ingests into one workspace may run at once: each holds a shared
lock on the cache folder, and only one that finds itself alone removes stale entries and the
temporary files of killed runs.

`--ray [ADDRESS]` sends the files without a cache entry to Ray (core.workspace.ray_ingest: the
same _segment_file and embedder, on a local Ray or the cluster at ADDRESS); their entries are
written here as they complete, and the workspace is built from them as above, identical.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import os
import sys
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core import atomic
from core.audio.attributes import ATTRIBUTES_VERSION, measure_segments
from core.audio.read import AUDIO_EXTENSIONS, cut, load_audio
from core.audio.segmentation import METHODS, SegmentationConfig, segment_audio
from core.constants import (
    CACHE_DIR,
    DEFAULT_EMBEDDER,
    MEASURED_ATTRIBUTES,
    SAMPLE_RATE,
    SEGMENT_BASE_COLUMNS,
)
from core.embedders.base import WindowConfig
from core.errors import InputError
from core.filehash import file_sha256
from core.workspace.metadata import csv_line, numeric_columns, read_metadata_csv
from core.workspace.workspace import Windows, Workspace, announce_replacement, check_target

INGEST_CACHE = "ingest"  # sub-folder of the workspace cache
CACHE_VERSION = 2  # 2: entries hold the window embeddings too
WINDOWS = WindowConfig()
"""The sliding window of the embedders without windows of their own (recorded in provenance)."""
GROUP_SEGMENTS = 256  # segments embedded together before their files' results are cached


# -- arguments ----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.embedders import EMBEDDERS

    parser.add_argument("audio_dir", metavar="AUDIO_DIR", help="folder of audio files (searched recursively)")
    parser.add_argument("--workspace", required=True, help="workspace name (data/NAME) or path")
    parser.add_argument(
        "--metadata",
        metavar="CSV",
        help="CSV with a `file` column (path relative to AUDIO_DIR); every other column becomes a segment attribute",
    )
    parser.add_argument(
        "--telephony",
        action="store_true",
        help="pass audio through a telephone channel (300-3400 Hz, 8 kHz, mu-law) before embedding",
    )
    parser.add_argument(
        "--embedder", default=DEFAULT_EMBEDDER, choices=sorted(EMBEDDERS), help="speaker embedder"
    )
    parser.add_argument("--checkpoint", metavar="PATH", help="local model file (a .nemo for titanet)")
    parser.add_argument("--min-s", type=float, default=SegmentationConfig.min_s, help="shortest segment (s)")
    parser.add_argument("--max-s", type=float, default=SegmentationConfig.max_s, help="longest segment (s)")
    parser.add_argument("--vad", default="energy", choices=METHODS, help="non-silence detector")
    parser.add_argument("--jobs", type=int, default=2, help="embedding worker processes (CPU)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="decode, segment and embed on Ray: alone, a Ray of this machine; with HOST:PORT, that cluster "
        "(the audio folder must be readable at the same path on every node; --jobs = embedding actors)",
    )


def main(args: argparse.Namespace) -> int:
    cfg = SegmentationConfig(
        min_s=args.min_s,
        max_s=args.max_s,
        short_min_s=min(SegmentationConfig.short_min_s, args.min_s),
        method=args.vad,
    )
    result = ingest(
        args.audio_dir,
        args.workspace,
        metadata=args.metadata,
        telephony=args.telephony,
        embedder=args.embedder,
        checkpoint=args.checkpoint,
        segmentation=cfg,
        jobs=args.jobs,
        device=args.device,
        ray=args.ray,
    )
    print(result.describe())
    return 0


# -- files and metadata -------------------------------------------------------------------------
def find_audio_files(root: Path) -> list[str]:
    """Relative POSIX paths of the audio files under root (by name ending), sorted; hidden files
    and folders skipped. Linked folders are not entered: one that leads inside root is walked
    where it really is; one that leads outside is listed, like links and other non-regular files,
    for the ingest loop to skip with the reason (outside_reason)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        base = Path(dirpath)
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                out.append((base / name).relative_to(root).as_posix())
        for name in dirnames:
            link = base / name
            if link.is_symlink() and not link.resolve().is_relative_to(root):
                out.append(link.relative_to(root).as_posix())
    return sorted(out)


NOT_UTF8 = "its name is not valid UTF-8: rename it (e.g. convmv -f latin1 -t utf8) to ingest it"
"""Why a file whose name is not UTF-8 is skipped: the segment table, workspace.json and the
terminal hold text, and such a name cannot be written as text."""


def shown_name(rel: str) -> str:
    """`rel` as text that can be printed and stored: bytes that are not UTF-8 as \\xNN."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


def _resolve(path: Path) -> Path | None:
    """path.resolve(), or None for a symlink loop (RuntimeError in Python 3.11, ELOOP later)."""
    try:
        return path.resolve()
    except RuntimeError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise


def outside_reason(root: Path, rel: str) -> str | None:
    """Why root/rel must not be read (None when it may): a name that is not UTF-8, a symlink
    loop, a link leading outside root, a broken link, or something that is not a regular file.
    `root` is resolved."""
    if shown_name(rel) != rel:
        return NOT_UTF8
    path = root / rel
    target = _resolve(path)
    if target is None:
        return "a symlink loop: not read"
    if not target.is_relative_to(root):
        return f"a link to {target}, outside the audio folder {root}: not read"
    if not path.exists():
        return f"a broken link (to {target})" if path.is_symlink() else "gone since the folder was listed"
    if path.is_dir():
        return "a folder, not an audio file"
    if not path.is_file():
        return "not a regular file (a pipe, socket or device): not read"
    return None


def _near_miss(path: Path) -> str:
    """For a file that is not there: ' (the folder holds 'X': ...)' when its folder holds a name
    that differs from it only in letter case or Unicode normalisation (what a CSV made on macOS
    or Windows, whose file systems take either, may name), else ''."""
    nfc = functools.partial(unicodedata.normalize, "NFC")
    try:
        names = sorted(os.listdir(path.parent))
    except OSError:
        return ""
    for name in names:
        if name != path.name and nfc(name).casefold() == nfc(path.name).casefold():
            how = "Unicode normalisation" if nfc(name) == nfc(path.name) else "letter case"
            return f" (the folder holds {name!r}: the names differ only in {how})"
    return ""


def _normalise_rel(text: str) -> str:
    return Path(text.strip().replace("\\", "/")).as_posix().removeprefix("./")


def _metadata_rel(root: Path, raw: str, where: str) -> str:
    """A `file` value as a path relative to root; InputError when it names anything outside root
    (`..`, an absolute path elsewhere, a link leading out) or no audio file."""
    lexical = Path(os.path.normpath(root / _normalise_rel(raw)))  # an absolute value replaces root
    target = _resolve(lexical)
    if target is None:
        raise InputError(f"{where}: file {raw!r} is a symlink loop, not an audio file")
    if not target.is_relative_to(root):
        via = f" (a link to {target})" if lexical.is_relative_to(root) else ""
        raise InputError(
            f"{where}: file {raw!r}{via} is outside the audio folder {root}; only files under it are read"
        )
    rel = (lexical if lexical.is_relative_to(root) else target).relative_to(root).as_posix()
    if target.is_dir():
        raise InputError(f"{where}: file {raw!r} is a folder, not an audio file")
    if not target.is_file():
        raise InputError(f"{where}: file {raw!r} not found under {root}{_near_miss(target)}")
    return rel


def read_metadata(csv_path: str | Path, audio_root: Path) -> pd.DataFrame:
    """The metadata CSV as a string table indexed by normalised `file`; one InputError per problem.
    `audio_root` is resolved; every `file` must lie under it (_metadata_rel)."""
    csv_path = Path(csv_path)
    frame = read_metadata_csv(csv_path)
    if "file" not in frame.columns:
        raise InputError(
            f"{csv_path}: metadata CSV has no `file` column (columns: {', '.join(frame.columns) or 'none'})"
        )
    reserved = [c for c in frame.columns if c in SEGMENT_BASE_COLUMNS]
    if reserved:
        raise InputError(f"{csv_path}: column(s) {', '.join(reserved)} are reserved for the segment table")
    measured = [c for c in frame.columns if c in MEASURED_ATTRIBUTES]
    if measured:
        raise InputError(
            f"{csv_path}: column(s) {', '.join(measured)} are measured from the audio by ingest; "
            "rename them in the CSV to keep your values beside the measured ones"
        )
    seen: dict[str, int] = {}
    files = []
    for i, raw in enumerate(frame["file"].tolist()):
        row = csv_line(frame, i)
        where = f"{csv_path} row {row}"
        if not raw.strip():
            raise InputError(f"{where}: empty `file` value")
        rel = _metadata_rel(audio_root, raw, where)
        if rel in seen:
            raise InputError(f"{where}: duplicate file {raw!r} (also on row {seen[rel]})")
        seen[rel] = row
        files.append(rel)
    frame["file"] = files
    return frame.set_index("file")


def _check_writable(folder: Path) -> None:
    """Fail before any decoding or embedding when the workspace cannot be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise atomic.write_failure(folder, exc) from None


# -- cache ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def _cache_in_use(cache_dir: Path) -> Iterator[Callable[[], bool]]:
    """Hold a shared flock on the ingest cache folder for the run; yields `alone()`, True when no
    other ingest holds one (on a file system without flock: always True, as if alone)."""
    try:
        fd = os.open(cache_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise atomic.write_failure(cache_dir, exc) from None
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_SH)

        def alone() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                return exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN)
            return True

        yield alone
    finally:
        os.close(fd)  # releases the lock


@functools.lru_cache(maxsize=8)
def _checkpoint_hash(path: str | None) -> str | None:
    if not path:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"{p}: checkpoint not found")
    return file_sha256(p)


def cache_key(
    content_hash: str,
    embedder: str,
    ckpt_hash: str | None,
    cfg: SegmentationConfig,
    telephony: bool,
    windows: dict | None = None,
) -> str:
    payload = {
        "v": CACHE_VERSION,
        "windows": windows,
        "file": content_hash,
        "embedder": embedder,
        "checkpoint": ckpt_hash,
        "segmentation": cfg.to_dict(),
        "telephony": telephony,
        "sr": SAMPLE_RATE,
        "attributes": ATTRIBUTES_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class FileResult:
    rel: str
    starts: np.ndarray
    ends: np.ndarray
    embeddings: np.ndarray  # float32 [n, dim] (n may be 0 when skipped)
    attributes: np.ndarray  # float64 [n, len(MEASURED_ATTRIBUTES)], NaN where undefined
    skipped: str = ""  # reason, empty when used
    windows: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # float32 [w, dim]
    window_segment: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # int64 [w]: 0 .. n-1

    @classmethod
    def skip(cls, rel: str, reason: str) -> FileResult:
        empty = np.zeros(0, dtype=np.float64)
        return cls(rel, empty, empty, np.zeros((0, 0), np.float32), _no_attributes(), reason)


def _no_attributes() -> np.ndarray:
    return np.zeros((0, len(MEASURED_ATTRIBUTES)), np.float64)


def _save_cache(path: Path, res: FileResult) -> None:
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            starts=res.starts,
            ends=res.ends,
            embeddings=res.embeddings,
            attributes=res.attributes,
            skipped=np.array(res.skipped),
            windows=res.windows,
            window_segment=res.window_segment,
        )


def _load_cache(path: Path, rel: str) -> FileResult | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            res = FileResult(
                rel,
                z["starts"],
                z["ends"],
                z["embeddings"].astype(np.float32),
                z["attributes"].astype(np.float64),
                str(z["skipped"]),
                z["windows"].astype(np.float32),
                z["window_segment"].astype(np.int64),
            )
    except Exception:  # a damaged cache entry (or one without attributes) is recomputed, never trusted
        return None
    if res.attributes.shape != (len(res.starts), len(MEASURED_ATTRIBUTES)):
        return None  # measured with other columns: recomputed
    return res


# -- the run -------------------------------------------------------------------------------------
@dataclass
class IngestResult:
    workspace: Workspace
    files: int
    segments: int
    seconds: float
    computed: int
    cached: int
    skipped: list[dict] = field(default_factory=list)

    def describe(self) -> str:
        lines = [
            f"ingest: {self.files} audio file(s) -> {self.segments} segment(s), "
            f"{self.seconds / 3600:.2f} h, workspace {self.workspace.root}",
            f"  embedder {self.workspace.embedder} ({self.workspace.dim}-d); "
            f"{self.computed} file(s) processed, {self.cached} from cache",
        ]
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} file(s):")
            lines += [f"    {s['file']}: {s['reason']}" for s in self.skipped]
        return "\n".join(lines)


def _segment_file(
    path: Path, rel: str, cfg: SegmentationConfig, telephony: bool
) -> tuple[FileResult, list[np.ndarray]]:
    """Decode + segment one file; returns its result (embeddings unfilled) and segment audio."""
    try:
        audio = load_audio(path)
    except InputError as exc:
        return FileResult.skip(rel, str(exc).removeprefix(f"{path}: ")), []
    except OSError as exc:  # vanished or unreadable between the walk and the read
        return FileResult.skip(rel, f"could not be read ({exc.strerror or exc})"), []
    except MemoryError:
        return FileResult.skip(rel, "too large to decode in the memory available"), []
    regions = segment_audio(audio, SAMPLE_RATE, cfg)
    if not regions:
        reason = (
            f"no non-silent stretch of at least {cfg.min_s:g} s "
            f"(or a short file of at least {cfg.short_min_s:g} s of sound)"
        )
        return FileResult.skip(rel, reason), []
    if telephony:
        from core.audio.channel import telephone_channel

        audio = telephone_channel(audio, SAMPLE_RATE)
    pieces = [cut(audio, SAMPLE_RATE, r.start_s, r.end_s) for r in regions]
    starts = np.array([r.start_s for r in regions], dtype=np.float64)
    ends = np.array([r.end_s for r in regions], dtype=np.float64)
    attributes = measure_segments(pieces, SAMPLE_RATE).to_numpy()  # what is embedded is measured
    return FileResult(rel, starts, ends, np.zeros((0, 0), np.float32), attributes), pieces


def ingest(
    audio_dir: str | Path,
    workspace: str | Path,
    *,
    metadata: str | Path | None = None,
    telephony: bool = False,
    embedder: str = DEFAULT_EMBEDDER,
    checkpoint: str | None = None,
    segmentation: SegmentationConfig | None = None,
    jobs: int = 2,
    device: str | None = None,
    progress: bool = True,
    ray: str | None = None,
) -> IngestResult:
    """Segment + embed every audio file under audio_dir into workspace (see module docstring).
    `ray`: None for this process's own workers; 'local' or a cluster ADDRESS for Ray
    (core.workspace.ray_ingest: same results, same cache)."""
    from tqdm import tqdm

    from core.embedders import EMBEDDERS, check_jobs, embed_segments_with_windows, get_embedder

    cfg = segmentation or SegmentationConfig()
    root = Path(audio_dir).expanduser().resolve()
    if not root.is_dir():
        raise InputError(f"{audio_dir}: audio folder not found")
    if embedder not in EMBEDDERS:
        raise InputError(f"unknown embedder {embedder!r} (available: {', '.join(EMBEDDERS)})")
    check_jobs(jobs, "ingest")
    if checkpoint:
        checkpoint = str(Path(checkpoint).expanduser().resolve())
    ws_root = check_target(workspace)
    meta = read_metadata(metadata, root) if metadata else None
    files = find_audio_files(root)
    if meta is not None:  # a row may name a file with an unusual extension: take it too
        files = sorted(set(files) | set(meta.index))
    if not files:
        raise InputError(f"{root}: no audio files found (looked for {', '.join(AUDIO_EXTENSIONS)})")
    if ray is not None:
        from core.workspace import ray_ingest

        ray_ingest.check_address(ray)  # nothing listening: refused before anything is written
    ray_todo: list[tuple[Path, str, Path]] = []
    cache_dir = ws_root / CACHE_DIR / INGEST_CACHE
    _check_writable(cache_dir)
    # load the embedder up front so a bad checkpoint fails before any work is done
    model = get_embedder(embedder, checkpoint=checkpoint, device=device)
    ckpt_hash = _checkpoint_hash(checkpoint)
    window_settings = model.window_settings(WINDOWS)
    announce_replacement(ws_root, "ingest")
    with _cache_in_use(cache_dir) as alone:
        results: dict[str, FileResult] = {}
        pending: list[tuple[Path, FileResult, list[np.ndarray]]] = []
        n_cached = 0

        def flush() -> None:
            if not pending:
                return
            audios = [a for _, _, pieces in pending for a in pieces]
            emb = embed_segments_with_windows(
                embedder,
                audios,
                WINDOWS,
                jobs=jobs,
                progress=progress,
                checkpoint=checkpoint,
                device=device,
                desc="embedding",
            )
            pos = 0
            for cache_path, res, pieces in pending:
                res.embeddings = emb.segments[pos : pos + len(pieces)]
                mine = (emb.window_segment >= pos) & (emb.window_segment < pos + len(pieces))
                res.windows, res.window_segment = emb.windows[mine], emb.window_segment[mine] - pos
                pos += len(pieces)
                _save_cache(cache_path, res)
            pending.clear()

        used_keys: set[str] = set()
        bar = tqdm(files, desc="ingest", unit="file", disable=not progress, file=sys.stderr)
        for rel in bar:
            path = root / rel
            reason = outside_reason(root, rel)
            if reason:
                results[rel] = FileResult.skip(rel, reason)
                continue
            try:
                key = cache_key(file_sha256(path), embedder, ckpt_hash, cfg, telephony, window_settings)
            except OSError as exc:  # vanished or unreadable since the walk
                results[rel] = FileResult.skip(rel, f"could not be read ({exc.strerror or exc})")
                continue
            used_keys.add(key)
            cache_path = cache_dir / f"{key}.npz"
            hit = _load_cache(cache_path, rel) if cache_path.is_file() else None
            if hit is not None:
                results[rel] = hit
                n_cached += 1
                continue
            if ray is not None:  # decoded, segmented and embedded on Ray after the walk
                ray_todo.append((path, rel, cache_path))
                continue
            res, pieces = _segment_file(path, rel, cfg, telephony)
            results[rel] = res
            if res.skipped:
                _save_cache(cache_path, replace(res, embeddings=np.zeros((0, model.dim), np.float32)))
                continue
            pending.append((cache_path, res, pieces))
            if sum(len(p) for _, _, p in pending) >= GROUP_SEGMENTS:
                flush()
        flush()
        bar.close()
        if ray_todo:
            results.update(
                ray_ingest.run_files(
                    ray_todo,
                    address=ray,
                    embedder=embedder,
                    checkpoint=checkpoint,
                    device=device,
                    cfg=cfg,
                    telephony=telephony,
                    windows=WINDOWS,
                    dim=model.dim,
                    jobs=jobs,
                    progress=progress,
                )
            )

        skipped = [
            {"file": shown_name(rel), "reason": results[rel].skipped} for rel in files if results[rel].skipped
        ]
        used = [rel for rel in files if not results[rel].skipped]
        if not used:
            listing = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped)
            raise InputError(f"{root}: no usable audio (every file was skipped: {listing})")

        segments, embeddings, windows = _build_table(root, used, results, meta)
        provenance = {
            "command": "ingest",
            "audio_root": str(root),
            "segmentation": cfg.to_dict(),
            "embedder": embedder,
            "checkpoint": checkpoint,
            "checkpoint_sha256": ckpt_hash,
            "telephony": telephony,
            "windows": window_settings,
            "metadata": str(Path(metadata).expanduser().resolve()) if metadata else None,
            "files": len(files),
            "skipped": skipped,
        }
        ws = Workspace.create(
            ws_root,
            segments,
            embeddings,
            embedder=embedder,
            sample_rate=SAMPLE_RATE,
            provenance=provenance,
            windows=windows,
        )
        # the cache holds what the workspace was last built from: entries of deleted or changed files,
        # or of other settings, would otherwise pile up with every re-ingest; only an ingest that is
        # alone may clear them (another one's entries and temporary files are in use)
        if alone():
            for stale in cache_dir.glob("*.npz"):
                if stale.stem not in used_keys:
                    stale.unlink(missing_ok=True)
            for partial in cache_dir.glob(".*.tmp"):  # a cache write a killed run never finished
                partial.unlink(missing_ok=True)
    return IngestResult(
        workspace=ws,
        files=len(files),
        segments=len(segments),
        seconds=float(segments["duration_s"].sum()),
        computed=len(files) - n_cached,
        cached=n_cached,
        skipped=skipped,
    )


def _segment_stems(used: list[str]) -> dict[str, str]:
    """rel path -> id stem (path without extension; with it where two files would collide)."""
    stems = {rel: rel.rsplit(".", 1)[0] if "." in Path(rel).name else rel for rel in used}
    counts = pd.Series(list(stems.values())).value_counts()
    return {rel: (rel if counts[stem] > 1 else stem) for rel, stem in stems.items()}


def _build_table(
    root: Path, used: list[str], results: dict[str, FileResult], meta: pd.DataFrame | None
) -> tuple[pd.DataFrame, np.ndarray, Windows]:
    stems = _segment_stems(used)
    rows: list[dict] = []
    embs = []
    windows, window_rows = [], []
    meta_cols = list(meta.columns) if meta is not None else []
    for rel in used:
        res = results[rel]
        attrs = (
            {c: (meta.at[rel, c] if rel in meta.index else "") for c in meta_cols} if meta is not None else {}
        )
        for i, (start, end) in enumerate(zip(res.starts.tolist(), res.ends.tolist(), strict=True)):
            rows.append(
                {
                    "segment_id": f"{stems[rel]}#{i:04d}",
                    "source": rel,
                    "start_s": round(start, 4),
                    "end_s": round(end, 4),
                    "duration_s": round(end - start, 4),
                    **attrs,
                }
            )
        window_rows.append(res.window_segment + (len(rows) - len(res.starts)))  # its rows in the table
        windows.append(res.windows)
        embs.append(res.embeddings)
    frame = numeric_columns(
        pd.DataFrame(rows, columns=[*SEGMENT_BASE_COLUMNS, *meta_cols]), SEGMENT_BASE_COLUMNS
    )
    measured = np.concatenate([results[rel].attributes for rel in used])
    frame[list(MEASURED_ATTRIBUTES)] = measured
    joined = Windows(np.concatenate(windows).astype(np.float32), np.concatenate(window_rows).astype(np.int64))
    return frame, np.concatenate(embs).astype(np.float32), joined
