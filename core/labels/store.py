"""Latent labels: a small SQLite database (WAL) beside the workspace, with full history.

    labels         the current label of each latent, keyed by (model, latent)
    label_history  every save ever made (append-only): nothing a user typed is lost, even when
                   two browser tabs save the same latent at once

Each operation opens its own short-lived connection (WAL journal, busy timeout), so any number of
Streamlit sessions, threads or processes can read and write at the same time. A save runs inside
`BEGIN IMMEDIATE`, so the history append and the current-label upsert are one atomic step and
concurrent writers are serialised by SQLite, not by luck.

Export/import: CSV and JSON with the columns of EXPORT_COLUMNS; import validates every row and
reports the bad ones by line number (CSV: file line; JSON: 1-based item number) while keeping the
good ones. A file that is not CSV/JSON at all raises InputError.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import InputError, NotFoundError, VoxSAEError

BUSY_TIMEOUT_MS = 30_000
EXPORT_COLUMNS = ("model", "latent", "name", "description", "tags", "confidence", "author", "updated_at")
REQUIRED_COLUMNS = ("model", "latent", "name")
MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 5_000
MAX_TAGS = 50

# the fields a label has, in the current table and in every history row
_LABEL_FIELDS = """
    model       TEXT    NOT NULL,
    latent      INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    tags        TEXT    NOT NULL DEFAULT '[]',
    confidence  REAL    NOT NULL DEFAULT 0.5,
    author      TEXT    NOT NULL DEFAULT '',"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS labels ({_LABEL_FIELDS}
    updated_at  REAL    NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (model, latent)
);
CREATE TABLE IF NOT EXISTS label_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,{_LABEL_FIELDS}
    saved_at    REAL    NOT NULL,
    source      TEXT    NOT NULL DEFAULT 'ui'
);
CREATE INDEX IF NOT EXISTS label_history_latent ON label_history (model, latent, id);
"""


class LabelConflict(VoxSAEError):
    """Someone else saved this latent after the form was opened (optimistic concurrency)."""

    def __init__(self, message: str, current: Label):
        super().__init__(message)
        self.current = current


@dataclass(frozen=True)
class Label:
    model: str
    latent: int
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    confidence: float = 0.5
    """The labeller's confidence in the name, 0 (a guess) .. 1 (certain)."""
    author: str = ""
    updated_at: float = 0.0
    """Unix time of the save (for history rows: when that version was saved)."""
    version: int = 0
    """How many times the current label was saved (0 for history rows)."""

    def to_row(self) -> dict:
        row = asdict(self)
        row["tags"] = list(self.tags)
        return row


@dataclass
class ImportReport:
    imported: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    """(line number, reason) for every rejected row; CSV line numbers count the header as line 1."""

    def summary(self) -> str:
        text = f"imported {self.imported} label(s)"
        if self.errors:
            text += f"; rejected {len(self.errors)} row(s): " + "; ".join(
                f"line {n}: {why}" for n, why in self.errors[:10]
            )
            if len(self.errors) > 10:
                text += f"; ... {len(self.errors) - 10} more"
        return text


# -- validation -----------------------------------------------------------------------------
def parse_tags(value) -> tuple[str, ...]:
    """Tags from a list or a 'a; b, c' string -> tuple of unique, stripped, non-empty tags."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    if isinstance(value, str):
        parts = value.replace(",", ";").split(";")
    elif isinstance(value, list | tuple):
        parts = [str(v) for v in value]
    else:
        raise InputError(f"tags must be a list or a ';'-separated string, got {type(value).__name__}")
    out: list[str] = []
    for p in parts:
        p = p.strip()
        if p and p not in out:
            out.append(p)
    if len(out) > MAX_TAGS:
        raise InputError(f"at most {MAX_TAGS} tags, got {len(out)}")
    return tuple(out)


def validate(
    model,
    latent,
    name,
    description="",
    tags=(),
    confidence=0.5,
    *,
    known_models: Mapping[str, int] | None = None,
) -> tuple[str, int, str, str, tuple[str, ...], float]:
    """Clean one label's fields or raise InputError saying which field is wrong.

    `known_models` maps model name -> latent count; when given, the model must be one of them
    and the latent id within range.
    """
    model = str(model if model is not None else "").strip()
    if not model:
        raise InputError("model is empty")
    try:
        if isinstance(latent, float) and not latent.is_integer():
            raise ValueError
        latent_i = int(str(latent).strip()) if not isinstance(latent, int | float) else int(latent)
    except (TypeError, ValueError):
        raise InputError(f"latent {latent!r} is not an integer") from None
    if latent_i < 0:
        raise InputError(f"latent {latent_i} is negative")
    if known_models is not None:
        if model not in known_models:
            raise InputError(f"model {model!r} is not in this workspace")
        if latent_i >= known_models[model]:
            raise InputError(f"latent {latent_i} out of range for {model} (0..{known_models[model] - 1})")
    name = str(name if name is not None else "").strip()
    if not name:
        raise InputError("name is empty")
    if len(name) > MAX_NAME_CHARS:
        raise InputError(f"name longer than {MAX_NAME_CHARS} characters")
    description = "" if description is None else str(description)
    if isinstance(description, float) or description == "nan":
        description = ""
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InputError(f"description longer than {MAX_DESCRIPTION_CHARS} characters")
    tags_t = parse_tags(tags)
    try:
        conf = 0.5 if confidence in (None, "") else float(confidence)
    except (TypeError, ValueError):
        raise InputError(f"confidence {confidence!r} is not a number") from None
    if not (0.0 <= conf <= 1.0):
        raise InputError(f"confidence {conf} is outside 0..1")
    return model, latent_i, name, description, tags_t, conf


# -- the store ------------------------------------------------------------------------------
class LabelStore:
    """Labels of one workspace. Cheap to construct; safe to share across threads."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.executescript(_SCHEMA)

    @classmethod
    def for_workspace(cls, ws) -> LabelStore:
        return cls(ws.labels_path)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":  # pragma: no cover - e.g. a read-only network share
                raise InputError(f"{self.path}: SQLite could not switch to WAL mode (got {mode})")
            con.execute("PRAGMA synchronous = NORMAL")
            con.row_factory = sqlite3.Row
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # -- write ------------------------------------------------------------------------------
    def save(
        self,
        model: str,
        latent: int,
        name: str,
        description: str = "",
        tags=(),
        confidence: float = 0.5,
        author: str = "",
        *,
        expected_version: int | None = None,
        source: str = "ui",
        known_models: Mapping[str, int] | None = None,
        now: float | None = None,
    ) -> Label:
        """Save (insert or update) a label and append it to the history, atomically.

        With `expected_version` (the version the form showed), a save over a newer label raises
        LabelConflict carrying the current label; the rejected text is still kept in history.
        """
        model, latent, name, description, tags_t, conf = validate(
            model, latent, name, description, tags, confidence, known_models=known_models
        )
        author = str(author or "").strip()[:100]
        ts = time.time() if now is None else float(now)
        tags_json = json.dumps(list(tags_t))
        with self._write() as con:
            con.execute(
                "INSERT INTO label_history (model, latent, name, description, tags, confidence, author,"
                " saved_at, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (model, latent, name, description, tags_json, conf, author, ts, source),
            )
            row = con.execute(
                "SELECT * FROM labels WHERE model = ? AND latent = ?", (model, latent)
            ).fetchone()
            current_version = int(row["version"]) if row else 0
            if expected_version is not None and current_version != expected_version:
                conflict = _label_from_row(row) if row else None
                # keep the rejected text in history (committed), but do not overwrite
                con.execute("COMMIT")
                con.execute("BEGIN IMMEDIATE")
                raise LabelConflict(
                    f"latent {latent} of {model} was saved by {conflict.author if conflict else '?'} "
                    f"after you opened it (version {current_version}, you had {expected_version})",
                    conflict,
                )
            version = current_version + 1
            con.execute(
                "INSERT INTO labels (model, latent, name, description, tags, confidence, author,"
                " updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (model, latent) DO UPDATE SET name = excluded.name,"
                " description = excluded.description, tags = excluded.tags,"
                " confidence = excluded.confidence, author = excluded.author,"
                " updated_at = excluded.updated_at, version = excluded.version",
                (model, latent, name, description, tags_json, conf, author, ts, version),
            )
        return Label(model, latent, name, description, tags_t, conf, author, ts, version)

    def delete(self, model: str, latent: int, author: str = "") -> None:
        """Remove the current label (the history keeps it, plus a 'deleted' entry)."""
        with self._write() as con:
            row = con.execute(
                "SELECT * FROM labels WHERE model = ? AND latent = ?", (model, int(latent))
            ).fetchone()
            if row is None:
                raise NotFoundError(f"latent {latent} of {model} has no label")
            con.execute(
                "INSERT INTO label_history (model, latent, name, description, tags, confidence, author,"
                " saved_at, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'delete')",
                (
                    model,
                    int(latent),
                    row["name"],
                    row["description"],
                    row["tags"],
                    row["confidence"],
                    str(author or ""),
                    time.time(),
                ),
            )
            con.execute("DELETE FROM labels WHERE model = ? AND latent = ?", (model, int(latent)))

    # -- read -------------------------------------------------------------------------------
    def get(self, model: str, latent: int) -> Label | None:
        with self._connect() as con:
            row = con.execute(
                "SELECT * FROM labels WHERE model = ? AND latent = ?", (model, int(latent))
            ).fetchone()
        return _label_from_row(row) if row else None

    def for_model(self, model: str) -> dict[int, Label]:
        with self._connect() as con:
            rows = con.execute("SELECT * FROM labels WHERE model = ? ORDER BY latent", (model,)).fetchall()
        return {int(r["latent"]): _label_from_row(r) for r in rows}

    def all(self) -> list[Label]:
        with self._connect() as con:
            rows = con.execute("SELECT * FROM labels ORDER BY model, latent").fetchall()
        return [_label_from_row(r) for r in rows]

    def history(self, model: str | None = None, latent: int | None = None) -> list[dict]:
        """Every save, newest first (optionally of one model / one latent)."""
        sql, args = "SELECT * FROM label_history", []
        if model is not None:
            sql += " WHERE model = ?"
            args.append(model)
            if latent is not None:
                sql += " AND latent = ?"
                args.append(int(latent))
        sql += " ORDER BY id DESC"
        with self._connect() as con:
            rows = con.execute(sql, args).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["tags"] = json.loads(d["tags"] or "[]")
            out.append(d)
        return out

    def version_stamp(self) -> tuple[int, float]:
        """(number of history rows, newest save time): changes whenever anything is saved."""
        with self._connect() as con:
            n, t = con.execute("SELECT COUNT(*), COALESCE(MAX(saved_at), 0) FROM label_history").fetchone()
        return int(n), float(t)

    # -- export / import --------------------------------------------------------------------
    def export_csv(self, model: str | None = None) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for lab in self._export_rows(model):
            row = {k: lab[k] for k in EXPORT_COLUMNS}
            row["tags"] = "; ".join(lab["tags"])
            writer.writerow(row)
        return buf.getvalue()

    def export_json(self, model: str | None = None) -> str:
        rows = [{k: lab[k] for k in EXPORT_COLUMNS} for lab in self._export_rows(model)]
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"

    def _export_rows(self, model: str | None) -> list[dict]:
        labels = self.all() if model is None else list(self.for_model(model).values())
        return [lab.to_row() for lab in labels]

    def import_text(
        self,
        text: str | bytes,
        fmt: str,
        *,
        author: str = "",
        known_models: Mapping[str, int] | None = None,
        where: str = "upload",
    ) -> ImportReport:
        """Import labels from CSV or JSON text; bad rows are reported, good rows saved."""
        rows = parse_import(text, fmt, where=where)
        report = ImportReport()
        for line, raw in rows:
            if "_bad" in raw:
                bad = raw["_bad"]
                why = bad if isinstance(bad, str) else f"not a label object ({type(bad).__name__})"
                report.errors.append((line, why))
                continue
            try:
                self.save(
                    raw.get("model"),
                    raw.get("latent"),
                    raw.get("name"),
                    raw.get("description", ""),
                    raw.get("tags", ()),
                    raw.get("confidence", 0.5),
                    str(raw.get("author") or author),
                    source="import",
                    known_models=known_models,
                )
                report.imported += 1
            except InputError as exc:
                report.errors.append((line, str(exc)))
        return report


def parse_import(text: str | bytes, fmt: str, *, where: str = "upload") -> list[tuple[int, dict]]:
    """(line number, row dict) pairs from CSV or JSON text; a malformed file raises InputError."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    fmt = fmt.lower().lstrip(".")
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{where}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
        if isinstance(data, dict) and isinstance(data.get("labels"), list):
            data = data["labels"]
        if not isinstance(data, list):
            raise InputError(f"{where}: JSON must be a list of label objects")
        out = []
        for i, item in enumerate(data, start=1):
            out.append((i, item if isinstance(item, dict) else {"_bad": item}))
        return out
    if fmt != "csv":
        raise InputError(f"{where}: unknown label file format {fmt!r} (use csv or json)")
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise InputError(f"{where}: empty CSV file")
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except csv.Error as exc:
        raise InputError(f"{where}: malformed CSV header ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(
            f"{where}: CSV header lacks column(s) {', '.join(missing)} (found: {', '.join(header) or 'none'})"
        )
    out = []
    try:
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                out.append((line, {"_bad": f"{len(cells)} fields, the header has {len(header)}"}))
                continue
            out.append((line, dict(zip(header, cells, strict=True))))
    except csv.Error as exc:
        raise InputError(f"{where}: malformed CSV at line {reader.line_num} ({exc})") from None
    return out


def _label_from_row(row: sqlite3.Row) -> Label:
    return Label(
        model=row["model"],
        latent=int(row["latent"]),
        name=row["name"],
        description=row["description"] or "",
        tags=tuple(json.loads(row["tags"] or "[]")),
        confidence=float(row["confidence"]),
        author=row["author"] or "",
        updated_at=float(row["updated_at"]),
        version=int(row["version"]),
    )
