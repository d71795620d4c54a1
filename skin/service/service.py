"""The service the app calls: load the configured models, predict, abstain, explain, report status.

Models load lazily, once per process, and stay resident. A model that is
missing does not stop the app: :meth:`SkinLensService.status` says what is
missing and how to build it, and predicting with it raises
:class:`ModelUnavailable` naming the command.

* **Photo type** first (:mod:`skin.phototype`, :mod:`skin.service.routing`): each model answers
  only the photo types it reads; an ``out_of_scope`` picture reaches none. The
  caller can force the type (``photo_type=``). Without a photo-type model the
  gate is off and every model answers, as :meth:`SkinLensService.gate` says.
* **Abstention** (every task): the photo is of a type the model does not read, the photo fails the
  quality check, no face is
  found (face models), a face fills the photo (``refuse_faces`` models, see
  :mod:`skin.service.views`), or the calibrated confidence is below the
  model's threshold (:mod:`skin.service.readout`).
* **Skin tone** for the fairness card is estimated (ITA, three buckets of
  :mod:`skin.tone`) on the face crop when a face was found, else on the whole
  photo with the central lesion excluded (``lesion_photo=True``).
* **Explanations** are computed on exactly the model object that predicted, on
  exactly the ``pixel_values`` it saw, and drawn over that same input.
* **Concurrency.** One lock per model serialises its forward passes and
  explanations: Captum's hooks (Grad-CAM) are registered on the shared model
  and would otherwise capture a concurrent request's activations.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from skin.reports import to_jsonable
from skin.service.cache import FACE_DETECTOR, FaceFound, ForwardPass, PredictionCache, photo_key
from skin.service.cards import fairness_card, parse_bucket, read_report
from skin.service.config import AppConfig, ModelSpec, load_config
from skin.service.loading import LoadedModel, load_model, model_version, reference_problem
from skin.service.readout import explain_target, read_out, target_index
from skin.service.routing import (explanation_refusal, face_rule, gate_model_key, load_gate, out_of_scope_message,
                                  routing_reason)
from skin.service.views import blocking_problems, model_input_image, model_view, needs_face, photo_tone
from skin.phototype import PhotoType, parse_photo_type
from skin.tasks import TaskKind, get_task
from skin.uploads import LoadedImage, load_image

DISCLAIMER = ("**Not medical advice.** SkinLens is a research demo: it can be wrong, it has not been "
              "clinically validated, and it cannot diagnose anything. If a spot on your skin changes, bleeds, "
              "itches or worries you, see a doctor or dermatologist.")
BUILD_HINT = ("build the embedded default models with the commands in README.md, section 'Models' "
              "(python train.py --task condition_ham10000 ... / --task age_utkface ...), or point "
              "skinlens.yaml (or SKINLENS_CONFIG) at a trained checkpoint folder or Hub id")


class ModelUnavailable(ValueError):
    """A configured model cannot be loaded (not built, not downloaded, no safetensors)."""


class SkinLensService:
    """Predict, explain and fairness card for the configured models (thread-safe)."""

    def __init__(self, config: AppConfig | None = None):
        self.config = config or load_config()
        self._models: dict[str, LoadedModel] = {}
        self._errors: dict[str, str] = {}
        self._load_lock = threading.Lock()
        self._faithfulness: dict[str, dict[str, dict]] = {}
        self._versions: dict[str, str] = {}
        self.cache = PredictionCache(self.config.prediction_cache)
        self._gate, self._gate_problem = load_gate(self.config.phototype)
        self._gate_key = gate_model_key(self._gate, self.config.models)

    # ---------------- photo type ----------------

    def gate(self) -> dict:
        """``{"on": bool, "folder", "problem"}``: whether uploads are sorted by photo type before the models."""
        return {"on": self._gate is not None, "folder": self.config.phototype, "problem": self._gate_problem}

    def photo_type(self, image, photo_type: str | None = None, memo: dict | None = None) -> PhotoType:
        """The photo type PIL ``image`` is treated as: detected by the gate, or ``photo_type`` when given
        (one of :data:`skin.phototype.PHOTO_TYPES`). Gate off and none given: ``label`` is ``None``.
        ``memo``: the request's passes (:meth:`_forward`)."""
        forced = parse_photo_type(photo_type)
        if self._gate is None:
            return PhotoType(label=forced, overridden=forced is not None)
        if self._gate_key is not None and self.model_problem(self._gate_key) is None:
            # the gate reads that model's features: one forward pass serves the gate, then its prediction
            features = self._forward(self.model(self._gate_key), image, memo).gate_features
            return self._gate.from_features(features, forced)
        return self._gate.predict(image, forced)

    def _photo_type_of_upload(self, image, photo_type: str | None, memo: dict) -> PhotoType:
        """:meth:`photo_type`, then :func:`~skin.service.routing.face_rule` (a portrait with a background is
        a face photo), detecting the face at most once per photo."""
        kind = self.photo_type(image, photo_type, memo)
        if kind.out_of_scope and not kind.overridden:
            face = self._face(image, memo)
            kind = face_rule(kind, None if face is None else face.area / (image.width * image.height))
        return kind

    # ---------------- models ----------------
    def model_problem(self, key: str) -> str | None:
        """Why model ``key`` cannot be used, without loading it (``None`` = looks usable)."""
        spec = self._spec(key)
        if key in self._models:
            return None
        if key in self._errors:
            return self._errors[key]
        return reference_problem(spec, hub_offline=self.config.hub_offline)

    def status(self) -> dict[str, dict]:
        """``{key: {"task", "model", "available", "problem"}}`` for every configured model."""
        out = {}
        for key, spec in self.config.models.items():
            problem = self.model_problem(key)
            out[key] = {"task": spec.task, "model": spec.model, "title": spec.title, "input": spec.input,
                        "available": problem is None, "problem": problem,
                        "loaded": key in self._models}
        return out

    def _spec(self, key: str) -> ModelSpec:
        if key not in self.config.models:
            raise ValueError(f"unknown task {key!r}; this app is configured for: {', '.join(self.config.models)}")
        return self.config.models[key]

    def model(self, key: str) -> LoadedModel:
        """The loaded model ``key`` (loaded on first use, then resident)."""
        self._spec(key)
        if key not in self._models:
            with self._load_lock:
                if key not in self._models:
                    self._models[key] = self._load(key)
        return self._models[key]

    def _load(self, key: str) -> LoadedModel:
        """Load model ``key``, or raise :class:`ModelUnavailable` and remember why it failed."""
        spec = self._spec(key)
        problem = self.model_problem(key)
        if problem:
            raise ModelUnavailable(f"{problem}. To fix: {BUILD_HINT}")
        try:
            return load_model(spec, hub_offline=self.config.hub_offline)
        except (ValueError, OSError) as e:
            self._errors[key] = f"model '{key}' ({spec.model}) failed to load: {e}"
            raise ModelUnavailable(f"{self._errors[key]}. To fix: {BUILD_HINT}") from e

    def load_all(self) -> dict[str, str | None]:
        """Load every available model now (e.g. at start-up); ``{key: problem or None}``."""
        out = {}
        for key in self.config.models:
            try:
                self.model(key)
                out[key] = None
            except ModelUnavailable as e:
                out[key] = str(e)
        return out

    def warm_up(self) -> None:
        """Load every model and run each once on a synthetic photo, in the order a first request needs them.

        The photo-type gate first (every upload runs it), then the face
        detector and the photo checks, then each model loaded and run before
        the next is loaded, in the configuration's order: a request arriving
        mid-way finds what it needs ready as early as possible instead of
        waiting behind models it may not use. :meth:`status` reports missing models.
        """
        import torch
        from PIL import Image

        from skin.quality import check_quality
        from skin.tone import estimate_tone

        # A flat synthetic photo fails the quality check, so predict() would stop before the models:
        # run the gate, the face detector, the photo checks and each model on it directly instead.
        photo = Image.new("RGB", (320, 320), (186, 140, 118))
        if self._gate is not None:
            self.photo_type(photo)  # loads and runs the model whose features the gate reads, when it reads one
        if any(needs_face(spec) for spec in self.config.models.values()):
            self._face(photo, {})
        check_quality(photo)
        estimate_tone(photo, lesion_photo=True)
        for key in self.config.models:
            try:
                lm = self.model(key)
            except ModelUnavailable:
                continue
            with lm.lock, torch.inference_mode():
                lm.model(pixel_values=lm.pixel_values(photo))

    # ---------------- inputs ----------------
    def load_upload(self, path_or_bytes) -> LoadedImage:
        """Decode an upload safely (:func:`skin.uploads.load_image` with the configured limits)."""
        return load_image(path_or_bytes, max_bytes=self.config.max_upload_bytes, max_pixels=self.config.max_pixels)

    def _as_loaded(self, image) -> LoadedImage:
        from PIL import Image

        if isinstance(image, LoadedImage):
            return image
        if isinstance(image, Image.Image):
            rgb = image.convert("RGB")
            return LoadedImage(rgb, None, rgb.size, image.mode, [])
        return self.load_upload(image)

    def _face(self, image, memo: dict):
        """The photo's largest face (:func:`skin.faces.largest_face`), detected at most once per request
        (``memo``) and kept with the photo's forward passes (Explain after Predict does not detect again)."""
        from skin.faces import largest_face

        if "face" not in memo:
            key = photo_key(FACE_DETECTOR, image)
            if (hit := self.cache.get(key)) is None:
                self.cache.put(key, hit := FaceFound(largest_face(image)))
            memo["face"] = hit.face
        return memo["face"]

    def _model_view(self, spec: ModelSpec, image, memo: dict, kind: PhotoType | None = None):
        """:func:`~skin.service.views.model_view` for a photo of type ``kind``, the face detected at most once."""
        face = self._face(image, memo) if needs_face(spec, kind) else None
        return model_view(spec, image, face, kind)

    # ---------------- predict ----------------
    def _forward(self, lm: LoadedModel, view, memo: dict | None = None) -> ForwardPass:
        """Model ``lm`` on the picture ``view``, or the same photo's cached pass (see :mod:`skin.service.cache`).

        For timm CNNs the forward pass also records the feature map Grad-CAM
        reads, so Grad-CAM after Predict needs only a backward pass through
        the classifier head. ``memo`` (one request's dict, as for the face)
        keeps the pass for the rest of the request whatever the cache's size:
        the photo-type gate reads the condition model's features, and the
        condition answer then reuses that pass even with the cache off.
        """
        import torch

        from skin.features import capture_features
        from skin.phototype_features import concat, pooled_stages

        rgb = view if view.mode == "RGB" else view.convert("RGB")
        key = photo_key(lm.spec.key, rgb)
        hit = (memo or {}).get(key) or self.cache.get(key)
        if hit is None:
            x = lm.pixel_values(rgb)
            stages = self._gate.stages if lm.spec.key == self._gate_key else ()
            with lm.lock, torch.inference_mode(), capture_features(lm.model) as store, \
                    pooled_stages(lm.model, stages) as pooled:
                logits = lm.model(pixel_values=x).logits
            probs = torch.softmax(logits.float(), dim=-1)[0].cpu().numpy()
            hit = ForwardPass(probs, x, store.get("features"), concat(pooled, stages) if stages else None)
            self.cache.put(key, hit)
        if memo is not None:
            memo[key] = hit
        return hit._replace(probs=hit.probs.copy())

    def predict(self, image, photo_type: str | None = None) -> dict:
        """Predictions for every configured model, with photo type, quality check and tone bucket.

        ``image``: a path or bytes of an upload (validated), a
        :class:`~skin.uploads.LoadedImage` or a PIL image. ``photo_type``:
        force the photo type (one of :data:`skin.phototype.PHOTO_TYPES`;
        ``None``, ``""`` or ``"auto"`` = detect it). Raises
        :class:`~skin.uploads.UploadError` for unusable files and
        :class:`ModelUnavailable` when no configured model can be used.
        """
        from skin.quality import check_quality

        parse_photo_type(photo_type)  # a wrong value is refused before any work
        loaded = self._as_loaded(image)
        img = loaded.image
        memo: dict = {}
        kind = self._photo_type_of_upload(img, photo_type, memo)
        quality = to_jsonable(check_quality(img))
        problems = quality.get("problems") or []
        status = self.status()
        if not any(s["available"] for s in status.values()):
            missing = "; ".join(s["problem"] for s in status.values())
            raise ModelUnavailable(f"no model is available: {missing}. To fix: {BUILD_HINT}")
        tasks = {key: self._predict_one(spec, img, status[key], quality, memo, kind)
                 for key, spec in self.config.models.items()}
        face = memo.get("face")
        return {
            "disclaimer": "Not medical advice. A research demo; see a doctor about any skin concern.",
            "image": loaded.summary(),
            "photo_type": {**kind.to_dict(), "gate": "on" if self._gate is not None else "off",
                           "message": out_of_scope_message(kind) if kind.out_of_scope else None},
            "quality": quality,
            "tips": [p.get("tip") for p in problems if isinstance(p, dict) and p.get("tip")],
            "tone": photo_tone(img, face),
            "face": None if "face" not in memo else {"found": face is not None,
                                                      "box": to_jsonable(face) if face is not None else None},
            "tasks": tasks,
        }

    def _predict_one(self, spec: ModelSpec, img, status: dict, quality: dict, memo: dict,
                     kind: PhotoType) -> dict:
        """The entry of one model in :meth:`predict`'s ``tasks``: its answer, or why it abstained."""
        entry: dict[str, Any] = {"task": spec.task, "title": spec.title, "model": spec.model,
                                 "input": spec.input, "photo_types": list(spec.photo_types),
                                 "threshold": spec.abstain_below,
                                 "abstained": False, "reason": None}
        if not status["available"]:
            entry.update(status="unavailable", abstained=True, reason=status["problem"])
            return entry
        refusal = routing_reason(spec, kind)
        if refusal:
            entry.update(status="abstain", abstained=True, reason=refusal)
            return entry
        blocking = blocking_problems(spec, quality.get("problems") or [])
        if blocking:
            msgs = "; ".join(str(p.get("message", p)) for p in blocking)
            entry.update(status="abstain", abstained=True, reason=f"photo quality: {msgs}")
            return entry
        view, reason = self._model_view(spec, img, memo, kind)
        if view is None:
            entry.update(status="abstain", abstained=True, reason=reason)
            return entry
        try:
            lm = self.model(spec.key)
        except ModelUnavailable as e:
            entry.update(status="unavailable", abstained=True, reason=str(e))
            return entry
        entry.update(self._read_out(lm, self._forward(lm, view, memo).probs))
        entry["status"] = "abstain" if entry["abstained"] else "ok"
        return entry

    def scores(self, image, kind: PhotoType | None = None) -> dict[str, float]:
        """The history's scores of a photo (:mod:`skin.history.scores`): every class probability, the
        malignant sum and the age estimate of each model that reads it as Predict does: routed to it
        by the photo type (``kind``, or detected), available, and not refusing the picture (a portrait
        for a close-up model). The history scores what the app would answer, never a model whose answer
        Predict withholds. No quality check: the history records the flags beside them."""
        from skin.history.scores import model_scores

        img = self._as_loaded(image).image
        memo: dict = {}
        if kind is None:
            kind = self._photo_type_of_upload(img, None, memo)
        out: dict[str, float] = {}
        for key, spec in self.config.models.items():
            if routing_reason(spec, kind) or self.model_problem(key) is not None:
                continue
            view, _ = self._model_view(spec, img, memo, kind)
            if view is None:
                continue
            lm = self.model(key)
            probs = self._forward(lm, view, memo).probs
            out.update(model_scores(key, lm.labels, probs, age=lm.kind is TaskKind.AGE,
                                    malignant=get_task(spec.task).malignant))
        return out

    def _read_out(self, lm: LoadedModel, probs: np.ndarray) -> dict:
        """:func:`~skin.service.readout.read_out` with model ``lm``'s labels and threshold, and its task's
        class names and malignant classes."""
        task = get_task(lm.spec.task)
        return read_out(probs, lm.labels, age=lm.kind is TaskKind.AGE, top_k=self.config.top_k,
                        abstain_below=lm.spec.abstain_below, names=task.label_names, malignant=task.malignant)

    # ---------------- explain ----------------
    def faithfulness(self, key: str | None = None) -> dict[str, dict]:
        """``{method: {"text", "score", ...}}`` measured on model ``key`` (default: the first configured
        model; :func:`skin.explain.faithfulness.model_faithfulness`), or "not measured"."""
        from skin.explain.faithfulness import faithfulness_summary, model_faithfulness

        key = key or next(iter(self.config.models))
        if key not in self._faithfulness:
            report = model_faithfulness(self._spec(key).model) if self.model_problem(key) is None else None
            self._faithfulness[key] = faithfulness_summary(report)
        return self._faithfulness[key]

    def method_choices(self, key: str | None = None) -> list[tuple[str, str]]:
        """The method picker's (label, method) pairs with the faithfulness of model ``key``."""
        from skin.explain.faithfulness import picker_choices

        return picker_choices(self.faithfulness(key))

    def model_version(self, key: str) -> str:
        """The fingerprint of model ``key`` a history entry keeps (:func:`skin.service.loading.model_version`)."""
        if key not in self._versions:
            self._versions[key] = model_version(self._spec(key))
        return self._versions[key]

    def labels(self, key: str) -> list[str]:
        """Class labels of model ``key`` (loads it)."""
        return list(self.model(key).labels)

    def label_choices(self, key: str) -> list[tuple[str, str]]:
        """``(readable name, label)`` of each class of model ``key``, for a picker (the label where the task
        names none, e.g. the ages)."""
        names = get_task(self._spec(key).task).label_names
        return [(names.get(label, label), label) for label in self.labels(key)]

    def explain(self, image, key: str, method: str = "gradcam", target: str | int | None = None,
                photo_type: str | None = None):
        """``(overlay PIL image, info dict)`` for model ``key``'s prediction on ``image``.

        ``target``: a class label or index of that model; ``None`` / ``""`` =
        the answer given: the predicted class, or the age model's estimate
        (:func:`~skin.service.readout.explain_target`). The map is drawn over the model's own input.
        ``photo_type``: as for :meth:`predict` (``None`` = detect it, from
        the passes Predict cached). A model that does not read photos of
        that type is refused as in Predict: its answer there was withheld, so
        a heatmap of it would show the answer the app declined to give.
        """
        from skin.explain import METHODS, explain, overlay

        if method not in METHODS:
            raise ValueError(f"unknown explanation method {method!r}; choose one of: {', '.join(METHODS)}")
        spec = self._spec(key)
        forced = parse_photo_type(photo_type)  # a wrong value is refused before any work
        loaded = self._as_loaded(image)
        memo: dict = {}
        kind = self._photo_type_of_upload(loaded.image, forced, memo)  # from the cached passes after Predict
        refusal = explanation_refusal(spec, kind, self.config.models.values())
        if refusal:
            raise ValueError(refusal)
        lm = self.model(key)
        view, reason = self._model_view(spec, loaded.image, memo, kind)
        if view is None:
            raise ValueError(f"cannot explain the {key} model on this photo: {reason}")
        names = get_task(spec.task).label_names
        target_idx = target_index(lm.labels, key, target, names)
        probs, x, features, _ = self._forward(lm, view, memo)  # the gate may have run this very pass
        options = {"features": features} if method == "gradcam" and features is not None else {}
        goal = explain_target(lm.labels, probs, target_idx, names, age=lm.kind is TaskKind.AGE)
        with lm.lock:
            exp = explain(lm.model, x, target=goal.index, method=method, readout=goal.readout, **options)
        # blended at the model's own resolution, then shown at >= 384 px with a readable legend
        picture = overlay(model_input_image(x, lm.processor, min_side=0), exp.attribution, label=goal.legend,
                          min_side=384)
        info = {
            "task": key, "method": method, "target": goal.label, "target_name": goal.name,
            "target_index": None if goal.readout is not None else goal.index,
            "target_probability": goal.probability, "predicted": lm.labels[int(np.argmax(probs))],
            "seconds": round(float(exp.seconds), 3), "signed": bool(exp.signed),
            "faithfulness": self.faithfulness(key)[method],
            "input_size": list(x.shape[-2:]),
            "note": "heatmap over the exact picture the model read (after its resize/crop); red = parts that "
                    f"{goal.raised}{'; blue = parts that lowered it' if exp.signed else ''}",
            "image_notes": loaded.notes,
        }
        return picture, info

    # ---------------- fairness card ----------------
    def fairness(self, key: str, tone_bucket: str | None = None) -> dict:
        """The fairness card of model ``key`` (:mod:`skin.service.cards`), highlighting ``tone_bucket``."""
        spec = self._spec(key)
        bucket = parse_bucket(tone_bucket)
        problem = self.model_problem(key)
        report, problem = read_report(spec) if problem is None else (None, problem)
        return fairness_card(spec, get_task(spec.task), report, bucket=bucket, problem=problem,
                             model_card_url=self.config.model_card_url)
