"""An approximate index of a workspace's embeddings for the nearest catalogue segments by cosine.

    from core.dashboard import nearest_index
    nearest_index.ensure_index(ws)              # build (dashboard-cache does), only when missing
    nearest_index.nearest_rows(ws, q, 10)       # (rows, cosines), best first; brute force below
                                                # IndexSettings.min_rows or without a usable index
    nearest_index.nearest_rows(ws, q, 10, exclude_row=17)   # row 17 never among them

What: faiss IVF over the L2-normalised embeddings with 8-bit scalar-quantised codes
(`IVF<lists>,SQ8`, inner product): a vector costs `dim` bytes, so 10M x 192 is a 1.9 GB file,
read memory-mapped (faiss.IO_FLAG_MMAP): its inverted lists stay file-backed, so a server holds
only the pages its queries touched, not the whole index on its heap. A
query scans `nprobe` lists for `candidates x k` codes, then re-ranks those candidates by their
exact cosine read from embeddings.npy: the cosines returned are the brute-force ones of the rows
found, and the quantisation only decides which rows are candidates. Why faiss IVF rather than an
HNSW graph (usearch): README, "Nearest segments".

Where: cache/nn-<fingerprint>-<settings key>.faiss with a .json beside it (the SHA-256 of the
index bytes, its rows, dim, fingerprint and settings), both written atomically, the index first:
an index is used only when the JSON names its exact bytes and this workspace's content, so a
crash between the two writes, a truncated or edited file, or a corpus re-imported under the same
name never answers a query. Such a file is said once (a logged warning), the query is answered
by brute force, and `dashboard-cache` rebuilds it. Files of an older fingerprint or other
settings are removed when a new index is stored. The index's SHA-256 (1.8 s at 10M x 192) is
computed once and remembered in the cache's core.filehash memo while the file keeps its inode,
size, mtime and ctime, so a server start does not hash it again; an index replaced under its
path between that check and faiss's read is not used either.

Small workspaces (fewer than IndexSettings.min_rows rows) keep the exact brute-force scan: it is
fast there, and exact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from core import atomic, filehash
from core.filehash import file_sha256

log = logging.getLogger(__name__)

MIN_INDEX_ROWS = 100_000
"""Below this many rows nearest segments are found by brute force (about 0.2 s from disk there)."""
BRUTE_CHUNK_ROWS = 131_072
"""Rows the brute-force scan reads at a time (float32: 100 MB at 192-d)."""
_LOADED = "_voxsae_nearest_index"
_NORMS = "_voxsae_row_norms"
_WARNED = "_voxsae_nearest_warned"


@dataclass(frozen=True)
class IndexSettings:
    """How the index is built and queried; the build fields key its file."""

    min_rows: int = MIN_INDEX_ROWS
    """A workspace with fewer rows is not indexed: brute force answers (exact). 0 forces an index."""
    lists: int | None = None
    """IVF lists (k-means cells); None: the power of two nearest sqrt(rows), 16 to 65,536."""
    train_rows: int = 64
    """k-means is trained on this many rows per list (seeded subsample), as faiss advises."""
    seed: int = 0
    """Seed of the k-means training subsample."""
    nprobe: int = 16
    """Lists scanned per query (query time only: not part of the file key)."""
    candidates: int = 4
    """Candidates fetched per wanted neighbour, re-ranked by exact cosine (query time only)."""

    def n_lists(self, rows: int) -> int:
        if self.lists is not None:
            return max(1, min(int(self.lists), rows))
        return int(min(65_536, max(16, 2 ** round(np.log2(max(rows, 1)) / 2))))

    def build_key(self, rows: int) -> str:
        """What the stored index is a function of besides the embeddings (8 hex digits)."""
        build = {"spec": f"IVF{self.n_lists(rows)},SQ8", "train_rows": self.train_rows, "seed": self.seed}
        return hashlib.sha256(json.dumps(build, sort_keys=True).encode()).hexdigest()[:8]


DEFAULT_SETTINGS = IndexSettings()
"""What dashboard-cache builds and the pages query."""


class IndexBuild(NamedTuple):
    path: Path
    """The stored index file."""
    rows: int
    """Rows indexed (the workspace's)."""
    lists: int
    """IVF lists."""
    built: bool
    """False when a fresh index was already stored (nothing done)."""


def index_path(ws, settings: IndexSettings | None = None) -> Path:
    settings = settings or DEFAULT_SETTINGS
    return ws.cache_dir / f"nn-{ws.fingerprint}-{settings.build_key(len(ws))}.faiss"


def meta_path(path: Path) -> Path:
    return path.with_suffix(".json")


def uses_index(ws, settings: IndexSettings | None = None) -> bool:
    """Whether nearest segments of `ws` come from the index (else brute force)."""
    settings = settings or DEFAULT_SETTINGS
    return len(ws) >= max(settings.min_rows, 1)


# -- brute force (exact) ------------------------------------------------------------------------
def embedding_chunks(ws, chunk_rows: int = BRUTE_CHUNK_ROWS):
    """(start, float32 [n, dim]) chunks of embeddings.npy read with plain file reads, not the
    memory map: a full scan then does not leave 1 GB of mapped pages resident in the server."""
    from core.constants import EMBEDDINGS_NPY

    path = ws.root / EMBEDDINGS_NPY
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        shape, fortran, dtype = readers[version](fh) if version in readers else ((), True, None)
        if fortran or len(shape) != 2 or dtype != np.float32:
            x = np.asarray(ws.embeddings, dtype=np.float32)  # unusual layout: fall back to the map
            for a in range(0, x.shape[0], chunk_rows):
                yield a, np.asarray(x[a : a + chunk_rows])
            return
        n, dim = shape
        for a in range(0, n, chunk_rows):
            m = min(chunk_rows, n - a)
            yield a, np.fromfile(fh, dtype=np.float32, count=m * dim).reshape(m, dim)


def row_norms(ws) -> np.ndarray:
    """float32 [N]: every row's L2 norm, computed once per opened workspace."""
    cached = ws.__dict__.get(_NORMS)
    if cached is None:
        cached = np.empty(len(ws), dtype=np.float32)
        for a, x in embedding_chunks(ws):
            cached[a : a + len(x)] = np.linalg.norm(x, axis=1)
        ws.__dict__[_NORMS] = cached
    return cached


def brute_force_rows(ws, q: np.ndarray, k: int, exclude_row: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Exact (rows, cosines) of the k rows nearest to unit-norm `q`, best first."""
    norms = row_norms(ws)
    cos = np.empty(len(ws), dtype=np.float32)
    for a, x in embedding_chunks(ws):
        cos[a : a + len(x)] = x @ q
    cos /= np.maximum(norms, 1e-12)
    if exclude_row is not None:
        cos[int(exclude_row)] = -np.inf
    return _top(np.arange(len(ws)), cos, k)


def _top(rows: np.ndarray, cos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of (rows, cos) by cosine, best first (ties: lower row first); -inf never kept."""
    keep = np.isfinite(cos)
    rows, cos = rows[keep], cos[keep]
    k = min(k, len(cos))
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, float)
    part = np.argpartition(-cos, k - 1)[:k] if k < len(cos) else np.arange(len(cos))
    part = part[np.lexsort((rows[part], -cos[part]))]
    return rows[part].astype(np.int64), cos[part].astype(float)


# -- the index ----------------------------------------------------------------------------------
def _unit_chunks(ws):
    for a, x in embedding_chunks(ws):
        yield a, x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def build_index(ws, settings: IndexSettings | None = None) -> IndexBuild:
    """Train and fill the index over every row of `ws`, store it (atomically, the JSON last) and
    remove the workspace's other nearest-segment index files."""
    settings = settings or DEFAULT_SETTINGS
    import faiss

    n, dim = len(ws), ws.dim
    lists = settings.n_lists(n)
    rng = np.random.default_rng(settings.seed)
    train = np.sort(rng.choice(n, size=min(n, settings.train_rows * lists), replace=False))
    # the sampled rows picked from plain-read chunks: fancy indexing the memory map would fault
    # in nearly every page of a 7.7 GB embeddings.npy and leave them in this process's RSS
    sample = np.empty((len(train), dim), dtype=np.float32)
    for a, x in embedding_chunks(ws):
        lo, hi = np.searchsorted(train, [a, a + len(x)])
        sample[lo:hi] = x[train[lo:hi] - a]
    sample /= np.maximum(np.linalg.norm(sample, axis=1, keepdims=True), 1e-12)
    index = faiss.index_factory(dim, f"IVF{lists},SQ8", faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = settings.seed  # k-means' own initialisation
    index.train(sample)
    for _, x in _unit_chunks(ws):
        index.add(x)
    path = index_path(ws, settings)
    # written by faiss straight to the file (a serialised copy in memory would double 1.9 GB at
    # 10M x 192), then hashed from disk
    with atomic.atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))
        digest = file_sha256(tmp)
    del index
    meta = _meta(ws, settings, digest, lists)
    atomic.write_json(meta_path(path), meta)
    _remove_others(ws, path)
    ws.__dict__.pop(_LOADED, None)  # the pages read it back memory-mapped (load_index)
    return IndexBuild(path=path, rows=n, lists=lists, built=True)


def _meta(ws, settings: IndexSettings, sha256: str, lists: int) -> dict:
    return {
        "sha256": sha256,
        "rows": len(ws),
        "dim": ws.dim,
        "fingerprint": ws.fingerprint,
        "lists": lists,
        "settings": asdict(settings),
    }


def _remove_others(ws, keep: Path) -> None:
    for p in ws.cache_dir.glob("nn-*"):
        if (p.is_file() or p.is_symlink()) and p not in (keep, meta_path(keep)):
            p.unlink(missing_ok=True)


def ensure_index(ws, settings: IndexSettings | None = None) -> IndexBuild | None:
    """The stored index of `ws`, built when missing, stale or corrupt; None for a workspace small
    enough for brute force (fewer than settings.min_rows rows)."""
    settings = settings or DEFAULT_SETTINGS
    if not uses_index(ws, settings):
        return None
    if load_index(ws, settings) is not None:
        return IndexBuild(index_path(ws, settings), len(ws), settings.n_lists(len(ws)), built=False)
    return build_index(ws, settings)


def load_index(ws, settings: IndexSettings | None = None):
    """The stored faiss index of `ws` (cached on the opened workspace), or None when it is missing,
    stale (other rows, dim or fingerprint) or corrupt (bytes not those the JSON names, or not an
    index faiss reads): a present but unusable file is said once, as a logged warning."""
    settings = settings or DEFAULT_SETTINGS
    path = index_path(ws, settings)
    cached = ws.__dict__.get(_LOADED)
    if cached is not None and cached[0] == path:
        return cached[1]
    if not path.is_file():
        return None
    why = None
    links = [p.name for p in (path, meta_path(path)) if p.is_symlink()]
    if links:  # never read (nor mapped) from outside the workspace: a linked file can change under it
        why = f"{' and '.join(links)} is a link, not a file the workspace wrote"
    try:
        if why is not None:
            raise OSError(why)
        meta = json.loads(meta_path(path).read_text())
        stamp = filehash.stat_key(path)
        digest = filehash.remembered_sha256(path, ws.cache_dir / filehash.MEMO_JSON)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        meta, digest, why = (
            None,
            "",
            why or f"its description {meta_path(path).name} is unreadable ({type(exc).__name__})",
        )
    if why is None:
        expected = {"rows": len(ws), "dim": ws.dim, "fingerprint": ws.fingerprint}
        if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in expected.items()):
            why = "it describes other embeddings than the workspace's"
        elif meta.get("sha256") != digest:
            why = "its bytes are not the ones stored (truncated or changed)"
    index = None
    if why is None:
        import faiss

        try:
            # memory-mapped: the inverted lists stay file-backed pages (a query touches nprobe
            # lists of them), not 1.9 GB of server heap at 10M x 192. The file is only ever
            # replaced by a rename, never rewritten in place, so the mapping stays valid.
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
        except RuntimeError as exc:
            why = f"faiss cannot read it ({str(exc).splitlines()[0][:80]})"
        else:
            if index.ntotal != len(ws) or index.d != ws.dim:
                why, index = f"it holds {index.ntotal} x {index.d}, not {len(ws)} x {ws.dim}", None
            elif _stat_key_or_none(path) != stamp:  # replaced after its check: not what was read
                why, index = "it was replaced while it was read", None
    if why is not None:
        warn_once(
            ws,
            f"{path}: nearest-segment index not used: {why}; brute force until `dashboard-cache` rebuilds it",
        )
        return None
    ws.__dict__[_LOADED] = (path, index)
    return index


def _stat_key_or_none(path: Path) -> dict | None:
    try:
        return filehash.stat_key(path)
    except OSError:
        return None


def warn_once(ws, msg: str) -> None:
    """Log `msg` as a warning (and on stderr) once per opened workspace."""
    warned = ws.__dict__.setdefault(_WARNED, set())
    if msg not in warned:
        warned.add(msg)
        log.warning(msg)
        print(f"warning: {msg}", file=sys.stderr)


def index_rows(
    ws, index, q: np.ndarray, k: int, exclude_row: int | None, settings: IndexSettings | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, exact cosines) of the k best of the index's candidates for unit-norm `q`."""
    settings = settings or DEFAULT_SETTINGS
    import faiss

    faiss.extract_index_ivf(index).nprobe = settings.nprobe
    want = k + (exclude_row is not None)
    _, found = index.search(q.reshape(1, -1), max(want * settings.candidates, want))
    rows = np.unique(found[0][found[0] >= 0]).astype(np.int64)  # sorted: one forward pass of the map
    if exclude_row is not None:
        rows = rows[rows != int(exclude_row)]
    x = np.asarray(ws.embeddings[rows], dtype=np.float32)
    cos = (x @ q) / np.maximum(np.linalg.norm(x, axis=1), 1e-12)
    return _top(rows, cos.astype(np.float32), k)


def nearest_rows(
    ws, query: np.ndarray, k: int, exclude_row: int | None = None, settings: IndexSettings | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cosines) of the k catalogue segments nearest to `query` by cosine, best first; the
    row `exclude_row` is never among them. From the stored index where the workspace has one
    (uses_index), else by brute force (a big workspace without a usable index is said once)."""
    settings = settings or DEFAULT_SETTINGS
    q = np.asarray(query, dtype=np.float32).ravel()
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    if uses_index(ws, settings):
        try:
            index = load_index(ws, settings)
        except ImportError:
            index = None
            warn_once(ws, "faiss is not installed: nearest segments by brute force")
        if index is not None:
            return index_rows(ws, index, q, k, exclude_row, settings)
        if not index_path(ws, settings).is_file():
            warn_once(
                ws,
                f"workspace {ws.name}: no nearest-segment index; run `dashboard-cache` (brute force until then)",
            )
    return brute_force_rows(ws, q, k, exclude_row)
