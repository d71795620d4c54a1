"""Tiny on-disk copies of the SCIN, Kaggle skin-diseases and AI-Hub 71645 layouts.

Each ``make_*(tmp_path)`` writes a few-kilobyte dataset under ``tmp_path`` with
the folder names, file names, CSV columns and JSON keys of the real release
(``../shared/data/README.md``, "Layouts of datasets not present here"), their
quirks included: SCIN's signed 64-bit case ids, empty ``image_N_path`` cells,
dicts written as strings; Kaggle's numbered folders with counts in the names;
AI-Hub's null bboxes and ``'Er'`` readings. Images are real 16x16 (AI-Hub
64x48) JPEG/PNG files written with PIL, plus one truncated image per dataset.
Every layout has at least ten groups so all three splits get rows.

Each returns a :class:`FixtureLayout`: the folder to pass as ``data_dir`` and
the facts a builder must reproduce, so tests assert against what was written.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 16


@dataclass
class FixtureLayout:
    """A fixture dataset and what a builder must make of it."""

    data_dir: Path
    n_good: int  # rows the builder must yield
    n_groups: int  # distinct group ids among them
    skipped: dict[str, str] = field(default_factory=dict)  # file name → substring of the reason
    extra: dict = field(default_factory=dict)


def _write_image(path: Path, seed: int, size=(SIDE, SIDE), truncate: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.fromarray(pixels).save(path, format=fmt)
    if truncate:  # an interrupted download: the file's tail (JPEG EOI / PNG IEND) is gone
        data = path.read_bytes()
        path.write_bytes(data[:-10])


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})


# -- SCIN ------------------------------------------------------------------------
_RACE = [
    "american_indian_or_alaska_native", "asian", "black_or_african_american",
    "hispanic_latino_or_spanish_origin", "middle_eastern_or_north_african",
    "native_hawaiian_or_pacific_islander", "white", "other_race", "prefer_not_to_answer",
    "two_or_more_after_mitigation",
]  # fmt: skip
_TEXTURES = ["texture_unspecified", "raised_or_bumpy", "flat", "rough_or_flaky", "fluid_filled"]
_BODY = [
    "head_or_neck", "arm", "palm", "back_of_hand", "torso_front", "torso_back", "genitalia_or_groin",
    "buttocks", "leg", "foot_top_or_side", "foot_sole", "other",
]  # fmt: skip
_COND_SYMPTOMS = [
    "bothersome_appearance", "bleeding", "increasing_size", "darkening", "itching", "burning", "pain",
    "no_relevant_experience",
]  # fmt: skip
_OTHER_SYMPTOMS = [
    "fever", "chills", "fatigue", "joint_pain", "mouth_sores", "shortness_of_breath", "no_relevant_symptoms",
]  # fmt: skip
SCIN_CASE_COLUMNS = (
    ["case_id", "source", "release", "year", "age_group", "sex_at_birth", "fitzpatrick_skin_type"]
    + [f"race_ethnicity_{s}" for s in _RACE]
    + ["combined_race"]
    + [f"textures_{s}" for s in _TEXTURES]
    + [f"body_parts_{s}" for s in _BODY]
    + [f"condition_symptoms_{s}" for s in _COND_SYMPTOMS]
    + [f"other_symptoms_{s}" for s in _OTHER_SYMPTOMS]
    + ["related_category", "condition_duration"]
    + ["image_1_path", "image_2_path", "image_3_path"]
    + ["image_1_shot_type", "image_2_shot_type", "image_3_shot_type"]
)
SCIN_LABEL_COLUMNS = (
    ["case_id"]
    + [f"dermatologist_gradable_for_skin_condition_{i}" for i in (1, 2, 3)]
    + ["dermatologist_skin_condition_on_label_name", "dermatologist_skin_condition_confidence"]
    + ["weighted_skin_condition_label"]
    + [f"dermatologist_gradable_for_fitzpatrick_skin_type_{i}" for i in (1, 2, 3)]
    + [f"dermatologist_fitzpatrick_skin_type_label_{i}" for i in (1, 2, 3)]
    + ["gradable_for_monk_skin_tone_india", "gradable_for_monk_skin_tone_us"]
    + ["monk_skin_tone_label_india", "monk_skin_tone_label_us"]
)
SCIN_CASE_IDS = [
    "-8813617245231396417", "1234567890123456789", "-1234567890123", "7000000000000000001",
    "-2000000000000000002", "3141592653589793238", "-2718281828459045235", "1618033988749894848",
    "-1414213562373095048", "5772156649015328606", "-6931471805599453094", "4669201609102990671",
    "-9007199254740993", "9223372036854775807", "-5000000000000000005",
]  # fmt: skip
_SHOTS = ["CLOSE_UP", "AT_AN_ANGLE", "AT_DISTANCE"]


def make_scin(tmp_path) -> FixtureLayout:
    """SCIN: 15 cases (13 labelled with images, one unlabelled, one without a label row)."""
    root = Path(tmp_path) / "scin"
    ds = root / "dataset"
    conditions = [
        "{'Eczema': 0.69, 'Psoriasis': 0.31}",
        "{'Psoriasis': 1.0}",
        "{'Tinea': 0.5, 'Eczema': 0.5}",  # tie: first listed wins
        "{'Acne': 0.8, 'Folliculitis': 0.2}",
    ]
    cases, labels = [], []
    n_good, skipped, extra = 0, {}, {"fitz": {}, "monk": {}, "bucket": {}}
    for k, case_id in enumerate(SCIN_CASE_IDS):
        n_images = 1 + k % 3
        paths = [f"dataset/images/{-(10**12 + 7 * k + j)}.png" for j in range(n_images)]
        if k == 4:  # a bare file name instead of dataset/images/<id>.png
            paths[0] = os.path.basename(paths[0])
        slots = paths + [""] * (3 - n_images)
        if k == 5:  # image_1 and image_3 filled, image_2 empty
            paths = paths[:2]
            slots = [paths[0], "", paths[1]]
        case = {
            "case_id": case_id, "source": "SCIN", "release": "1.0.0", "year": "2023",
            "age_group": ["AGE_18_TO_29", "AGE_30_TO_39", "AGE_60_TO_69", ""][k % 4],
            "sex_at_birth": ["FEMALE", "MALE", "OTHER_OR_UNSPECIFIED"][k % 3],
            "fitzpatrick_skin_type": ["FST1", "FST2", "FST3", "FST4", "FST5", "FST6", "NONE_SELECTED",
                                      "NONE_IDENTIFIED", ""][k % 9],
            "related_category": "RASH", "condition_duration": "ONE_TO_FOUR_WEEKS",
            "body_parts_arm": "YES" if k % 2 else "", "body_parts_leg": "YES",
            "race_ethnicity_white": "YES" if k % 3 == 0 else "",
            "combined_race": "WHITE" if k % 3 == 0 else "",
        }  # fmt: skip
        for j in range(3):
            case[f"image_{j + 1}_path"] = slots[j]
            case[f"image_{j + 1}_shot_type"] = _SHOTS[j] if slots[j] else ""
        cases.append(case)
        for j, rel in enumerate(paths):
            name = os.path.basename(rel)
            _write_image(ds / "images" / name, seed=100 * k + j, truncate=(k == 7 and j == 0))
        if k == 13:  # case with no row in scin_labels.csv
            for p in paths:
                skipped[os.path.basename(p)] = "no row in scin_labels.csv"
            continue
        label = {"case_id": case_id}
        if k == 12:  # case with no dermatologist label
            label["weighted_skin_condition_label"] = ""
            for p in paths:
                skipped[os.path.basename(p)] = "no dermatologist label"
        else:
            label.update({
                "dermatologist_gradable_for_skin_condition_1": "True",
                "dermatologist_skin_condition_on_label_name": "['Eczema', 'Psoriasis']",
                "dermatologist_skin_condition_confidence": "[3, 1]",
                "weighted_skin_condition_label": conditions[k % 4],
            })  # fmt: skip
            if k == 7:
                skipped[os.path.basename(paths[0])] = "truncated PNG"
                n_good += len(paths) - 1
            else:
                n_good += len(paths)
        # dermatologist FST: three graders, the third ungradable on even cases
        derm = [1 + (k % 6), 1 + ((k + 1) % 6), 6]
        if k % 5 == 4:  # no dermatologist FST at all
            derm_cells = ["", "", ""]
        else:
            derm_cells = [f"FST{d}" for d in derm]
        for i in (1, 2, 3):
            label[f"dermatologist_gradable_for_fitzpatrick_skin_type_{i}"] = (
                "NO" if (i == 3 and k % 2 == 0) else ("YES" if derm_cells[i - 1] else "")
            )
            label[f"dermatologist_fitzpatrick_skin_type_label_{i}"] = derm_cells[i - 1]
        label["monk_skin_tone_label_us"] = "" if k % 4 == 1 else str(1 + k % 10)
        label["monk_skin_tone_label_india"] = f"{1 + (k + 3) % 10}.0"
        label["gradable_for_monk_skin_tone_us"] = "True" if label["monk_skin_tone_label_us"] else ""
        label["gradable_for_monk_skin_tone_india"] = "True"
        labels.append(label)
    _write_csv(ds / "scin_cases.csv", SCIN_CASE_COLUMNS, cases)
    _write_csv(ds / "scin_labels.csv", SCIN_LABEL_COLUMNS, labels)
    extra["conditions"] = ["Acne", "Eczema", "Psoriasis", "Tinea"]
    extra["case_ids"] = SCIN_CASE_IDS
    n_groups = len(SCIN_CASE_IDS) - 2  # minus the unlabelled and the label-less case
    return FixtureLayout(root, n_good=n_good, n_groups=n_groups, skipped=skipped, extra=extra)


# -- Kaggle ----------------------------------------------------------------------
KAGGLE_FOLDERS = [
    "1. Eczema 1677",
    "2. Melanoma 15.75k",
    "3. Atopic Dermatitis - 1.25k",
    "4. Basal Cell Carcinoma (BCC) 3323",
    "5. Melanocytic Nevi (NV) - 7970",
    "6. Benign Keratosis-like Lesions (BKL) 2624",
    "7. Psoriasis pictures Lichen Planus and related diseases - 2k",
    "8. Seborrheic Keratoses and other Benign Tumors - 1.8k",
    "9. Tinea Ringworm Candidiasis and other Fungal Infections - 1.7k",
    "10. Warts Molluscum and other Viral Infections - 2103",
]
#: images per class folder; one class larger, like the real (unbalanced) release
KAGGLE_PER_CLASS = [8, 3, 3, 3, 3, 3, 3, 3, 3, 3]


def make_kaggle(tmp_path) -> FixtureLayout:
    """Kaggle skin diseases: ten folders of 3-8 JPEGs, one truncated, one Thumbs.db."""
    root = Path(tmp_path) / "kaggle"
    base = root / "IMG_CLASSES"
    # created in reverse so directory order on disk is not the class order
    for c, folder in reversed(list(enumerate(KAGGLE_FOLDERS))):
        for i in range(KAGGLE_PER_CLASS[c]):
            _write_image(base / folder / f"{c}_{i}.jpg", seed=1000 + 10 * c + i)
    _write_image(base / KAGGLE_FOLDERS[9] / "v_bad.jpg", seed=1, truncate=True)
    (base / KAGGLE_FOLDERS[0] / "Thumbs.db").write_bytes(b"\x00" * 16)
    (base / KAGGLE_FOLDERS[0] / ".DS_Store").write_bytes(b"\x00" * 16)
    n = sum(KAGGLE_PER_CLASS)
    return FixtureLayout(
        root,
        n_good=n,
        n_groups=n,
        skipped={"v_bad.jpg": "truncated JPEG", "Thumbs.db": "not an image file"},
        extra={"per_class": KAGGLE_PER_CLASS},
    )


# -- AI-Hub ----------------------------------------------------------------------
AIHUB_SIZE = (64, 48)  # width, height
AIHUB_BBOX = [8, 4, 40, 20]  # → 32x16 crop
#: forehead_wrinkle (and l_perocular_wrinkle) grade per subject 0001..0025:
#: every grade 0-6 at least twice, most subjects 0-1 as in the real data.
AIHUB_GRADES = [0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 1, 1, 1, 0, 1, 0, 1, 1, 3, 1, 0]
AIHUB_NO_GRADE, AIHUB_TRUNCATED, AIHUB_MISSING = 22, 23, 24  # subject indices with a quirk


def _aihub_label(subject, equ, filename, facepart, bbox, annotations, equipment, age, gender):
    return {
        "info": {
            "filename": filename,
            "id": subject,
            "gender": gender,
            "age": age,
            "date": "2023-08-17",
            "skin_type": 0,
            "sensitive": 0,
        },
        "images": {
            "device": 0,
            "width": AIHUB_SIZE[0],
            "height": AIHUB_SIZE[1],
            "angle": 0,
            "facepart": facepart,
            "bbox": bbox,
        },
        "annotations": annotations,
        "equipment": equipment,
    }


def make_aihub(tmp_path, with_attributes: bool = False) -> FixtureLayout:
    """AI-Hub 71645: 25 subjects, 3 label JSONs each (whole face, forehead, left eye).

    Quirks: subject 0002's forehead bbox is null; subject 0003's forehead
    moisture reads 'Er'; subject 0023's forehead JSON has no forehead_wrinkle
    grade; subject 0024's image is truncated; subject 0025's image is missing.
    ``with_attributes`` adds the XAI service's five 0-4 attribute grades to the
    whole-face JSONs. ``n_good`` / ``skipped`` describe the default task,
    ``forehead_wrinkle``.
    """
    root = Path(tmp_path) / "aihub"
    grades, perocular, skipped = {}, {}, {}
    for s, grade in enumerate(AIHUB_GRADES):
        subject = f"{s + 1:04d}"
        equ = "01" if s % 3 else "02"
        filename = f"{subject}_{equ}_F.jpg"
        if s != AIHUB_MISSING:
            img = root / "img" / equ / subject / filename
            _write_image(img, seed=5000 + s, size=AIHUB_SIZE, truncate=(s == AIHUB_TRUNCATED))
        label_dir = root / "label" / equ / subject
        label_dir.mkdir(parents=True, exist_ok=True)
        whole = {"acne": None}
        if with_attributes:
            attributes = ("oil", "hydration", "wrinkle", "pigmentation", "sensitivity")
            whole.update({t: (grade + j) % 5 for j, t in enumerate(attributes)})
        forehead = {"forehead_pigmentation": s % 6, "forehead_wrinkle": grade}
        if s == AIHUB_NO_GRADE:
            forehead = {"forehead_pigmentation": 1}
        files = {
            "00": (0, None, whole, {"pigmentation_count": 146 + s, "acne_count": 0}),
            "01": (
                1,
                None if s == 1 else AIHUB_BBOX,
                forehead,
                {
                    "forehead_moisture": "Er" if s == 2 else 50.0 + s,
                    "forehead_elasticity_R2": 0.653,
                    "forehead_elasticity_Q0": 33.4,
                },
            ),
            "03": (
                3,
                AIHUB_BBOX,
                {"l_perocular_wrinkle": grade},
                {"l_perocular_wrinkle_Ra": 0.312, "l_perocular_wrinkle_Rz=Rtm": 1.654},
            ),
        }
        for area, (facepart, bbox, annotations, equipment) in files.items():
            doc = _aihub_label(subject, equ, filename, facepart, bbox, annotations, equipment, 20 + s, "FM"[s % 2])
            name = f"{subject}_{equ}_F_{area}.json"
            (label_dir / name).write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")
            if area == "00":
                skipped[name] = "no forehead_wrinkle grade"
            elif area == "01" and s == AIHUB_NO_GRADE:
                skipped[name] = "no forehead_wrinkle grade"
            elif area == "01" and s == AIHUB_MISSING:
                skipped[name] = "image not found"
            elif area == "01" and s == AIHUB_TRUNCATED:
                skipped[filename] = "truncated JPEG"
            elif area == "01":
                grades[subject] = grade
            if area == "03" and s not in (AIHUB_TRUNCATED, AIHUB_MISSING):
                perocular[subject] = grade
    return FixtureLayout(
        root,
        n_good=len(grades),
        n_groups=len(grades),
        skipped=skipped,
        extra={
            "forehead_grades": grades,  # subject → forehead_wrinkle grade of the kept rows
            "perocular_grades": perocular,  # subject → l_perocular_wrinkle grade of the kept rows
            "bbox_missing_subject": "0002",
            "er_subject": "0003",
            "crop_size": (AIHUB_BBOX[2] - AIHUB_BBOX[0], AIHUB_BBOX[3] - AIHUB_BBOX[1]),
            "image_size": AIHUB_SIZE,
        },
    )
