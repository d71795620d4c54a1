"""How fast the history store answers with a large database: saving an entry and loading a history tab.

Builds a SQLite history of ``--users`` users with ``--entries`` entries each
(default 1,000 x 1,000 = one million rows; each entry the scores of the two
default models, 7 condition classes + malignant + age, with their noise, and
timestamps spread over a year, written in time order across users so that
one user's rows lie scattered through the file as on a live server) through :class:`skin.history.store.HistoryStore`'s
own table, in large transactions with ``synchronous=OFF`` (the fixture is not
timed; the timed store runs as the app's, WAL with ``synchronous=FULL``).
Then, on the store as the app opens it, alternating, ``--samples`` times each
on random users, after ``--warmup`` untimed calls of each:

* **save**: :meth:`HistoryStore.save` of one entry, committed and synced;
* **load**: what the history tab needs, :meth:`HistoryStore.list` (the
  user's 1,000 entries, newest first) + :func:`skin.history.trends.history_tab`
  (the table rows and a trend series per score);
* **load_sqlite_defaults**: the same load, interleaved with it on a second
  store over the same file whose connections have SQLite's default read
  settings (no memory map, a 2 MiB page cache): the store's read pragmas
  (:data:`skin.history.store.SQLITE_MMAP_BYTES`, ``SQLITE_CACHE_KIB``) against
  none, side by side in one run.

Prints p50 / p95 / max in ms and writes ``bench/results/history.json``.
Targets: load p95 <= 50 ms, save p95 <= 20 ms. ``--db PATH`` keeps (and reuses)
the filled database. Usage::

    python bench/bench_history.py [--users 1000] [--entries 1000] [--samples 300] [--db /tmp/h.sqlite]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect  # noqa: E402

from skin.history.store import ENTRIES, SQLITE_CACHE_KIB, SQLITE_MMAP_BYTES, HistoryStore, NewEntry  # noqa: E402
from skin.history.trends import history_tab  # noqa: E402

HAM_LABELS = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
MALIGNANT = ("akiec", "bcc", "mel")
TARGETS_MS = {"load": 50.0, "save": 20.0, "load_sqlite_defaults": 50.0}
#: SQLite's own defaults for the read pragmas the store sets (the comparison variant).
SQLITE_DEFAULT_READS = ("PRAGMA mmap_size=0", "PRAGMA cache_size=-2000")
BATCH = 20_000


def fake_entry(rng: random.Random) -> NewEntry:
    """The scores the two default models give one photo (random, with their noise)."""
    weights = [rng.random() for _ in HAM_LABELS]
    total = sum(weights)
    scores = {f"condition:{c}": w / total for c, w in zip(HAM_LABELS, weights, strict=True)}
    scores["condition:malignant"] = sum(scores[f"condition:{c}"] for c in MALIGNANT)
    scores["age:age"] = rng.uniform(18, 70)
    noise = {name: (rng.uniform(0.5, 3.0) if name == "age:age" else rng.uniform(0.002, 0.05)) for name in scores}
    return NewEntry(scores=scores, noise=noise, photo_type="closeup", tone_bucket=rng.choice(["light", "medium"]),
                    quality_flags=() if rng.random() < 0.9 else ("blurry",), note="",
                    models={"condition": f"{rng.getrandbits(48):012x}", "age": f"{rng.getrandbits(48):012x}"})


def fill(path: Path, users: int, entries: int, seed: int = 0) -> None:
    """One million rows (by default) in large transactions, fsync off: set-up, not timed."""
    HistoryStore(f"sqlite:///{path}").close()  # the schema, by the migrations
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    # each value converted as the store's own column types convert it (time format, JSON)
    dialect = sqlite_dialect()
    convert = [c.type.bind_processor(dialect) or (lambda v: v) for c in ENTRIES.c]
    columns = [c.name for c in ENTRIES.c]
    sql = f"INSERT INTO entries ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    pool = [fake_entry(rng) for _ in range(997)]  # reused: the JSON is the same size either way
    rows = []
    # in time order across all users, as a live server writes them: one user's rows are spread over the file
    for i in range(entries):
        for u in range(users):
            e = pool[(u * entries + i) % len(pool)]
            when = start + timedelta(minutes=525 * i + rng.random())
            values = (str(uuid.uuid4()), f"user{u}", when, e.note, e.scores, e.noise, e.photo_type,
                      e.tone_bucket, list(e.quality_flags), None, dict(e.models))
            rows.append(tuple(f(v) for f, v in zip(convert, values, strict=True)))
            if len(rows) >= BATCH:
                conn.executemany(sql, rows)
                conn.commit()
                rows.clear()
    conn.executemany(sql, rows)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def defaults_store(url: str) -> HistoryStore:
    """A store as the app opens it, but whose connections then reset the read pragmas to SQLite's defaults."""
    import sqlalchemy as sa

    store = HistoryStore(url)

    def reset(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_DEFAULT_READS:
            cursor.execute(pragma)
        cursor.close()

    sa.event.listen(store.engine, "connect", reset)  # runs after the store's own pragmas
    store.engine.dispose()  # drop the connection the migration opened with them
    return store


def percentiles(samples: list[float]) -> dict:
    ms = np.array(samples) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "max_ms": round(float(ms.max()), 2), "n": len(samples)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--db", default=None, help="keep the filled database here (reused when present)")
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "results" / "history.json"))
    args = parser.parse_args(argv)
    folder = None
    if args.db:
        path = Path(args.db)
    else:
        folder = tempfile.TemporaryDirectory(prefix="skinlens-history-")
        path = Path(folder.name) / "history.sqlite"
    fill_s = None
    if not path.exists():
        t = time.perf_counter()
        fill(path, args.users, args.entries)
        fill_s = round(time.perf_counter() - t, 1)
        print(f"filled {args.users:,} users x {args.entries:,} entries in {fill_s} s")
    rng = random.Random(1)
    store = HistoryStore(f"sqlite:///{path}")
    baseline = defaults_store(f"sqlite:///{path}")
    timings: dict[str, list[float]] = {"save": [], "load": [], "load_sqlite_defaults": []}
    loaded_rows = []
    for i in range(args.warmup + args.samples):
        user = f"user{rng.randrange(args.users)}"
        t = time.perf_counter()
        store.save(user, fake_entry(rng))
        save_s = time.perf_counter() - t
        user = f"user{rng.randrange(args.users)}"
        # both variants load the same user, in alternating order (neither always reads the other's warm pages)
        loads = {}
        for name, which in (("load", store), ("load_sqlite_defaults", baseline))[:: 1 if i % 2 else -1]:
            t = time.perf_counter()
            tab = history_tab(which.list(user))
            loads[name] = time.perf_counter() - t
        if i >= args.warmup:
            timings["save"].append(save_s)
            for name, seconds in loads.items():
                timings[name].append(seconds)
            loaded_rows.append(len(tab.rows))
    store.close()
    baseline.close()
    result = {name: {**percentiles(s), "target_p95_ms": TARGETS_MS[name],
                     "met": percentiles(s)["p95_ms"] <= TARGETS_MS[name]} for name, s in timings.items()}
    result["setup"] = {"users": args.users, "entries_per_user": args.entries,
                       "rows_per_load": int(np.median(loaded_rows)),
                       "db_mb": round(path.stat().st_size / 2**20, 1), "fill_s": fill_s,
                       "sqlite": sqlite3.sqlite_version, "journal": "wal", "synchronous": "full",
                       "mmap_bytes": SQLITE_MMAP_BYTES, "cache_kib": SQLITE_CACHE_KIB,
                       "load_sqlite_defaults": list(SQLITE_DEFAULT_READS)}
    result["env"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()}
    print("\n| operation | p50 ms | p95 ms | max ms | target p95 ms | met |\n|---|---:|---:|---:|---:|---|")
    for name in ("load", "load_sqlite_defaults", "save"):
        r = result[name]
        print(f"| {name} | {r['p50_ms']} | {r['p95_ms']} | {r['max_ms']} | {r['target_p95_ms']} | {r['met']} |")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {args.out}")
    if folder is not None:
        folder.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
