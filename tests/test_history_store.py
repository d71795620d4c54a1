"""The history store on SQLite and, where it can be started here, on a real PostgreSQL server.

Every test runs once per backend (``db_url``): the same code behind another
URL, as ``SKINLENS_DB`` would switch it. Covers the Alembic schema, SQLite's
WAL mode, one user never reaching another's entries, deleting, the export
round trip, and durability: a writer killed with SIGKILL in the middle of a
burst of saves loses none it acknowledged.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from datetime import UTC

import pytest

from skin.history.store import (DB_FILENAME, ENTRIES, SQLITE_CACHE_KIB, SQLITE_MMAP_BYTES, Entry, HistoryStore,
                                default_url)
from tests.history_helpers import PostgresCluster, entry, postgres_problem

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def postgres():
    problem = postgres_problem()
    if problem:
        pytest.skip(f"no PostgreSQL here: {problem}")
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / DB_FILENAME}"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def store(db_url):
    with HistoryStore(db_url) as s:
        yield s


def test_migrations_create_the_schema_the_store_reads(store):
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from skin.history.store import METADATA

    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0002"
        assert compare_metadata(MigrationContext.configure(conn), METADATA) == []
    inspector = sa.inspect(store.engine)
    assert "ix_entries_user_saved_at" in {i["name"] for i in inspector.get_indexes("entries")}
    HistoryStore(store.url).close()  # opening again is a no-op upgrade


def test_a_database_of_the_first_schema_is_upgraded_and_keeps_its_entries(db_url):
    """An entry saved before model versions were kept reads back with none; new entries keep theirs."""
    from datetime import datetime

    import sqlalchemy as sa

    from skin.history.store import NewEntry, migrate

    engine = sa.create_engine(db_url)
    migrate(engine, "0001")
    first_schema = sa.Table("entries", sa.MetaData(), *(sa.Column(c.name, c.type) for c in ENTRIES.columns
                                                           if c.name != "models"))
    with engine.begin() as conn:
        conn.execute(first_schema.insert(), {"id": "old", "user": "ann", "saved_at": datetime.now(UTC), "note": "",
                                             "scores": {"age:age": 30.0}, "noise": {}, "photo_type": "face",
                                             "tone_bucket": None, "quality_flags": [], "photo": None})
    engine.dispose()
    with HistoryStore(db_url) as upgraded:
        (old,) = upgraded.list("ann")
        assert old.id == "old" and old.models == {} and old.scores == {"age:age": 30.0}
        upgraded.save("ann", NewEntry(scores={"age:age": 31.0}, photo_type="face", models={"age": "abc123"}))
        assert [e.models for e in upgraded.list("ann")] == [{"age": "abc123"}, {}]
        rows = list(csv.DictReader(io.StringIO(upgraded.export("ann").csv)))
        assert [r["models"] for r in rows] == ["age=abc123", ""]


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path):
    with HistoryStore(f"sqlite:///{tmp_path / 'h.sqlite'}") as s, s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA mmap_size").scalar() == SQLITE_MMAP_BYTES
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -SQLITE_CACHE_KIB


def test_default_url_is_sqlite_in_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("SKINLENS_DB", raising=False)
    monkeypatch.setenv("SKINLENS_DATA_DIR", str(tmp_path / "data"))
    assert default_url() == f"sqlite:///{tmp_path / 'data' / DB_FILENAME}"
    monkeypatch.setenv("SKINLENS_DB", "sqlite:///elsewhere.sqlite")
    assert default_url() == "sqlite:///elsewhere.sqlite"


def test_save_list_get(store):
    first = store.save("ann", entry(0.1, note="before"))
    second = store.save("ann", entry(0.3, photo=b"\xff\xd8jpeg bytes"))
    assert first.saved_at.tzinfo is not None and first.saved_at <= second.saved_at
    listed = store.list("ann")
    assert [e.id for e in listed] == [second.id, first.id]  # newest first
    assert isinstance(listed[0], Entry) and listed[0].has_photo and listed[0].photo is None
    got = store.get("ann", second.id)
    assert got.photo == b"\xff\xd8jpeg bytes" and got.scores["condition:mel"] == pytest.approx(0.3)
    assert got.saved_at == second.saved_at.astimezone(UTC)
    assert store.get("ann", first.id).note == "before" and not store.get("ann", first.id).has_photo
    assert store.get("ann", "no-such-id") is None


def test_one_user_never_reaches_another_users_entries(store):
    ann = store.save("ann", entry(0.1, photo=b"ann's photo"))
    bob = store.save("bob", entry(0.9))
    assert [e.id for e in store.list("bob")] == [bob.id]
    assert store.get("bob", ann.id) is None
    assert store.delete("bob", ann.id) == 0
    exported = store.export("bob")
    assert ann.id not in exported.json and ann.id not in exported.csv and "ann's" not in exported.json
    assert store.delete("bob", "all") == 1
    assert [e.id for e in store.list("ann")] == [ann.id]
    assert store.list("carol") == []


@pytest.mark.parametrize("user", ["", "   ", None])
def test_every_query_needs_a_user(store, user):
    for call in (lambda: store.save(user, entry()), lambda: store.list(user), lambda: store.get(user, "x"),
                 lambda: store.delete(user, "all"), lambda: store.export(user)):
        with pytest.raises(ValueError, match="sign in"):
            call()


def test_delete_one_and_all(store):
    ids = [store.save("ann", entry(v)).id for v in (0.1, 0.2, 0.3)]
    store.save("bob", entry())
    assert store.delete("ann", ids[1]) == 1
    assert store.delete("ann", ids[1]) == 0
    assert {e.id for e in store.list("ann")} == {ids[0], ids[2]}
    assert store.delete("ann", "all") == 2
    assert store.list("ann") == [] and len(store.list("bob")) == 1


def test_export_round_trips_as_json_and_csv(store):
    store.save("ann", entry(0.1, note='a note, with "quotes"\nand a line break', photo=b"\x00photo"))
    store.save("ann", entry(0.2, quality_flags=("blurry", "glare"), tone_bucket=None,
                            scores={"age:age": 41.5}, noise={"age:age": 1.5}))
    listed = store.list("ann")
    exported = store.export("ann")
    doc = json.loads(exported.json)
    assert doc["user"] == "ann"
    back = [Entry.from_dict(d) for d in doc["entries"]]
    assert [e.id for e in back] == [e.id for e in listed]
    assert back[1].photo == b"\x00photo" and back[0].photo is None
    assert [e.to_dict() for e in back] == [e.to_dict() for e in listed]
    rows = list(csv.DictReader(io.StringIO(exported.csv)))
    assert [r["id"] for r in rows] == [e.id for e in listed]
    assert rows[0]["quality_flags"] == "blurry;glare" and rows[0]["tone_bucket"] == ""
    assert rows[0]["score:condition:mel"] == "" and float(rows[0]["score:age:age"]) == 41.5
    assert rows[1]["note"] == listed[1].note and float(rows[1]["noise:condition:mel"]) == 0.01
    assert rows[1]["has_photo"] == "1"


WRITER = """
import sys
from skin.history.store import HistoryStore
from tests.history_helpers import entry
store = HistoryStore(sys.argv[1])
print("ready", flush=True)
for i in range(100000):
    print(store.save("ann", entry(i / 100000)).id, flush=True)
"""


def test_acknowledged_saves_survive_kill_9(db_url):
    HistoryStore(db_url).close()  # migrated before the burst, so the kill lands in the saves
    proc = subprocess.Popen([sys.executable, "-c", WRITER, db_url], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    acknowledged = [proc.stdout.readline().strip() for _ in range(40)]
    proc.send_signal(signal.SIGKILL)
    acknowledged += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with HistoryStore(db_url) as reopened:
        stored = {e.id for e in reopened.list("ann")}
    assert len(acknowledged) >= 40 and set(acknowledged) <= stored
    assert len(stored) <= len(acknowledged) + 1  # at most the save in flight when killed


def test_history_tab_has_the_table_and_a_trend_per_score(store):
    from skin.history.trends import history_tab
    from skin.history.verdict import K

    ids = [store.save("ann", entry(v, note=f"n{v}")).id for v in (0.1, 0.2)]
    store.save("ann", entry(0.3, scores={"age:age": 40.0}, noise={"age:age": 0.0}))
    tab = history_tab(store.list("ann"))
    assert [r["id"] for r in tab.rows[1:]] == ids[::-1] and "scores" not in tab.rows[0]
    mel = tab.trends["condition:mel"]
    assert mel.values == pytest.approx([0.1, 0.2]) and mel.errors == pytest.approx([K * 0.01] * 2)
    assert mel.better is None and tab.trends["condition:malignant"].better == "lower"
    age = tab.trends["age:age"]
    assert age.values == pytest.approx([30.1, 30.2, 40.0]) and age.errors[-1] == pytest.approx(K * 0.5)
    assert age.times == sorted(age.times)
