"""Kaggle "Skin Diseases Image Dataset": ten classes of clinical and dermoscopy photos.

Layout: ``IMG_CLASSES/<n>. <name> <count>/*.jpg`` with ten folders, e.g.
``1. Eczema 1677`` … ``10. Warts Molluscum and other Viral Infections - 2103``.
Pass either the folder that holds ``IMG_CLASSES`` or ``IMG_CLASSES`` itself.

Deliberate choices:

* Classes are ordered by the folder's number (``10`` after ``9``, not after
  ``1``) and named without the image count the publisher appended
  (``2. Melanoma 15.75k`` → ``Melanoma``); the names are fixed in ``CLASSES``
  and a folder whose name disagrees with its number is an error, so a renamed
  or re-numbered copy cannot silently shuffle the labels.
* **No patient or lesion ids exist**, so ``group_id`` is the file stem. This is
  a real limitation: the collection merges sources (several classes come from
  HAM10000 / ISIC, others from web atlases) and near-duplicate photos of one
  lesion or patient may fall into different splits, inflating test scores.
  Report results on this dataset with that caveat, or prefer datasets with
  patient ids (HAM10000, PAD-UFES-20, SCIN) for evaluation.
* Files that are not images by extension (``Thumbs.db``, ``.txt``) are skipped
  with a reason; hidden files (``.DS_Store``) are passed over silently.

No skin-tone labels exist for this dataset, so it has no tone-label columns
(the tone estimated from the pixels, ``tone_bucket_estimated``, is there).
"""

from __future__ import annotations

import os
import re

import datasets

from dataset_scripts._base import SkinImageBuilder

CLASSES = [
    "Eczema",
    "Melanoma",
    "Atopic Dermatitis",
    "Basal Cell Carcinoma (BCC)",
    "Melanocytic Nevi (NV)",
    "Benign Keratosis-like Lesions (BKL)",
    "Psoriasis pictures Lichen Planus and related diseases",
    "Seborrheic Keratoses and other Benign Tumors",
    "Tinea Ringworm Candidiasis and other Fungal Infections",
    "Warts Molluscum and other Viral Infections",
]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
ROOT_FOLDER = "IMG_CLASSES"

# "<n>. <name>[ -] <count>" where count is 1677, 15.75k, 2k …
_FOLDER_RE = re.compile(r"^\s*(?P<num>\d+)\.\s*(?P<name>.*?)(?:\s+-?\s*\d+(?:\.\d+)?[kK]?)?\s*$")


def parse_class_folder(folder: str) -> tuple[int, str] | None:
    """``"2. Melanoma 15.75k"`` → ``(2, "Melanoma")``; not numbered → ``None``."""
    m = _FOLDER_RE.match(folder)
    if not m or not m.group("name"):
        return None
    return int(m.group("num")), m.group("name").strip(" -")


class KaggleSkinDiseases(SkinImageBuilder):
    LAYOUT = (
        "IMG_CLASSES/<n>. <name> <count>/*.jpg with ten numbered class folders "
        "(pass the folder that holds IMG_CLASSES, or IMG_CLASSES itself)"
    )
    TITLE = "Kaggle Skin Diseases Image Dataset"
    LICENSE = "as published on Kaggle (its sources include HAM10000, CC BY-NC-SA 4.0)"
    HOMEPAGE = "https://www.kaggle.com/datasets/ismailpromus/skin-diseases-image-dataset"

    @property
    def classes_dir(self) -> str:
        """``<root>/IMG_CLASSES``, or the root when it already is that folder."""
        root = self.root
        nested = os.path.join(root, ROOT_FOLDER)
        if os.path.isdir(nested):
            return nested
        if os.path.basename(os.path.normpath(root)) == ROOT_FOLDER or self._class_folders(root):
            return root
        self.require(ROOT_FOLDER)  # raises with the layout
        return nested

    @staticmethod
    def _class_folders(path: str) -> list[tuple[int, str, str]]:
        """``(number, class name, folder)`` for each numbered sub-folder, by number."""
        found = []
        for entry in os.listdir(path):
            if os.path.isdir(os.path.join(path, entry)):
                parsed = parse_class_folder(entry)
                if parsed:
                    found.append((*parsed, entry))
        return sorted(found)

    def _info(self):
        return self.dataset_info(
            {
                "image": datasets.Image(),
                "label": datasets.ClassLabel(names=CLASSES),
                "group_id": datasets.Value("string"),
                "class_folder": datasets.Value("string"),
                "file_name": datasets.Value("string"),
            }
        )

    def scan(self):
        base = self.classes_dir
        folders = self._class_folders(base)
        if not folders:
            raise ValueError(f"{self.name}: no numbered class folders in {base!r}. Expected {self.LAYOUT}")
        records, skipped = [], []
        for number, name, folder in folders:
            folder_path = os.path.join(base, folder)
            if not 1 <= number <= len(CLASSES):
                skipped.append({"path": folder_path, "reason": f"unknown class folder number {number}"})
                continue
            expected = CLASSES[number - 1]
            if name.casefold() != expected.casefold():
                raise ValueError(
                    f"{self.name}: folder {folder!r} is numbered {number}, which is {expected!r} in this dataset, "
                    f"but is named {name!r}. Expected {self.LAYOUT}"
                )
            for dirpath, dirnames, filenames in os.walk(folder_path):
                dirnames.sort()
                for fname in sorted(filenames):
                    if fname.startswith("."):
                        continue
                    path = os.path.join(dirpath, fname)
                    stem, ext = os.path.splitext(fname)
                    if ext.lower() not in IMAGE_EXTENSIONS:
                        skipped.append({"path": path, "reason": f"not an image file ({ext or 'no extension'})"})
                        continue
                    records.append(
                        {
                            "image": path,
                            "label": expected,
                            "group_id": stem,
                            "class_folder": folder,
                            "file_name": fname,
                        }
                    )
        return records, skipped
