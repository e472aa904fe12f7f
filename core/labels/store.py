"""Latent labels: a small SQLite database (WAL) beside the workspace, with full history.

    labels         the current label of each latent, keyed by (model, latent)
    label_history  every save ever made (append-only): nothing a user typed is lost, even when
                   two browser tabs save the same latent at once

Each operation opens its own short-lived connection (WAL journal, busy timeout), so any number of
Streamlit sessions, threads or processes can read and write at the same time. A save runs inside
`BEGIN IMMEDIATE`, so the history append and the current-label upsert are one atomic step and
concurrent writers are serialised by SQLite, not by luck.

Export/import: CSV and JSON with the columns of EXPORT_COLUMNS; import validates every row (text
fields must be text, the latent a non-negative integer that is not a bool and, for a known model,
below its latent count; the confidence a number in 0..1; a JSON object may name a key once) and
reports the bad ones by line number (CSV: file line; JSON: 1-based item number) while saving the
good ones in one transaction. A file that cannot be parsed at all (not UTF-8, malformed, nested
too deeply, a CSV header naming a column twice) raises InputError.

The database is only ever the plain file labels.sqlite: a link there (or at its -wal, -shm or
-journal) is refused, never followed, so a save cannot write into whatever it leads to. A
labels.sqlite that is another tool's database (a `labels` table without these columns) is refused
before anything is written to it, and a row edited by hand into something that is not a label
(text where the latent or the confidence belongs) is an InputError naming it, not a traceback.

A save that cannot be written (disk full, read-only folder) raises core.atomic.WriteError
("cannot write <path>: <why>") and leaves the stored labels as they were.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import errno
import io
import json
import math
import numbers
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.atomic import WriteError, write_failure
from core.errors import InputError, NotFoundError, VoxSAEError

BUSY_TIMEOUT_MS = 30_000
EXPORT_COLUMNS = ("model", "latent", "name", "description", "tags", "confidence", "author", "updated_at")
REQUIRED_COLUMNS = ("model", "latent", "name")
MAX_MODEL_CHARS = 200
MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 5_000
MAX_TAGS = 50
MAX_TAG_CHARS = 100
MAX_AUTHOR_CHARS = 100
MAX_LATENT = 2**63 - 1
"""The largest latent id SQLite's INTEGER holds (anything past it would overflow the binding)."""
MAX_IMPORT_ROWS = 200_000
SIDECARS = ("-wal", "-shm", "-journal")
"""Files SQLite opens beside the database."""
LABEL_COLUMNS = (
    "model",
    "latent",
    "name",
    "description",
    "tags",
    "confidence",
    "author",
    "updated_at",
    "version",
)
HISTORY_COLUMNS = (*LABEL_COLUMNS[:7], "saved_at", "source")

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


def _switch_to_wal(con: sqlite3.Connection) -> str:
    """`PRAGMA journal_mode = WAL`, retried while another connection holds the lock.

    SQLite answers this pragma SQLITE_BUSY at once, without calling the busy handler, when a
    second connection is opening or closing the database at that moment (seen: two threads'
    first saves on a new store). So it is retried here, up to the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.002
    while True:
        try:
            return con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


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
def _shown(value) -> str:
    """A short description of a user's value for an error message (never a huge or deep repr)."""
    if value is None or isinstance(value, str | numbers.Number):
        try:
            text = repr(value)
        except ValueError:  # an int past Python's digit limit for str()
            return "a very large integer"
        return text if len(text) <= 40 else text[:37] + "..."
    kind = next((k for k in (dict, list) if isinstance(value, k)), type(value))
    return f"a {kind.__name__}"


def _text(value, what: str, limit: int, *, strip: bool = True) -> str:
    """A text field: None (or NaN, an empty cell) is ''; anything but a string is refused."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if not isinstance(value, str):
        raise InputError(f"{what} is not text: {_shown(value)}")
    value = value.strip() if strip else value
    if len(value) > limit:
        raise InputError(f"{what} longer than {limit} characters ({len(value):,})")
    return value


def latent_id(latent) -> int:
    """A latent id from an int, an integral float or a decimal string; InputError otherwise.

    A bool is not an id (JSON `true` would otherwise be latent 1), nor is anything past the
    largest integer SQLite stores."""
    value = None
    if latent is None or (isinstance(latent, str) and not latent.strip()):
        raise InputError("latent is missing")
    if isinstance(latent, bool):
        pass
    elif isinstance(latent, numbers.Integral):
        value = int(latent)
    elif isinstance(latent, numbers.Real):
        f = float(latent)
        value = int(f) if math.isfinite(f) and f.is_integer() else None
    elif isinstance(latent, str) and re.fullmatch(r"[+-]?[0-9]+", latent.strip()):
        digits = latent.strip().lstrip("+-")
        value = int(latent) if len(digits) <= len(str(MAX_LATENT)) else MAX_LATENT + 1
    if value is None:
        raise InputError(f"latent is not an integer: {_shown(latent)}")
    if value < 0:
        raise InputError(f"latent {_shown(latent)} is negative")
    if value > MAX_LATENT:
        raise InputError(f"latent {_shown(latent)} is past the largest latent id ({MAX_LATENT})")
    return value


def parse_tags(value) -> tuple[str, ...]:
    """Tags from a list or a 'a; b, c' string -> tuple of unique, stripped, non-empty tags."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    if isinstance(value, str):
        parts = value.replace(",", ";").split(";")
    elif isinstance(value, list | tuple):
        parts = [_text(v, "a tag", MAX_TAG_CHARS) for v in value]
    else:
        raise InputError(f"tags are not a list or a ';'-separated string: {_shown(value)}")
    out: list[str] = []
    for p in parts:
        p = p.strip()
        if len(p) > MAX_TAG_CHARS:
            raise InputError(f"a tag longer than {MAX_TAG_CHARS} characters ({len(p):,})")
        if p and p not in out:
            out.append(p)
    if len(out) > MAX_TAGS:
        raise InputError(f"at most {MAX_TAGS} tags, got {len(out)}")
    return tuple(out)


def _confidence(value) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0.5
    conf = None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        conf = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            conf = float(value)
    if conf is None or math.isnan(conf):
        raise InputError(f"confidence is not a number: {_shown(value)}")
    if not (0.0 <= conf <= 1.0):
        raise InputError(f"confidence {conf:g} is outside 0..1")
    return conf


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

    Text fields must be strings (a JSON object or list is not a name), the latent a non-negative
    integer (not a bool), the confidence a number in 0..1 (not NaN). `known_models` maps model
    name -> latent count; when given, the model must be one of them and the latent id within range.
    """
    model = _text(model, "model", MAX_MODEL_CHARS)
    if not model:
        raise InputError("model is empty")
    latent_i = latent_id(latent)
    if known_models is not None:
        if model not in known_models:
            raise InputError(f"model {model!r} is not in this workspace")
        if latent_i >= known_models[model]:
            raise InputError(f"latent {latent_i} out of range for {model} (0..{known_models[model] - 1})")
    name = _text(name, "name", MAX_NAME_CHARS)
    if not name:
        raise InputError("name is empty")
    description = _text(description, "description", MAX_DESCRIPTION_CHARS, strip=False)
    return model, latent_i, name, description, parse_tags(tags), _confidence(confidence)


def _author(value) -> str:
    """Who saved: text, cut to MAX_AUTHOR_CHARS (a name is not worth refusing a label over)."""
    if value is not None and not isinstance(value, str):
        raise InputError(f"author is not text: {_shown(value)}")
    return (value or "").strip()[:MAX_AUTHOR_CHARS]


def _folder_problem(folder: Path) -> str | None:
    """What the OS would say about writing into `folder` (read-only, full, no permission), if anything:
    SQLite itself reports such failures only as 'disk I/O error' or 'unable to open database file'."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return os.strerror(errno.EROFS)
    if st.f_bavail == 0:
        return os.strerror(errno.ENOSPC)
    if not os.access(folder, os.W_OK):
        return os.strerror(errno.EACCES)
    return None


# -- the store ------------------------------------------------------------------------------
class LabelStore:
    """Labels of one workspace. Cheap to construct (nothing is touched until the first read or
    save); safe to share across threads.

    A failed save (disk full, read-only folder, corrupt file) raises WriteError("cannot write
    <path>: <why>") and changes nothing: the transaction is rolled back. Reads still work where
    the folder cannot be written (a read-only share, a full disk): they then read the committed
    database file as it is, and a store that does not exist yet reads as empty.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._schema_ready = False

    @classmethod
    def for_workspace(cls, ws) -> LabelStore:
        return cls(ws.labels_path)

    def _refuse_links(self) -> None:
        """InputError when the database file (or a sidecar SQLite would open beside it) is a link."""
        for path in [self.path, *(self.path.with_name(self.path.name + end) for end in SIDECARS)]:
            if path.is_symlink():
                raise InputError(
                    f"{path}: a link (to {os.readlink(path)}), never followed: the label database "
                    "is a plain file; remove the link"
                )

    def _open(self) -> sqlite3.Connection:
        """A WAL connection with the schema in place."""
        self._refuse_links()
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not self._schema_ready:
                self._refuse_foreign(con)
            mode = _switch_to_wal(con)
            if str(mode).lower() != "wal":  # pragma: no cover - e.g. a read-only network share
                raise InputError(f"{self.path}: SQLite could not switch to WAL mode (got {mode})")
            con.execute("PRAGMA synchronous = NORMAL")
            if not self._schema_ready:
                con.executescript(_SCHEMA)
                self._schema_ready = True
        except BaseException:
            con.close()
            raise
        con.row_factory = sqlite3.Row
        return con

    def _refuse_foreign(self, con: sqlite3.Connection) -> None:
        """InputError, before anything is written, when the file holds tables named like ours
        without our columns (another tool's labels.sqlite)."""
        for table, columns in (("labels", LABEL_COLUMNS), ("label_history", HISTORY_COLUMNS)):
            found = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
            missing = [c for c in columns if c not in found]
            if found and missing:
                raise InputError(
                    f"{self.path}: not a VoxSAE label database (table {table} lacks column(s) "
                    f"{', '.join(missing)})"
                )

    def _open_as_it_is(self, exc: sqlite3.Error) -> sqlite3.Connection:
        """For reading when a WAL connection cannot be opened: the committed file, read-only.

        Only where that is the whole truth: SQLite could not open or write beside the file (no
        -shm/-wal can be made on a read-only or full disk) and no write-ahead log holds saves
        the file lacks. Anything else (a corrupt file, a busy database) is an InputError."""
        wal = self.path.with_name(self.path.name + "-wal")
        unopenable = isinstance(exc, sqlite3.OperationalError) and getattr(
            exc, "sqlite_errorname", ""
        ).startswith(("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_FULL"))
        if not unopenable or (wal.exists() and wal.stat().st_size > 0):
            raise self._failure(exc, write=False) from None
        if not self.path.exists():  # nothing saved yet: an empty store
            con = sqlite3.connect(":memory:", isolation_level=None)
            con.executescript(_SCHEMA)
        else:
            try:
                con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
                con.execute("SELECT 1 FROM labels LIMIT 1")
            except sqlite3.Error:
                raise self._failure(exc, write=False) from None
        con.row_factory = sqlite3.Row
        return con

    def _failure(self, exc: sqlite3.Error, *, write: bool) -> VoxSAEError:
        """One clear error for an SQLite failure: `cannot write|read <path>: <why>`."""
        why = str(exc)
        problem = _folder_problem(self.path.parent) if isinstance(exc, sqlite3.OperationalError) else None
        if problem:
            why = f"{problem} (SQLite: {exc})"
        if write:
            return WriteError(f"cannot write {self.path}: {why}")
        return InputError(f"cannot read {self.path}: {why}")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for reading."""
        try:
            con = self._open()
        except sqlite3.Error as exc:
            con = self._open_as_it_is(exc)
        try:
            yield con
        except sqlite3.Error as exc:
            raise self._failure(exc, write=False) from None
        finally:
            con.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE .. COMMIT): all of it is stored or none."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_failure(self.path, exc) from None
        try:
            con = self._open()
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._failure(exc, write=True) from None
        try:
            yield con
            con.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                con.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._failure(exc, write=True) from None
            raise
        finally:
            con.close()

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
        fields = validate(model, latent, name, description, tags, confidence, known_models=known_models)
        author = _author(author)
        ts = time.time() if now is None else float(now)
        with self._write() as con:
            return _put(con, fields, author, ts, source, expected_version)

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
                    _author(author),
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
        return _label_from_row(row, self.path) if row else None

    def for_model(self, model: str) -> dict[int, Label]:
        with self._connect() as con:
            rows = con.execute("SELECT * FROM labels WHERE model = ? ORDER BY latent", (model,)).fetchall()
        labels = [_label_from_row(r, self.path) for r in rows]
        return {lab.latent: lab for lab in labels}

    def all(self) -> list[Label]:
        with self._connect() as con:
            rows = con.execute("SELECT * FROM labels ORDER BY model, latent").fetchall()
        return [_label_from_row(r, self.path) for r in rows]

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
            d["tags"] = list(_tags_of(d["tags"]))
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
        """Import labels from CSV or JSON text: every row is validated, the bad ones are reported
        (line number and reason) and the good ones saved, all in one transaction (a failed write
        stores none of them). A file that cannot be parsed at all raises InputError."""
        rows = parse_import(text, fmt, where=where)
        if len(rows) > MAX_IMPORT_ROWS:
            raise InputError(f"{where}: {len(rows):,} rows; at most {MAX_IMPORT_ROWS:,} labels per import")
        report = ImportReport()
        good = []
        for line, raw in rows:
            if isinstance(raw, str):  # a row the parser already refused
                report.errors.append((line, raw))
                continue
            try:
                fields = validate(
                    raw.get("model"),
                    raw.get("latent"),
                    raw.get("name"),
                    raw.get("description", ""),
                    raw.get("tags", ()),
                    raw.get("confidence", 0.5),
                    known_models=known_models,
                )
                good.append((fields, _author(raw.get("author") or author)))
            except InputError as exc:
                report.errors.append((line, str(exc)))
        if good:
            ts = time.time()
            with self._write() as con:
                for fields, who in good:
                    _put(con, fields, who, ts, "import")
            report.imported = len(good)
        return report


def _put(con, fields, author: str, ts: float, source: str, expected_version: int | None = None) -> Label:
    """Append one validated label to the history and make it current, inside `con`'s transaction."""
    model, latent, name, description, tags_t, conf = fields
    tags_json = json.dumps(list(tags_t))
    con.execute(
        "INSERT INTO label_history (model, latent, name, description, tags, confidence, author,"
        " saved_at, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (model, latent, name, description, tags_json, conf, author, ts, source),
    )
    row = con.execute("SELECT * FROM labels WHERE model = ? AND latent = ?", (model, latent)).fetchone()
    current_version = int(row["version"]) if row else 0
    if expected_version is not None and current_version != expected_version:
        conflict = _label_from_row(row, "labels.sqlite") if row else None
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


def parse_import(text: str | bytes, fmt: str, *, where: str = "upload") -> list[tuple[int, dict | str]]:
    """(line number, row dict) pairs from CSV or JSON text, (line number, reason) for a row that is
    not a label at all; a malformed file raises InputError naming `where` and the place."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    fmt = fmt.lower().lstrip(".")
    if fmt == "json":
        return _parse_json(text, where)
    if fmt != "csv":
        raise InputError(f"{where}: unknown label file format {_shown(fmt)} (use csv or json)")
    return _parse_csv(text, where)


def _parse_json(text: str, where: str) -> list[tuple[int, dict | str]]:
    try:
        data = json.loads(text, object_pairs_hook=_Object)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{where}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply to read") from None
    except ValueError as exc:  # e.g. an integer literal past Python's digit limit
        raise InputError(f"{where}: unreadable JSON ({str(exc).split(':')[0]})") from None
    if isinstance(data, dict) and isinstance(data.get("labels"), list):
        data = data["labels"]
    if not isinstance(data, list):
        raise InputError(f"{where}: JSON must be a list of label objects, got {_shown(data)}")
    return [(i, _json_row(item)) for i, item in enumerate(data, start=1)]


class _Object(dict):
    """A JSON object that remembers the keys it named more than once (json keeps the last one)."""

    def __init__(self, pairs):
        super().__init__(pairs)
        counts = collections.Counter(k for k, _ in pairs)
        self.twice = sorted(k for k, n in counts.items() if n > 1)


def _json_row(item) -> dict | str:
    """A JSON item as a row, or why it is not one."""
    if not isinstance(item, dict):
        return f"not a label object ({_shown(item)})"
    if getattr(item, "twice", None):
        return f"key {item.twice[0]!r} appears twice"
    return item


def _parse_csv(text: str, where: str) -> list[tuple[int, dict | str]]:
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise InputError(f"{where}: empty CSV file")
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except csv.Error as exc:
        raise InputError(f"{where}: malformed CSV header ({exc})") from None
    twice = sorted(h for h, n in collections.Counter(header).items() if n > 1)
    if twice:
        raise InputError(f"{where}: the CSV header names column {twice[0]!r} twice")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        found = ", ".join(_shown(h) for h in header[:10]) + (", ..." if len(header) > 10 else "")
        raise InputError(
            f"{where}: CSV header lacks column(s) {', '.join(missing)} (found: {found or 'none'})"
        )
    out: list[tuple[int, dict | str]] = []
    try:
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                out.append((line, f"{len(cells)} fields, the header has {len(header)}"))
                continue
            out.append((line, dict(zip(header, cells, strict=True))))
    except csv.Error as exc:
        raise InputError(f"{where}: malformed CSV at line {reader.line_num} ({exc})") from None
    return out


def _tags_of(text) -> tuple[str, ...]:
    """The stored tags (a JSON list); () for anything else (a hand-edited database)."""
    try:
        tags = json.loads(text or "[]")
    except (ValueError, RecursionError):
        return ()
    return tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ()


def _label_from_row(row: sqlite3.Row, path) -> Label:
    """A stored row as a Label; InputError naming the row when a hand edit made it something else
    (SQLite keeps any value in any column)."""

    def damaged(what: str) -> InputError:
        return InputError(
            f"{path}: a damaged label (model {row['model']!r}, latent {row['latent']!r}): {what}"
        )

    latent = row["latent"]
    if not isinstance(latent, int):
        raise damaged(f"latent {latent!r} is not a whole number")
    if not isinstance(row["name"], str) or not isinstance(row["model"], str):
        raise damaged(f"name {row['name']!r} is not text")
    for key in ("confidence", "updated_at", "version"):
        if not isinstance(row[key], int | float):
            raise damaged(f"{key} {row[key]!r} is not a number")
    return Label(
        model=row["model"],
        latent=latent,
        name=row["name"],
        description=row["description"] if isinstance(row["description"], str) else "",
        tags=_tags_of(row["tags"]),
        confidence=float(row["confidence"]),
        author=row["author"] if isinstance(row["author"], str) else "",
        updated_at=float(row["updated_at"]),
        version=int(row["version"]),
    )
