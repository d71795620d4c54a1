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

from skin.phototype import OUT_OF_SCOPE, PHOTO_TYPE_NAMES, SKIN_PHOTO_TYPES, PhotoType
from skin.service.config import ModelSpec

HOW_TO = ("To get an answer, upload a sharp close-up of the skin spot in daylight, filling most of the picture, "
          "or a face looking at the camera. Not right? Choose the photo type yourself")


def _seen_as(kind: PhotoType) -> str:
    """"this looks like a face photo (portrait, 93 %)" or "you chose: face photo (portrait)"."""
    name = PHOTO_TYPE_NAMES[kind.label]
    if kind.overridden:
        return f"you chose the photo type '{name}'"
    pct = f", {kind.probability:.0%}" if kind.probability is not None else ""
    return f"this looks like a {name} ({kind.label}{pct})"


def out_of_scope_message(kind: PhotoType) -> str:
    """The answer every task gives to an ``out_of_scope`` picture."""
    readable = ", ".join(PHOTO_TYPE_NAMES[t] for t in SKIN_PHOTO_TYPES)
    why = "you chose 'not a photo of skin'" if kind.overridden else _seen_as(kind)
    return f"this does not look like a photo of skin ({why}). SkinLens reads: {readable}. {HOW_TO}."


def routing_reason(spec: ModelSpec, kind: PhotoType) -> str | None:
    """Why model ``spec`` does not answer a photo of type ``kind``, or ``None`` when it does."""
    if kind.label is None or spec.accepts(kind.label):
        return None
    if kind.label == OUT_OF_SCOPE:
        return out_of_scope_message(kind)
    reads = ", ".join(PHOTO_TYPE_NAMES[t] for t in spec.photo_types)
    return (f"{_seen_as(kind)}; the model '{spec.title}' answers only: {reads}. "
            "Not right? Choose the photo type yourself")
