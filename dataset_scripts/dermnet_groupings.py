"""DermNet's condition groupings: one table per grouping (class id -> name, malignant flag, folders).

Kept apart from the builder (:mod:`dataset_scripts.dermnet`) so that the task
registry (:mod:`skin.tasks`) and the app can read the class names and the
malignant flags without importing ``datasets``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConditionClass:
    """One class of a grouping: its human-readable name, whether it is malignant, its folders."""

    name: str
    malignant: bool
    folders: tuple[str, ...]


MELANOMA_FOLDERS = ("Acral lentiginous melanoma", "Amelanotic melanoma", "Melanoma", "Melanoma in situ",
                    "Metastatic melanoma", "Nodular melanoma")  # fmt: skip
NAEVUS_FOLDERS = ("Atypical melanocytic naevus", "Blue nevus", "Congenital melanocytic naevus", "Halo naevus",
                  "Melanocytic naevus")  # fmt: skip
PSORIASIS_LP_FOLDERS = ("Erosive lichen planus", "Erythrodermic psoriasis", "Facial psoriasis",
                        "Flexural psoriasis", "Generalised pustular psoriasis", "Lichen planus",
                        "Palmoplantar pustulosis", "Psoriasis")  # fmt: skip
FUNGAL_FOLDERS = ("Non-albicans candida infections", "Onychomycosis", "Oral candidiasis", "Tinea barbae",
                  "Tinea capitis", "Tinea corporis", "Tinea cruris", "Tinea faciei", "Tinea incognita",
                  "Tinea manuum", "Tinea pedis")  # fmt: skip
ECZEMA_FOLDERS = ("Airborne contact dermatitis", "Asteatotic eczema", "Discoid eczema",
                  "Dyshidrotic eczema (pompholyx)", "Eyelid contact dermatitis", "Hand dermatitis", "Nipple eczema",
                  "Nummular eczematous dermatitis", "Venous eczema")  # fmt: skip
BENIGN_GROWTH_FOLDERS = ("Cherry angioma", "Dermatofibroma", "Keloid scar", "Pyogenic granuloma",
                         "Sebaceous hyperplasia")  # fmt: skip

#: The grouping the shipped clinical model uses (the default config). Not covered: Alopecia areata,
#: Keratosis pilaris, Urticaria.
CLINICAL = {
    "acne_rosacea": ConditionClass("Acne & rosacea", False, ("Acne vulgaris", "Hidradenitis suppurativa",
                                                             "Periorificial dermatitis", "Rosacea")),
    "eczema_dermatitis": ConditionClass("Eczema & dermatitis", False,
                                        ECZEMA_FOLDERS + ("Atopic dermatitis", "Lichen simplex", "Prurigo")),
    "psoriasis_lichen_planus": ConditionClass("Psoriasis & lichen planus", False, PSORIASIS_LP_FOLDERS),
    "fungal_infection": ConditionClass("Fungal infection (tinea, candida)", False, FUNGAL_FOLDERS),
    "other_infection": ConditionClass("Viral, bacterial or parasitic infection", False,
                                      ("Herpes simplex", "Herpes zoster", "Impetigo", "Molluscum contagiosum",
                                       "Scabies")),
    "bcc_scc": ConditionClass("Basal / squamous cell carcinoma", True,
                              ("Basal cell carcinoma", "Squamous cell carcinoma")),
    "actinic_keratosis": ConditionClass("Actinic keratosis", False, ("Actinic keratosis",)),
    "melanoma": ConditionClass("Melanoma", True, MELANOMA_FOLDERS),
    "naevus": ConditionClass("Melanocytic naevus (mole)", False, NAEVUS_FOLDERS),
    "benign_growth": ConditionClass("Benign growth", False, BENIGN_GROWTH_FOLDERS),
    "pigment_disorder": ConditionClass("Pigment disorder (vitiligo, melasma)", False, ("Melasma", "Vitiligo")),
}  # fmt: skip

#: The Kaggle "Skin Diseases Image Dataset" classes (keys exactly as its builder's CLASSES, same order).
#: Left out: acne / rosacea, actinic keratosis, SCC, impetigo, scabies, lichen simplex, prurigo,
#: vitiligo, melasma and the three folders the clinical grouping leaves out too.
KAGGLE10 = {
    "Eczema": ConditionClass("Eczema", False, ECZEMA_FOLDERS),
    "Melanoma": ConditionClass("Melanoma", True, MELANOMA_FOLDERS),
    "Atopic Dermatitis": ConditionClass("Atopic Dermatitis", False, ("Atopic dermatitis",)),
    "Basal Cell Carcinoma (BCC)": ConditionClass("Basal Cell Carcinoma (BCC)", True, ("Basal cell carcinoma",)),
    "Melanocytic Nevi (NV)": ConditionClass("Melanocytic Nevi (NV)", False, NAEVUS_FOLDERS),
    "Benign Keratosis-like Lesions (BKL)": ConditionClass("Benign Keratosis-like Lesions (BKL)", False, ()),
    "Psoriasis pictures Lichen Planus and related diseases": ConditionClass(
        "Psoriasis pictures Lichen Planus and related diseases", False, PSORIASIS_LP_FOLDERS),
    "Seborrheic Keratoses and other Benign Tumors": ConditionClass(
        "Seborrheic Keratoses and other Benign Tumors", False, BENIGN_GROWTH_FOLDERS),
    "Tinea Ringworm Candidiasis and other Fungal Infections": ConditionClass(
        "Tinea Ringworm Candidiasis and other Fungal Infections", False, FUNGAL_FOLDERS),
    "Warts Molluscum and other Viral Infections": ConditionClass(
        "Warts Molluscum and other Viral Infections", False,
        ("Herpes simplex", "Herpes zoster", "Molluscum contagiosum")),
}  # fmt: skip

#: Every DermNet folder this builder knows (the 64 in ``../shared/data/dermnet``).
FOLDERS = tuple(sorted({f for c in CLINICAL.values() for f in c.folders}
                       | {"Alopecia areata", "Keratosis pilaris", "Urticaria"}))  # fmt: skip
#: The folders of the clinical grouping's malignant classes (melanoma, BCC / SCC).
MALIGNANT_FOLDERS = tuple(sorted(f for c in CLINICAL.values() if c.malignant for f in c.folders))
#: One class per folder; malignant when its clinical class is.
FINE = {f: ConditionClass(f, f in MALIGNANT_FOLDERS, (f,)) for f in FOLDERS}

GROUPINGS = {"clinical": CLINICAL, "fine": FINE, "kaggle10": KAGGLE10}
DEFAULT_GROUPING = "clinical"


def folder_classes(grouping: str) -> dict[str, str]:
    """Folder → class id for one grouping (folders it leaves out are absent)."""
    return {folder: cls for cls, spec in GROUPINGS[grouping].items() for folder in spec.folders}
