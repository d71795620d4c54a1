"""Small JSON files of one measured entry per model, written by a bench script's ``--record`` and read by cards.

A figure a card states about a shipped model that its report does not hold
(how often its intervals held the true value, :mod:`skin.ci_coverage`; how
much of an age model's tone gap is the age mix, :mod:`skin.age_mix`) is
measured by a bench script and recorded beside the code, one entry per model
reference (``default:clinical``): a figure belongs to the model whose answers
were measured, not to its task. Each file is
``{"schema_version": N, "models": {reference: entry}}``, an entry being a
frozen dataclass; the file stays small and diffable.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RecordFile:
    """Where one kind of record lives and how it is read: its ``path``, the dataclass of an ``entry``, the
    ``schema`` version, the ``command`` that regenerates it and what an entry is called in messages."""

    path: Path
    entry: type
    schema: int
    command: str
    what: str

    def at(self, path) -> RecordFile:
        """The same kind of record in another file (tests, a copy)."""
        return RecordFile(Path(path), self.entry, self.schema, self.command, self.what)

    def read(self) -> dict[str, Any]:
        """Every recorded model's entry, by model reference (``{}`` when the file does not exist)."""
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text())
        if data.get("schema_version") != self.schema:
            raise ValueError(f"{self.path}: {self.what} schema {data.get('schema_version')!r}, expected "
                             f"{self.schema}; regenerate it with {self.command}")
        return {model: self._entry(d) for model, d in data["models"].items()}

    def record(self, entry) -> None:
        """Write ``entry`` as its model's record (``entry.model``), keeping the other models'."""
        entries = {**self.read(), entry.model: entry}
        models = {m: {f.name: getattr(entries[m], f.name) for f in fields(self.entry)} for m in sorted(entries)}
        self.path.write_text(json.dumps({"schema_version": self.schema, "models": models}, indent=1) + "\n")
        _read_cached.cache_clear()

    def get(self, model: str):
        """``model``'s entry, or ``None``; the file is read once per process (re-read after :meth:`record`)."""
        return _read_cached(self).get(model)

    def _entry(self, d: dict):
        missing = [f.name for f in fields(self.entry) if f.name not in d]
        if missing:
            raise ValueError(f"a {self.what} entry lacks {', '.join(missing)}")
        return self.entry(**{f.name: d[f.name] for f in fields(self.entry)})


@functools.lru_cache(maxsize=8)
def _read_cached(records: RecordFile) -> dict[str, Any]:
    return records.read()
