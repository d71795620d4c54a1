"""PAD-UFES-20 (Pacheco et al. 2020): smartphone photos of skin lesions with patient metadata.

Layout: ``metadata.csv`` (one row per image: patient_id, lesion_id, age,
gender, fitspatrick, region, diagnostic, img_id, ... 26 columns) and
``images/PAT_<patient>_<lesion>_<n>.png``. Six diagnoses, ``label`` in the
order ACK, BCC, MEL, NEV, SCC, SEK; BCC, MEL and SCC are ``malignant``.

Deliberate choices:

* **Only rows whose image exists are used.** A subset of the release (like the
  one in ``../shared/data``, 37 of 2,298 images) is expected, so missing
  images are not errors and are not listed one by one (that would bury the
  real problems): ``skipped`` gets one summary entry, path ``images/``,
  whose ``images`` key holds their count, so reports count every row. Image
  files that ``metadata.csv`` does not list are counted the same way.
  Unreadable images and unknown diagnoses are listed per file.
* **Skin tone** comes from the dataset's own, misspelled ``fitspatrick``
  column (floats such as ``"3.0"``, often empty): ``fitzpatrick`` 1-6 and
  ``tone_bucket`` via :func:`skin.tone.bucket_from_fitzpatrick`; empty or out of
  range → ``None`` (unknown), never guessed. ``monk`` is always ``None``.
* **Groups** are patients (``patient_id``): one patient's lesions never span
  two splits. Splits are stratified by diagnosis.
* Column names follow the HAM10000 builder (``sex``, ``site``, lower case) so
  the two lesion datasets share one schema; ``age`` is float32 for the same
  reason.
"""

from __future__ import annotations

import csv
import math
import os

import datasets

from dataset_scripts._base import TONE_FEATURES, SkinImageBuilder
from skin.tasks import get_task
from skin.tone import bucket_from_fitzpatrick

CLASSES = ["ACK", "BCC", "MEL", "NEV", "SCC", "SEK"]
#: the ``malignant`` column: the classes the task registry calls malignant (written there once)
MALIGNANT = frozenset(get_task("condition_pad_ufes20").malignant)


def parse_fitzpatrick(text: str | None) -> int | None:
    """``"3.0"`` → 3; empty, non-numeric, fractional or outside 1-6 → ``None``."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value) or value != int(value) or not 1 <= value <= 6:
        return None
    return int(value)


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _bool_or_none(text: str | None) -> bool | None:
    text = (text or "").strip().lower()
    return True if text == "true" else False if text == "false" else None


class PadUfes20(SkinImageBuilder):
    VERSION = datasets.Version("1.0.0")
    LAYOUT = "metadata.csv (PAD-UFES-20, with img_id and diagnostic columns) and images/PAT_*.png"
    TITLE = "PAD-UFES-20"
    LICENSE = "CC BY 4.0"
    HUB_LICENSE = "cc-by-4.0"
    HOMEPAGE = "https://data.mendeley.com/datasets/zr7vgbcyr2/1"
    CITATION = """\
@article{pacheco2020padufes20,
    title = {{PAD-UFES-20}: A skin lesion dataset composed of patient data and clinical images collected from smartphones},
    author = {Pacheco, Andre G. C. and Lima, Gustavo R. and Salomão, Amanda S. and others},
    journal = {Data in Brief},
    volume = {32},
    pages = {106221},
    year = {2020},
    doi = {10.1016/j.dib.2020.106221}
}
"""

    def _info(self):
        return self.dataset_info(
            {
                "image": datasets.Image(),
                "label": datasets.ClassLabel(names=CLASSES),
                "malignant": datasets.Value("bool"),
                "group_id": datasets.Value("string"),
                "lesion_id": datasets.Value("string"),
                "image_id": datasets.Value("string"),
                "biopsed": datasets.Value("bool"),
                "age": datasets.Value("float32"),
                "sex": datasets.Value("string"),
                "site": datasets.Value("string"),
                **TONE_FEATURES,
            }
        )

    def scan(self):
        self.require("metadata.csv", "images")
        image_dir = os.path.join(self.root, "images")
        present = set(os.listdir(image_dir))
        records, skipped = [], []
        n_missing = 0
        listed = set()
        with open(os.path.join(self.root, "metadata.csv"), newline="") as f:
            reader = csv.DictReader(f)
            lacking = sorted({"patient_id", "img_id", "diagnostic"} - set(reader.fieldnames or ()))
            if lacking:
                raise ValueError(
                    f"{self.name}: metadata.csv lacks column(s) {', '.join(lacking)}. Expected {self.LAYOUT}"
                )
            for row in reader:
                img_id = row["img_id"]
                listed.add(img_id)
                if img_id not in present:
                    n_missing += 1
                    continue
                path = os.path.join(image_dir, img_id)
                dx = row["diagnostic"]
                if dx not in CLASSES:
                    skipped.append({"path": path, "reason": f"unknown diagnostic {dx!r}"})
                    continue
                fst = parse_fitzpatrick(row.get("fitspatrick"))
                records.append(
                    {
                        "image": path,
                        "label": dx,
                        "malignant": dx in MALIGNANT,
                        "group_id": row["patient_id"],
                        "lesion_id": row.get("lesion_id") or None,
                        "image_id": img_id,
                        "biopsed": _bool_or_none(row.get("biopsed")),
                        "age": _float_or_none(row.get("age")),
                        "sex": (row.get("gender") or "").lower() or None,
                        "site": (row.get("region") or "").lower() or None,
                        "fitzpatrick": fst,
                        "monk": None,
                        "tone_bucket": bucket_from_fitzpatrick(fst),
                    }
                )
        summary_path = os.path.join(image_dir, "")
        if n_missing:
            skipped.append(
                {
                    "path": summary_path,
                    "reason": f"metadata rows with no image file ({n_missing} rows; a subset: only rows "
                    "whose image exists are used)",
                    "images": n_missing,
                }
            )
        unlisted = [n for n in present if n.lower().endswith(".png") and n not in listed]
        if unlisted:
            skipped.append(
                {"path": summary_path, "reason": f"image files not listed in metadata.csv ({len(unlisted)} of them)",
                 "images": len(unlisted)}
            )
        return records, skipped
