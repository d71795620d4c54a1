"""Which models answer a photo, by its photo type (:mod:`skin.phototype`), and what the others say instead.

A model answers only the photo types of its ``photo_types`` (``skinlens.yaml``,
:class:`~skin.service.config.ModelSpec`); for any other type it abstains with a
reason that names the type the photo was taken for and what the model reads.
An ``out_of_scope`` picture reaches no model: every task gets the same
message, saying what the app can read and how to take such a photo. With the
gate off (no photo-type model, no type chosen) every model answers, as before
the gate existed.
"""

from __future__ import annotations

from dataclasses import replace

from skin.phototype import OUT_OF_SCOPE, PHOTO_TYPE_NAMES, SKIN_PHOTO_TYPES, PhotoType, PhotoTypeGate
from skin.service.config import PORTRAIT_FACE_FRACTION, ModelSpec

HOW_TO = ("To get an answer, upload a sharp close-up of the skin spot in daylight, filling most of the picture, "
          "or a face looking at the camera. Not right? Choose the photo type yourself")


FACE_RULE = "face detector"


def load_gate(folder) -> tuple[PhotoTypeGate | None, str | None]:
    """The photo-type model in ``folder`` (its small classifier now, its backbone on first use), or why
    there is none (``folder`` ``None``: turned off in the configuration)."""
    if folder is None:
        return None, "the photo-type gate is turned off in the configuration (phototype: off)"
    try:
        return PhotoTypeGate(folder), None
    except ValueError as e:
        return None, str(e)


def gate_model_key(gate: PhotoTypeGate | None, models: dict[str, ModelSpec]) -> str | None:
    """The configured model whose features ``gate`` reads (its forward pass then serves the gate and the
    prediction), or ``None``: the gate runs its own network (also when that model is not configured here)."""
    ref = gate.features_of if gate is not None else None
    return next((key for key, spec in models.items() if ref is not None and spec.model == ref), None)


def face_rule(kind: PhotoType, face_share: float | None) -> PhotoType:
    """A picture the classifier calls ``out_of_scope`` in which the face detector finds a face covering at
    least :data:`~skin.service.config.PORTRAIT_FACE_FRACTION` of it is a face photo.

    The classifier learnt faces from UTKFace's tight crops, so a real portrait with a background can
    look out of scope to it (measured on the package portraits: models/README.md, "Photo type"); the
    face detector knows faces in scenes. Only ``out_of_scope`` is changed, and never a type the user chose.
    """
    if kind.label != OUT_OF_SCOPE or kind.overridden or face_share is None or face_share < PORTRAIT_FACE_FRACTION:
        return kind
    return replace(kind, label="face", rule=FACE_RULE)


def _seen_as(kind: PhotoType) -> str:
    """"this looks like a face photo (photo-type model: 93%)" or "you chose the photo type 'face photo'"
    (in words a visitor reads: the type's name, not its code)."""
    name = PHOTO_TYPE_NAMES[kind.label]
    if kind.overridden:
        return f"you chose the photo type '{name}'"
    if kind.rule:
        return f"this looks like a {name} (found by the {kind.rule})"
    pct = f" (photo-type model: {kind.probability:.0%})" if kind.probability is not None else ""
    article = "an" if name[0] in "aeiou" else "a"
    return f"this looks like {article} {name}{pct}"


def out_of_scope_message(kind: PhotoType) -> str:
    """The answer every task gives to an ``out_of_scope`` picture."""
    readable = ", ".join(PHOTO_TYPE_NAMES[t] for t in SKIN_PHOTO_TYPES)
    if kind.overridden:
        why = " (you chose 'not a photo of skin')"
    else:
        why = f" (photo-type model: {kind.probability:.0%})" if kind.probability is not None else ""
    return f"this does not look like a photo of skin{why}. SkinLens reads: {readable}. {HOW_TO}"


def routing_reason(spec: ModelSpec, kind: PhotoType) -> str | None:
    """Why model ``spec`` does not answer a photo of type ``kind``, or ``None`` when it does."""
    if kind.label is None or spec.accepts(kind.label):
        return None
    if kind.label == OUT_OF_SCOPE:
        return out_of_scope_message(kind)
    reads = ", ".join(PHOTO_TYPE_NAMES[t] for t in spec.photo_types)
    return (f"{_seen_as(kind)}; the model '{spec.title}' answers only: {reads}. "
            "Not right? Choose the photo type yourself")


def explanation_refusal(spec: ModelSpec, kind: PhotoType, models) -> str | None:
    """Why Explain will not draw model ``spec``'s heatmap of a photo of type ``kind`` (its Predict answer
    was withheld for that type), naming the configured ``models`` that read it; ``None`` when it will."""
    refusal = routing_reason(spec, kind)
    if refusal is None:
        return None
    readers = [m.title for m in models if m.accepts(kind.label)]
    return f"no explanation: {refusal}" + (f"; models that read it: {', '.join(readers)}" if readers else "")
