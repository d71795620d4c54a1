"""The app's history endpoints on one store: save an analysis, list, delete, export, compare.

Every method takes the signed-in user as its first argument; the app takes it
from the request (``gr.Request.username``), never from what a client sends,
and without a signed-in user each method raises :class:`SignInRequired`.
An entry is scored by :meth:`SkinLensService.scores` (every class
probability, the malignant sum, the age estimate), with the test-retest noise
of each score measured on the same photo (:func:`skin.history.verdict.retest_noise`).
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

from skin.history.store import HistoryStore, NewEntry
from skin.history.trends import history_tab
from skin.history.verdict import compare, retest_noise

SIGN_IN = "sign in to keep a history: this SkinLens has no signed-in user for this request"


class SignInRequired(ValueError):
    """A history endpoint was called without a signed-in user."""


def _user(user: str | None) -> str:
    if not user:
        raise SignInRequired(SIGN_IN)
    return user


class HistoryService:
    """The history of the signed-in users of one :class:`~skin.service.SkinLensService`."""

    def __init__(self, service, store: HistoryStore | None = None):
        self.service = service
        self.store = store or HistoryStore()

    def analyse(self, image, *, note: str = "", keep_photo: bool = False) -> NewEntry:
        """The entry of one photo: scores, their noise, photo type, tone bucket, quality flags."""
        loaded = self.service.load_upload(image) if isinstance(image, (str, bytes, Path)) else image
        result = self.service.predict(loaded)
        scores = self.service.scores(loaded)
        noise = retest_noise(self.service.scores, loaded.image, first=scores) if scores else {}
        face = result.get("face") or {}
        photo = None
        if keep_photo:
            buffer = io.BytesIO()
            loaded.image.save(buffer, "JPEG", quality=90)
            photo = buffer.getvalue()
        return NewEntry(scores=scores, noise=noise, photo_type="face" if face.get("found") else "closeup",
                        tone_bucket=(result.get("tone") or {}).get("bucket"),
                        quality_flags=tuple(p["code"] for p in result["quality"].get("problems") or []),
                        note=str(note or ""), photo=photo)

    def save(self, user: str | None, image, note: str = "", keep_photo: bool = False) -> dict:
        """``{"id", "saved_at"}`` once the entry is committed."""
        user = _user(user)
        saved = self.store.save(user, self.analyse(image, note=note, keep_photo=keep_photo))
        return {"id": saved.id, "saved_at": saved.saved_at.isoformat()}

    def entries(self, user: str | None) -> dict:
        """``{"entries": [...], "trends": {...}}``, newest first, the user's only."""
        listed = self.store.list(_user(user))
        tab = history_tab(listed)
        return {"entries": [e.to_dict() for e in listed],
                "trends": {name: vars(series) for name, series in tab.trends.items()}}

    def delete(self, user: str | None, entry_id: str) -> dict:
        if not entry_id:
            raise ValueError('name the entry to delete: its id, or "all"')
        return {"deleted": self.store.delete(_user(user), entry_id)}

    def export(self, user: str | None) -> str:
        """A zip (``history.json`` with kept photos, ``history.csv``) in a temporary folder; its path."""
        exported = self.store.export(_user(user))
        path = Path(tempfile.mkdtemp(prefix="skinlens-export-")) / "skinlens-history.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("history.json", exported.json)
            zf.writestr("history.csv", exported.csv)
        return str(path)

    def compare(self, user: str | None, id_a: str, id_b: str) -> dict:
        user = _user(user)
        found = [self.store.get(user, i) for i in (id_a, id_b)]
        missing = [i for i, e in zip((id_a, id_b), found, strict=True) if e is None]
        if missing:
            raise ValueError(f"no entry {', '.join(map(repr, missing))} in your history")
        return compare(found).to_dict()
