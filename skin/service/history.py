"""The app's history endpoints on one store: save an analysis, list, delete, export, compare.

Every method takes the signed-in user as its first argument; the app takes it
from the request (``gr.Request.username``), never from what a client sends,
and without a signed-in user each method raises :class:`SignInRequired`.
An entry is scored by :meth:`SkinLensService.scores` (every class
probability, the malignant sum, the age estimate of each model that reads the
photo's type, as in Predict), with the test-retest noise of each score
measured on variations of the same photo read as the same type
(:func:`skin.history.verdict.retest_noise`). A photo no model reads is refused.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from skin.history.scores import score_model
from skin.history.store import HistoryStore, NewEntry
from skin.history.trends import HistoryTab, history_tab
from skin.history.verdict import TONE_READING, compare, retest_noise
from skin.phototype import PhotoType
from skin.service.views import tone_version

#: Seconds an export's temporary files are kept (the app's own copies; Gradio serves its copy of them).
EXPORT_TTL_S = 120
SIGN_IN = "sign in to keep a history: this SkinLens has no signed-in user for this request"


class SignInRequired(ValueError):
    """A history endpoint was called without a signed-in user."""


def _user(user: str | None) -> str:
    if not user:
        raise SignInRequired(SIGN_IN)
    return user


@dataclass(frozen=True)
class HeatmapPair:
    """The explanation heatmaps of two entries' kept photos by one model, oldest entry first; ``None``
    images with ``reason`` when they cannot be drawn (a photo not kept, no model scored both)."""

    model: str | None
    images: tuple[object | None, object | None]
    reason: str = ""


class HistoryService:
    """The history of the signed-in users of one :class:`~skin.service.SkinLensService`."""

    def __init__(self, service, store: HistoryStore | None = None):
        self.service = service
        self.store = store or HistoryStore()
        self._exports: list[tuple[float, Path]] = []
        self._exports_lock = threading.Lock()

    def analyse(self, image, *, note: str = "", keep_photo: bool = False, photo_type: str | None = None) -> NewEntry:
        """The entry of one photo: scores, their noise, photo type, tone bucket, quality flags.
        ``photo_type``: as for :meth:`SkinLensService.predict` (``None`` = detect it)."""
        loaded = self.service.load_upload(image) if isinstance(image, (str, bytes, Path)) else image
        result = self.service.predict(loaded, photo_type)
        kind = PhotoType.from_dict(result["photo_type"])  # the type Predict read it as, not found again
        scores = self.service.scores(loaded, kind)
        if not scores:
            why = (result["photo_type"].get("message")
                   or "; ".join(f"{t['title']}: {t['reason']}" for t in result["tasks"].values()))
            raise ValueError(f"nothing to keep: no model reads this photo ({why})")
        # the variations are read as the same type of photo: a retake is compared under one routing
        noise = retest_noise(lambda variant: self.service.scores(variant, kind), loaded.image, first=scores)
        face = result.get("face") or {}
        photo = None
        if keep_photo:
            buffer = io.BytesIO()
            loaded.image.save(buffer, "JPEG", quality=90)
            photo = buffer.getvalue()
        scored = sorted({score_model(name) for name in scores})
        return NewEntry(scores=scores, noise=noise, photo_type="face" if face.get("found") else "closeup",
                        tone_bucket=(result.get("tone") or {}).get("bucket"),
                        quality_flags=tuple(p["code"] for p in result["quality"].get("problems") or []),
                        note=str(note or ""), photo=photo,
                        models={**{key: self.service.model_version(key) for key in scored},
                                TONE_READING: tone_version()})

    def save(self, user: str | None, image, note: str = "", keep_photo: bool = False,
             photo_type: str | None = None) -> dict:
        """``{"id", "saved_at"}`` once the entry is committed."""
        user = _user(user)
        saved = self.store.save(user, self.analyse(image, note=note, keep_photo=keep_photo, photo_type=photo_type))
        return {"id": saved.id, "saved_at": saved.saved_at.isoformat()}

    def entries(self, user: str | None) -> dict:
        """``{"entries": [...], "trends": {...}}``, newest first, the user's only."""
        listed = self.store.list(_user(user))
        tab = history_tab(listed)
        return {"entries": [e.to_dict() for e in listed],
                "trends": {name: vars(series) for name, series in tab.trends.items()}}

    def tab(self, user: str | None) -> HistoryTab:
        """The history tab's table rows and trend series of ``user``'s entries."""
        return history_tab(self.store.list(_user(user)))

    def delete(self, user: str | None, entry_id: str) -> dict:
        if not entry_id:
            raise ValueError('name the entry to delete: its id, or "all"')
        return {"deleted": self.store.delete(_user(user), entry_id)}

    def _export_folder(self) -> Path:
        """A new temporary folder for one export; this service's exports older than :data:`EXPORT_TTL_S`
        are deleted first (Gradio serves its own copy of a returned file, so ours is not needed after)."""
        now = time.monotonic()
        with self._exports_lock:
            for made, folder in [x for x in self._exports if now - x[0] > EXPORT_TTL_S]:
                shutil.rmtree(folder, ignore_errors=True)
                self._exports.remove((made, folder))
            folder = Path(tempfile.mkdtemp(prefix="skinlens-export-"))
            self._exports.append((now, folder))
        return folder

    def export(self, user: str | None) -> str:
        """A zip (``history.json`` with kept photos, ``history.csv``) in a temporary folder; its path."""
        exported = self.store.export(_user(user))
        path = self._export_folder() / "skinlens-history.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("history.json", exported.json)
            zf.writestr("history.csv", exported.csv)
        return str(path)

    def export_files(self, user: str | None) -> list[str]:
        """``[history.json, history.csv]`` written to a new temporary folder (the page's download)."""
        exported = self.store.export(_user(user))
        folder = self._export_folder()
        (folder / "skinlens-history.json").write_text(exported.json, encoding="utf-8")
        (folder / "skinlens-history.csv").write_text(exported.csv, encoding="utf-8")
        return [str(folder / "skinlens-history.json"), str(folder / "skinlens-history.csv")]

    def _pair(self, user: str | None, id_a: str, id_b: str) -> list:
        user = _user(user)
        found = [self.store.get(user, i) for i in (id_a, id_b)]
        missing = [i for i, e in zip((id_a, id_b), found, strict=True) if e is None]
        if missing:
            raise ValueError(f"no entry {', '.join(map(repr, missing))} in your history")
        return found

    def compare(self, user: str | None, id_a: str, id_b: str) -> dict:
        return compare(self._pair(user, id_a, id_b)).to_dict()

    def heatmaps(self, user: str | None, id_a: str, id_b: str, method: str = "gradcam") -> HeatmapPair:
        """Explanation heatmaps of both entries' kept photos, side by side, by the first configured model
        that scored both (the service's own explain path, Grad-CAM by default)."""
        pair = sorted(self._pair(user, id_a, id_b), key=lambda e: e.saved_at)
        if not all(e.has_photo for e in pair):
            return HeatmapPair(None, (None, None), "heatmaps need both photos kept (tick \"keep this photo\" "
                                                   "when saving)")
        key = next((k for k in self.service.config.models
                    if all(any(score_model(n) == k for n in e.scores) for e in pair)), None)
        if key is None:
            return HeatmapPair(None, (None, None), "no model scored both photos")
        try:
            images = tuple(self.service.explain(self.service.load_upload(e.photo), key, method)[0] for e in pair)
        except ValueError as e:  # e.g. a kept photo now read as another type: the verdicts still stand
            return HeatmapPair(None, (None, None), f"no heatmaps: {e}")
        return HeatmapPair(key, images)
