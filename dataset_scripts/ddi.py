"""DDI, Diverse Dermatology Images (Daneshjou et al. 2022): biopsy-proven lesions across skin tones.

Layout: ``ddi_metadata.csv`` with columns ``DDI_ID, DDI_file, skin_tone,
malignant, disease`` (a leading unnamed index column, as pandas writes it, is
tolerated) and ``images/<DDI_file>`` (PNG).

Deliberate choices:

* **Skin tone is published only as Fitzpatrick pairs**: ``skin_tone`` 12, 34,
  56 → ``fst_group`` "I-II", "III-IV", "V-VI" and ``tone_bucket`` light,
  medium, dark (the same grouping as :mod:`skin.tone`). ``fitzpatrick`` stays
  ``None`` because the single type is not known; ``monk`` is ``None``.
  Any other ``skin_tone`` value skips the row, with the reason.
* ``malignant`` is read from TRUE/FALSE in any letter case; ``label`` is
  ``ClassLabel(["benign", "malignant"])`` and ``disease`` keeps the
  fine-grained diagnosis string.
* **Groups.** DDI publishes no patient ids, so the group id is ``DDI_ID``
  (one group per image); images of one patient may land in two splits.
* Splits are stratified by label x tone pair, so every split keeps the
  dataset's balance of tones, which is what DDI is used for (per-tone
  evaluation).
"""

from __future__ import annotations

import csv
import os

import datasets

from dataset_scripts._base import TONE_FEATURES, SkinImageBuilder

CLASSES = ["benign", "malignant"]
#: skin_tone code → (Fitzpatrick pair, tone bucket)
SKIN_TONES = {"12": ("I-II", "light"), "34": ("III-IV", "medium"), "56": ("V-VI", "dark")}
COLUMNS = ("DDI_ID", "DDI_file", "skin_tone", "malignant", "disease")


def parse_skin_tone(text: str | None) -> tuple[str, str] | None:
    """``"12"`` (or ``"12.0"``) → ``("I-II", "light")``; anything else → ``None``."""
    text = (text or "").strip()
    if text.endswith(".0"):
        text = text[:-2]
    return SKIN_TONES.get(text)


def parse_bool(text: str | None) -> bool | None:
    """TRUE / FALSE in any case → bool; anything else → ``None``."""
    text = (text or "").strip().lower()
    return True if text == "true" else False if text == "false" else None


class DDI(SkinImageBuilder):
    VERSION = datasets.Version("1.0.0")
    LAYOUT = "ddi_metadata.csv (DDI_ID, DDI_file, skin_tone, malignant, disease) and images/*.png"
    TITLE = "DDI (Diverse Dermatology Images)"
    LICENSE = "Stanford University School of Medicine DDI Dataset Research Use Agreement"
    HOMEPAGE = "https://ddi-dataset.github.io/"
    CITATION = """\
@article{daneshjou2022ddi,
    title = {Disparities in dermatology {AI} performance on a diverse, curated clinical image set},
    author = {Daneshjou, Roxana and Vodrahalli, Kailas and Novoa, Roberto A. and others},
    journal = {Science Advances},
    volume = {8},
    number = {32},
    pages = {eabq6147},
    year = {2022},
    doi = {10.1126/sciadv.abq6147}
}
"""

    def _info(self):
        return self.dataset_info(
            {
                "image": datasets.Image(),
                "label": datasets.ClassLabel(names=CLASSES),
                "malignant": datasets.Value("bool"),
                "disease": datasets.Value("string"),
                "group_id": datasets.Value("string"),
                "ddi_id": datasets.Value("string"),
                "fst_group": datasets.Value("string"),
                **TONE_FEATURES,
            }
        )

    def stratify_key(self, record: dict) -> str:
        return f"{record['label']}|{record['fst_group']}"

    def scan(self):
        self.require("ddi_metadata.csv", "images")
        records, skipped = [], []
        with open(os.path.join(self.root, "ddi_metadata.csv"), newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise ValueError(
                    f"{self.name}: ddi_metadata.csv lacks column(s) {', '.join(missing)}. Expected {self.LAYOUT}"
                )
            for row in reader:
                path = os.path.join(self.root, "images", row["DDI_file"])
                tone = parse_skin_tone(row["skin_tone"])
                if tone is None:
                    skipped.append(
                        {"path": path, "reason": f"skin_tone {row['skin_tone']!r} is not one of 12, 34, 56"}
                    )
                    continue
                malignant = parse_bool(row["malignant"])
                if malignant is None:
                    skipped.append({"path": path, "reason": f"malignant {row['malignant']!r} is not TRUE/FALSE"})
                    continue
                records.append(
                    {
                        "image": path,
                        "label": CLASSES[malignant],
                        "malignant": malignant,
                        "disease": row["disease"] or None,
                        "group_id": row["DDI_ID"],
                        "ddi_id": row["DDI_ID"],
                        "fst_group": tone[0],
                        "fitzpatrick": None,
                        "monk": None,
                        "tone_bucket": tone[1],
                    }
                )
        return records, skipped
