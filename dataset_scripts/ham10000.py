"""HAM10000 (Tschandl et al. 2018): dermoscopy images of seven lesion classes.

Layout: ``HAM10000_metadata.csv`` (lesion_id, image_id, dx, dx_type, age, sex,
localization) and ``images/<image_id>.jpg``. Several images show the same
lesion, so ``lesion_id`` is the group id.
"""

from __future__ import annotations

import csv
import os

import datasets

from dataset_scripts._base import SkinImageBuilder
from skin.tasks import get_task

# DermaMNIST / ISIC order (alphabetical by code).
CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
#: the ``malignant`` column: the classes the task registry calls malignant (written there once)
MALIGNANT = frozenset(get_task("condition_ham10000").malignant)


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


class Ham10000(SkinImageBuilder):
    LAYOUT = "HAM10000_metadata.csv and images/ISIC_*.jpg"
    TITLE = "HAM10000"
    LICENSE = "CC BY-NC-SA 4.0 (non-commercial)"
    HUB_LICENSE = "cc-by-nc-sa-4.0"
    HOMEPAGE = "https://doi.org/10.7910/DVN/DBW86T"
    CITATION = """\
@article{tschandl2018ham10000,
    title = {The {HAM10000} dataset, a large collection of multi-source dermatoscopic images of common pigmented skin lesions},
    author = {Tschandl, Philipp and Rosendahl, Cliff and Kittler, Harald},
    journal = {Scientific Data},
    volume = {5},
    pages = {180161},
    year = {2018},
    doi = {10.1038/sdata.2018.161}
}
"""

    def _info(self):
        return self.dataset_info(
            {
                "image": datasets.Image(),
                "label": datasets.ClassLabel(names=CLASSES),
                "malignant": datasets.Value("bool"),
                "group_id": datasets.Value("string"),
                "image_id": datasets.Value("string"),
                "dx_type": datasets.Value("string"),
                "age": datasets.Value("float32"),
                "sex": datasets.Value("string"),
                "site": datasets.Value("string"),
            }
        )

    def scan(self):
        self.require("HAM10000_metadata.csv", "images")
        records, skipped = [], []
        with open(os.path.join(self.root, "HAM10000_metadata.csv"), newline="") as f:
            for row in csv.DictReader(f):
                path = os.path.join(self.root, "images", f"{row['image_id']}.jpg")
                if row["dx"] not in CLASSES:
                    skipped.append({"path": path, "reason": f"unknown dx {row['dx']!r}"})
                    continue
                records.append(
                    {
                        "image": path,
                        "label": row["dx"],
                        "malignant": row["dx"] in MALIGNANT,
                        "group_id": row["lesion_id"],
                        "image_id": row["image_id"],
                        "dx_type": row["dx_type"],
                        "age": _float_or_none(row["age"]),
                        "sex": row["sex"] or None,
                        "site": row["localization"] or None,
                    }
                )
        return records, skipped
