"""The history store: each user's saved analyses, behind one database URL.

``SKINLENS_DB`` is a SQLAlchemy URL (``postgresql+psycopg://…`` lets several
app replicas share one server); unset, the store is the SQLite file
:data:`DB_FILENAME` in the data folder (``SKINLENS_DATA_DIR``, else ``data/``
in the repository; on a Space point it at the persistent storage, ``/data``).
Opening a store upgrades its schema to the newest Alembic revision in
``skin/history/migrations/``: tables are never created or edited by hand.

SQLite runs in WAL mode with ``synchronous=FULL`` (set on every connection):
a save returns only after its transaction is committed and synced, so an
acknowledged entry survives the server being killed (``kill -9``) and the
machine losing power, and readers never wait for a writer.

**Isolation.** Every method takes the user as a required first argument and
every statement filters on it: there is no way to name another user's entry.
The user comes from the signed-in request, never from what a client sends.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

import orjson
import sqlalchemy as sa

DB_ENV = "SKINLENS_DB"
DATA_DIR_ENV = "SKINLENS_DATA_DIR"
DB_FILENAME = "history.sqlite"
MIGRATIONS = Path(__file__).with_name("migrations")
#: A user name as stored (the sign-in name); longer names are refused, not cut.
MAX_USER_LENGTH = 255
#: SQLite waits this long (ms) for another connection's write lock before failing a save.
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: SQLite reads the file through a memory map up to this size: a history tab reads a user's rows
#: scattered over the file, and mapped pages cost no read call and no copy (bench/bench_history.py).
SQLITE_MMAP_BYTES = 1 << 30
#: SQLite's own page cache per connection, in KiB (negative: SQLite's unit for KiB).
SQLITE_CACHE_KIB = 64 * 1024

METADATA = sa.MetaData()
#: Mirrors the Alembic migrations (a test checks that the migrated schema matches it).
ENTRIES = sa.Table(
    "entries", METADATA,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user", sa.String(MAX_USER_LENGTH), nullable=False),
    sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("note", sa.Text(), nullable=False),
    sa.Column("scores", sa.JSON(), nullable=False),
    sa.Column("noise", sa.JSON(), nullable=False),
    sa.Column("photo_type", sa.String(32), nullable=False),
    sa.Column("tone_bucket", sa.String(16), nullable=True),
    sa.Column("quality_flags", sa.JSON(), nullable=False),
    sa.Column("photo", sa.LargeBinary(), nullable=True),
    sa.Column("models", sa.JSON(), nullable=True),
    sa.Index("ix_entries_user_saved_at", "user", "saved_at"),
)


@dataclass(frozen=True)
class NewEntry:
    """What is saved: the scores of one analysis and what decides whether two are comparable.

    ``scores``: ``{score name: value}`` (:mod:`skin.history.scores` names
    them); ``noise``: each score's test-retest standard deviation on this
    photo (:func:`skin.history.verdict.retest_noise`), the uncertainty of the
    point in the trend plot; ``photo_type``: what the photo shows (``closeup``
    or ``face``); ``quality_flags``: the photo-quality problem codes
    (:data:`skin.quality.PROBLEM_CODES`); ``photo``: the upload's bytes, only
    when the user asked to keep it; ``models``: ``{model key: version}`` of the
    models that scored it (:func:`skin.service.loading.model_version`).
    """

    scores: Mapping[str, float]
    photo_type: str
    tone_bucket: str | None = None
    quality_flags: tuple[str, ...] = ()
    noise: Mapping[str, float] = field(default_factory=dict)
    note: str = ""
    photo: bytes | None = None
    models: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Saved:
    """The acknowledgement of a committed save."""

    id: str
    saved_at: datetime


@dataclass(frozen=True)
class Entry:
    """A saved analysis as read back. ``photo`` is read only by :meth:`HistoryStore.get` and
    :meth:`HistoryStore.export` (``has_photo`` says whether one was kept)."""

    id: str
    user: str
    saved_at: datetime
    note: str
    scores: dict[str, float]
    noise: dict[str, float]
    photo_type: str
    tone_bucket: str | None
    quality_flags: tuple[str, ...]
    has_photo: bool
    photo: bytes | None = None
    #: ``{model key: version}`` of the models that scored it; empty for an entry saved before versions were kept
    models: dict[str, str] = field(default_factory=dict)

    def to_dict(self, *, photo: bool = False) -> dict:
        """JSON-ready: ISO time, the photo as base64 (only with ``photo=True``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "photo"}
        out["saved_at"] = self.saved_at.isoformat()
        out["quality_flags"] = list(self.quality_flags)
        if photo:
            out["photo_base64"] = None if self.photo is None else base64.b64encode(self.photo).decode("ascii")
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> Entry:
        """Inverse of :meth:`to_dict` (an exported entry read back)."""
        photo = d.get("photo_base64")
        return cls(id=d["id"], user=d["user"], saved_at=datetime.fromisoformat(d["saved_at"]), note=d["note"],
                   scores=dict(d["scores"]), noise=dict(d["noise"]), photo_type=d["photo_type"],
                   tone_bucket=d["tone_bucket"], quality_flags=tuple(d["quality_flags"]),
                   has_photo=bool(d["has_photo"]), photo=None if photo is None else base64.b64decode(photo),
                   models=dict(d.get("models") or {}))


@dataclass(frozen=True)
class Export:
    """All of one user's data: ``json`` (entries with their kept photos, base64) and ``csv``
    (one row per entry, one column per score and per score's noise; no photos)."""

    json: str
    csv: str


def default_url() -> str:
    """``$SKINLENS_DB``, else SQLite in ``$SKINLENS_DATA_DIR`` (default: ``data/`` in the repository)."""
    url = os.environ.get(DB_ENV, "").strip()
    if url:
        return url
    data_dir = os.environ.get(DATA_DIR_ENV, "").strip()
    folder = Path(data_dir) if data_dir else Path(__file__).resolve().parents[2] / "data"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / DB_FILENAME}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL, fully synced commits, a wait instead of an error when another writer holds the lock, and
    reads through a memory map and a larger page cache (neither changes what is written or when)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` to Alembic ``revision`` (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def _check_user(user: str) -> str:
    if not isinstance(user, str) or not user.strip():
        raise ValueError("no user: the history belongs to a signed-in user; sign in to keep a history")
    if len(user) > MAX_USER_LENGTH:
        raise ValueError(f"user name longer than {MAX_USER_LENGTH} characters")
    return user


def _finite_scores(scores: Mapping[str, float]) -> dict[str, float]:
    bad = [k for k, v in scores.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"scores must be finite numbers; not: {', '.join(bad)}")
    return {k: float(v) for k, v in scores.items()}


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: The JSON columns, read as text and decoded by orjson (Gradio's own JSON library): a history tab reads
#: 1,000 rows, and the standard library's decoder took a third of that load (bench/bench_history.py).
_JSON = ("scores", "noise", "quality_flags", "models")
_PLAIN = ("id", "user", "saved_at", "note", "photo_type", "tone_bucket")


def _select(*, photo: bool) -> sa.Select:
    """The columns an :class:`Entry` is made from, with or without the photo itself, in the order
    :func:`_entries` unpacks them."""
    return sa.select(*(ENTRIES.c[c] for c in _PLAIN), ENTRIES.c.photo.is_not(None).label("has_photo"),
                     *(sa.cast(ENTRIES.c[c], sa.Text).label(c) for c in _JSON),
                     ENTRIES.c.photo if photo else sa.null().label("photo"))


def _entries(rows: list) -> list[Entry]:
    """Rows of :func:`_select` as entries, each row unpacked as a tuple (faster than a SQLAlchemy ``Row``'s
    attribute look-ups, which cost a sixth of a 1,000-entry history tab)."""
    loads = orjson.loads
    return [Entry(id=entry_id, user=user, saved_at=_utc(saved_at), note=note, scores=loads(scores),
                  noise=loads(noise), photo_type=photo_type, tone_bucket=tone_bucket,
                  quality_flags=tuple(loads(flags)), has_photo=bool(has_photo), photo=photo,
                  models=(loads(models) or {}) if models else {})
            for entry_id, user, saved_at, note, photo_type, tone_bucket, has_photo, scores, noise, flags, models,
            photo in rows]


class HistoryStore:
    """Save, list, read, delete and export one user's entries (thread-safe: one engine, pooled connections)."""

    def __init__(self, url: str | None = None):
        self.url = url or default_url()
        self.engine = sa.create_engine(self.url)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def save(self, user: str, entry: NewEntry) -> Saved:
        """Store ``entry`` for ``user``; returns once the transaction is committed."""
        user = _check_user(user)
        saved = Saved(str(uuid.uuid4()), datetime.now(UTC))
        row = {"id": saved.id, "user": user, "saved_at": saved.saved_at, "note": str(entry.note or ""),
               "scores": _finite_scores(entry.scores),
               # an unmeasured σ (NaN) is left out: it reads back as the score's floor
               "noise": {k: float(v) for k, v in entry.noise.items() if math.isfinite(v)},
               "photo_type": entry.photo_type, "tone_bucket": entry.tone_bucket,
               "quality_flags": list(entry.quality_flags), "photo": entry.photo,
               "models": {str(k): str(v) for k, v in entry.models.items()}}
        with self.engine.begin() as conn:
            conn.execute(ENTRIES.insert(), row)
        return saved

    def list(self, user: str) -> list[Entry]:
        """``user``'s entries, newest first, without the photos."""
        return self._read(user, photo=False)

    def get(self, user: str, entry_id: str) -> Entry | None:
        """``user``'s entry ``entry_id`` with its photo, or ``None`` (also when it is someone else's)."""
        found = self._read(user, photo=True, entry_id=str(entry_id))
        return found[0] if found else None

    def delete(self, user: str, entry_id: str) -> int:
        """Delete ``user``'s entry ``entry_id``, or all of ``user``'s entries for ``"all"``; how many went."""
        query = sa.delete(ENTRIES).where(ENTRIES.c.user == _check_user(user))
        if entry_id != "all":
            query = query.where(ENTRIES.c.id == str(entry_id))
        with self.engine.begin() as conn:
            return conn.execute(query).rowcount

    def export(self, user: str) -> Export:
        """All of ``user``'s data, newest first, as JSON (with kept photos) and CSV."""
        entries = self._read(user, photo=True)
        doc = {"user": user, "exported_at": datetime.now(UTC).isoformat(),
               "entries": [e.to_dict(photo=True) for e in entries]}
        return Export(json=json.dumps(doc, indent=1), csv=entries_csv(entries))

    def _read(self, user: str, *, photo: bool, entry_id: str | None = None) -> list[Entry]:
        """``user``'s entries (only ``entry_id`` when given), newest first."""
        query = _select(photo=photo).where(ENTRIES.c.user == _check_user(user))
        if entry_id is not None:
            query = query.where(ENTRIES.c.id == entry_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(ENTRIES.c.saved_at.desc(), ENTRIES.c.id)).all()
        return _entries(rows)


#: The fixed CSV columns, before one ``score:<name>`` and one ``noise:<name>`` column per score.
CSV_COLUMNS = ("id", "saved_at", "note", "photo_type", "tone_bucket", "quality_flags", "has_photo", "models")


def entries_csv(entries: list[Entry]) -> str:
    """One row per entry; quality flags joined by ``;``; an empty cell where an entry lacks a score."""
    names = sorted({name for e in entries for name in e.scores})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*CSV_COLUMNS, *(f"score:{n}" for n in names), *(f"noise:{n}" for n in names)])
    for e in entries:
        writer.writerow([e.id, e.saved_at.isoformat(), e.note, e.photo_type, e.tone_bucket or "",
                         ";".join(e.quality_flags), int(e.has_photo),
                         ";".join(f"{k}={v}" for k, v in sorted(e.models.items())),
                         *(e.scores.get(n, "") for n in names), *(e.noise.get(n, "") for n in names)])
    return out.getvalue()
