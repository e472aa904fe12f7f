"""Training rows that need not fit in memory: read from the memory-mapped .npy files in shards,
shuffled by shard and within a bounded buffer of shards, prefetched one buffer ahead.

    source = RowSource([Piece(ws.embeddings, rows), Piece(windows.embeddings, mine)])
    batches = StreamedBatches(source, batch_size=1024, seed=0, shard_rows=32768, buffer_shards=16)
    train(groups, batches, ...)          # an EpochBatches: core.training.trainer knows tensors only

* A RowSource's rows are its pieces' rows in order (a piece: an array and ascending positions in
  it; the workspace's embeddings.npy and windows.npy, a pooled workspace's, each one piece). A
  whole-file memory map is read with pread from a descriptor opened once, so the pages read stay
  in the page cache and never count in the process's RSS (touching a 7.7 GB map through numpy
  would leave all of it resident); any other array is indexed.
* Order of an epoch, a pure function of (seed, epoch) alone: the shards (`shard_rows` consecutive
  rows each, the last one shorter) are permuted, taken `buffer_shards` at a time, each buffer's
  rows are permuted and the buffers' rows, one after the other, are cut into batches (a batch may
  straddle two buffers). A buffer's shards are read in ascending order and buffer 0 is permuted
  from the seed core.training.trainer.shuffled_batches uses, so when one buffer holds every shard
  the batches are those of the in-memory path, tensor for tensor. A resumed epoch starts at its
  step's buffer without reading the buffers before it.
* Bounded: the buffer being cut and the next one (read by a background thread meanwhile) are all
  that is materialised, at most 2 x buffer_shards x shard_rows rows plus one batch
  (`peak_rows` counts them).
* `scan` checks every row (NaN/inf, too large) and sums what the MSE normaliser needs in one pass
  of fixed chunks; `piece_scale` gives the same figure for in-memory rows chunked the same
  way, so both paths start from the same bits.
"""

from __future__ import annotations

import math
import mmap
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from core.training.trainer import derived_seed, steps_per_epoch

SCAN_ROWS = 65_536
"""Rows per chunk of a scan (and of data_scale): fixed, so the float64 sums add up in one order."""
BLOCK_ROWS = 16_384
"""Most rows one pread covers: a shard of sparse positions is read in blocks of this span."""
SQUARED_NORM_LIMIT = float(np.finfo(np.float32).max) / 4
"""Largest squared norm of a training row: the squared distance between two rows (a
reconstruction error) can be 4x a row's own, and must stay within float32."""


class Piece(NamedTuple):
    array: np.ndarray
    """[N, dim] rows: a whole-file memory map (np.load mmap_mode='r') or an array in memory."""
    index: np.ndarray
    """Ascending int64 positions in `array` of this piece's rows."""


class RowProblems(NamedTuple):
    nonfinite: np.ndarray
    """bool per row: holds NaN or inf."""
    too_large: np.ndarray
    """bool per row: squared norm above SQUARED_NORM_LIMIT."""
    max_abs: float
    """Largest |value| of the finite rows (0 when none)."""


def row_problems(x: np.ndarray) -> RowProblems:
    finite = np.isfinite(x).all(axis=1)
    x64 = x.astype(np.float64)
    too_large = np.einsum("ij,ij->i", x64, x64) > SQUARED_NORM_LIMIT
    return RowProblems(~finite, too_large, float(np.abs(x[finite]).max()) if finite.any() else 0.0)


class _ScaleSums:
    """mean ||x - mean||^2 from float64 sums shifted by the first row (no cancellation)."""

    def __init__(self) -> None:
        self.shift: np.ndarray | None = None
        self.s1 = self.s2 = 0.0
        self.n = 0

    def add(self, chunk: np.ndarray) -> None:
        c = chunk.astype(np.float64)
        if self.shift is None:
            self.shift = c[0].copy()
        c -= self.shift
        self.s1 = self.s1 + c.sum(0)
        self.s2 = self.s2 + (c * c).sum(0)
        self.n += len(c)

    def value(self) -> float:
        with np.errstate(invalid="ignore", over="ignore"):  # a NaN row: refused by the caller's check
            mean = self.s1 / self.n
            return float((self.s2 / self.n - mean * mean).sum())


class Scan(NamedTuple):
    problems: list[RowProblems]
    """Per piece of the source."""
    scale: float
    """mean ||x - mean||^2 over every row (NaN when a row is not finite)."""


class RowSource:
    """The rows of `pieces`, in order, read without materialising more than asked for."""

    def __init__(self, pieces: list[Piece]):
        self.pieces = [Piece(p.array, np.asarray(p.index, dtype=np.int64)) for p in pieces]
        self.starts = np.cumsum([0] + [len(p.index) for p in self.pieces])
        self.n = int(self.starts[-1])
        self.dim = int(self.pieces[0].array.shape[1])
        self._fds: dict[int, tuple[int, int, np.dtype]] = {}
        for p in self.pieces:
            a = p.array
            if id(a) not in self._fds and isinstance(a.base, mmap.mmap) and a.flags.c_contiguous:
                # the descriptor holds the file mapped now, even if a writer renames another over it
                self._fds[id(a)] = (os.open(a.filename, os.O_RDONLY), int(a.offset), a.dtype)

    def __len__(self) -> int:
        return self.n

    def close(self) -> None:
        for fd, _, _ in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __del__(self) -> None:
        self.close()

    def _rows_of(self, piece: Piece, idx: np.ndarray, out: np.ndarray) -> None:
        """out[:] = piece.array[idx] as float32 (idx ascending)."""
        file = self._fds.get(id(piece.array))
        if file is None:
            out[:] = piece.array[idx]
            return
        fd, offset, dtype = file
        row_bytes = self.dim * dtype.itemsize
        i = 0
        while i < len(idx):
            first = int(idx[i])
            j = int(np.searchsorted(idx, first + BLOCK_ROWS, side="left"))
            span = int(idx[j - 1]) - first + 1
            block = np.empty((span, self.dim), dtype=dtype)
            got = os.preadv(fd, [memoryview(block).cast("B")], offset + first * row_bytes)
            if got != span * row_bytes:
                raise OSError(f"{piece.array.filename}: short read at row {first}")
            out[i:j] = block[idx[i:j] - first]
            i = j

    def read(self, start: int, stop: int) -> np.ndarray:
        """float32 [stop - start, dim]: rows start .. stop - 1."""
        out = np.empty((stop - start, self.dim), dtype=np.float32)
        for p, lo in zip(self.pieces, self.starts[:-1], strict=True):
            a, b = max(start, lo), min(stop, lo + len(p.index))
            if a < b:
                self._rows_of(p, p.index[a - lo : b - lo], out[a - start : b - start])
        return out

    def gather(self, positions: np.ndarray) -> np.ndarray:
        """float32 rows at `positions` (any order), read in ascending order."""
        positions = np.asarray(positions, dtype=np.int64)
        order = np.argsort(positions, kind="stable")
        ordered = positions[order]
        out = np.empty((len(positions), self.dim), dtype=np.float32)
        piece_of = np.searchsorted(self.starts, ordered, side="right") - 1
        for k, p in enumerate(self.pieces):
            mine = np.flatnonzero(piece_of == k)
            if mine.size:
                rows = np.empty((mine.size, self.dim), dtype=np.float32)
                self._rows_of(p, p.index[ordered[mine] - self.starts[k]], rows)
                out[order[mine]] = rows
        return out

    def scan(self) -> Scan:
        """Every row checked and the scale summed, in chunks of SCAN_ROWS within each piece."""
        sums = _ScaleSums()
        problems = []
        for k, p in enumerate(self.pieces):
            parts = []
            for lo in range(0, len(p.index), SCAN_ROWS):
                start = int(self.starts[k]) + lo
                chunk = self.read(start, min(start + SCAN_ROWS, int(self.starts[k + 1])))
                parts.append(row_problems(chunk))
                sums.add(chunk)
            problems.append(
                RowProblems(
                    np.concatenate([q.nonfinite for q in parts]) if parts else np.zeros(0, bool),
                    np.concatenate([q.too_large for q in parts]) if parts else np.zeros(0, bool),
                    max((q.max_abs for q in parts), default=0.0),
                )
            )
        return Scan(problems, sums.value() if sums.n else 0.0)


def piece_scale(x: np.ndarray, lengths: Iterable[int]) -> float:
    """data_scale of in-memory rows that are the concatenation of pieces of `lengths` rows,
    chunked piece by piece as RowSource.scan chunks them."""
    sums = _ScaleSums()
    start = 0
    for n in lengths:
        for lo in range(0, n, SCAN_ROWS):
            sums.add(x[start + lo : start + min(lo + SCAN_ROWS, n)])
        start += n
    return sums.value() if sums.n else 0.0


class StreamedBatches:
    """An EpochBatches over a RowSource, shuffled by shard and within a buffer (module doc)."""

    def __init__(
        self,
        source: RowSource,
        batch_size: int,
        seed: int,
        shard_rows: int,
        buffer_shards: int,
        device: torch.device | str = "cpu",
    ):
        self.source = source
        self.batch_size = batch_size
        self.seed = seed
        self.shard_rows = shard_rows
        self.buffer_shards = buffer_shards
        self.device = torch.device(device)
        self.n_shards = math.ceil(source.n / shard_rows)
        self.resident_rows = 0
        """Rows materialised now (buffers read or being read)."""
        self.peak_rows = 0
        """Most rows materialised at once so far."""
        self._lock = threading.Lock()

    @property
    def single_buffer(self) -> bool:
        """One buffer holds every shard: the order is the in-memory path's."""
        return self.n_shards <= self.buffer_shards

    def layout(self, epoch: int) -> list[np.ndarray]:
        """The shards of each buffer of `epoch`, each buffer's in ascending order."""
        gen = torch.Generator().manual_seed(derived_seed(self.seed, f"epoch{epoch}:shards"))
        order = torch.randperm(self.n_shards, generator=gen).numpy()
        return [
            np.sort(order[i : i + self.buffer_shards]) for i in range(0, self.n_shards, self.buffer_shards)
        ]

    def _shard_len(self, s: int) -> int:
        return min(self.shard_rows, self.source.n - s * self.shard_rows)

    def _count(self, rows: int) -> None:
        with self._lock:
            self.resident_rows += rows
            self.peak_rows = max(self.peak_rows, self.resident_rows)

    def _load(self, shards: np.ndarray) -> np.ndarray:
        rows = sum(self._shard_len(int(s)) for s in shards)
        self._count(rows)
        out = np.empty((rows, self.source.dim), dtype=np.float32)
        at = 0
        for s in shards:
            n = self._shard_len(int(s))
            out[at : at + n] = self.source.read(int(s) * self.shard_rows, int(s) * self.shard_rows + n)
            at += n
        return out

    def _perm(self, epoch: int, b: int, n: int) -> Tensor:
        name = f"epoch{epoch}" if b == 0 else f"epoch{epoch}:buffer{b}"
        return torch.randperm(n, generator=torch.Generator().manual_seed(derived_seed(self.seed, name)))

    def __call__(self, epoch: int, first_step: int) -> Iterator[Tensor]:
        if first_step >= steps_per_epoch(self.source.n, self.batch_size):
            return iter(())
        return self._batches(epoch, first_step)

    def _batches(self, epoch: int, first_step: int) -> Iterator[Tensor]:
        layout = self.layout(epoch)
        sizes = [sum(self._shard_len(int(s)) for s in shards) for shards in layout]
        ends = np.cumsum(sizes)
        pos = first_step * self.batch_size
        first = int(np.searchsorted(ends, pos, side="right"))
        skip = pos - (int(ends[first - 1]) if first else 0)
        pending: list[Tensor] = []
        have = 0
        self.resident_rows = 0  # an epoch left early (a model finished, a test hook) left its count
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voxsae-shards")
        try:
            ahead = pool.submit(self._load, layout[first])
            for b in range(first, len(layout)):
                buf = ahead.result()
                if b + 1 < len(layout):
                    ahead = pool.submit(self._load, layout[b + 1])
                x, perm = torch.from_numpy(buf), self._perm(epoch, b, len(buf))
                i, skip = skip, 0
                while i < len(buf):
                    take = min(self.batch_size - have, len(buf) - i)
                    pending.append(x[perm[i : i + take]])
                    have += take
                    i += take
                    if have == self.batch_size:
                        out = pending[0] if len(pending) == 1 else torch.cat(pending)
                        pending, have = [], 0
                        yield out.to(self.device)
                del x, buf
                self._count(-sizes[b])
            if pending:
                yield torch.cat(pending).to(self.device)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
