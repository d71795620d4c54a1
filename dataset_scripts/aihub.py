"""AI-Hub Korean skin condition measurement data (dataSetSn=71645): graded face regions.

Layout (AI-Hub release, the folder that holds ``img/`` and ``label/``)::

    img/{equ}/{subject}/...jpg                                 equ 1 camera, 2 tablet, 3 phone
    label/{equ}/{subject}/{subject}_{equ}_{angle}_{area}.json  one face region of one photo

Each label JSON has ``info`` (filename, id, gender, age, skin_type, sensitive),
``images`` (``bbox`` [x1, y1, x2, y2] or null, ``facepart`` 0 whole face,
1 forehead, 2 glabella, 3/4 left/right eye, 5/6 left/right cheek, 7 lips,
8 chin, ``device``), ``annotations`` (dermatologist grades) and ``equipment``
(instrument readings; a failed reading is the string ``'Er'``).

One row per label JSON that carries the grade chosen by ``task``:

* The image is ``info.filename`` under ``img/{equ}/{subject}/`` (sub-folders
  searched too); a missing file is skipped with a reason.
* ``make_example`` crops the image to ``images.bbox`` (clamped to the image)
  and stores the crop losslessly as PNG bytes (a second JPEG round-trip would
  blur exactly the fine wrinkles and pores being graded). A null bbox keeps the
  whole image: such rows have ``bbox_missing = True`` and are counted in
  :attr:`AIHubSkin.bbox_missing_count` after a scan (``info`` users can sum the
  column).
* ``group_id`` is the subject, so one person never spans two splits.
* ``label`` is the ``task`` grade as a ClassLabel named ``"0"`` … ``"K"``;
  rows whose JSON lacks that grade are skipped with ``"no <task> grade"``.
  Every known grade is kept as an int column (None when absent) and every known
  equipment reading as a float column ``eq_<key>`` (None for ``'Er'`` or
  missing); unlisted readings go to the JSON column ``equipment_other``.
* ``grade_mapping`` (None by default) regroups grades: a ``{grade: group}``
  dict, or a preset name from :data:`GRADE_MAPPING_PRESETS`. The preset
  ``forehead_aging_4`` follows the forehead-aging project's 7 → 4 regrouping
  (0,1 → 1; 3,4 → 2; 5 → 3; 6 → 4), which left grade 2 unassigned. We put
  **2 → 2**: an ordinal regrouping must keep each group a contiguous run of
  grades, so 2 can only join {0, 1} or {3, 4}; joining {3, 4} keeps group 1
  the near-normal grades only and makes group 2 "mild to moderate" (2-4), and
  it does not swell group 1, already the largest because most subjects have
  grade 0-1. Pass ``grade_mapping={0: 1, 1: 1, 2: 1, 3: 2, ...}`` to choose
  otherwise. Grades missing from a mapping are skipped with a reason.
* The Korean skin-analysis XAI service's five attributes (``oil``,
  ``hydration``, ``wrinkle``, ``pigmentation``, ``sensitivity``, graded 0-4)
  are accepted as ``task`` and read from ``annotations`` under those names.
  The public 71645 labels mostly carry region grades (``forehead_wrinkle``,
  ``l_cheek_pore`` …) instead, so these tasks work only on releases whose
  labels carry them; otherwise preparation fails with a message saying so.

No skin-tone labels (all subjects are Korean), so no tone-label columns; the
tone estimated from the pixels of the (cropped) face region is there, over the
whole crop (``LESION_PHOTOS = False``).
"""

from __future__ import annotations

import io
import json
import math
import os
import re

import datasets

from dataset_scripts._base import SkinBuilderConfig, SkinImageBuilder

#: Number of grades (0 … n-1) of each known annotation, from the AI-Hub
#: documentation (region grades) and the XAI service (five attributes, 0-4).
GRADE_LEVELS = {
    "forehead_wrinkle": 7,
    "forehead_pigmentation": 6,
    "glabellus_wrinkle": 7,
    "l_perocular_wrinkle": 7,
    "r_perocular_wrinkle": 7,
    "l_cheek_pore": 6,
    "r_cheek_pore": 6,
    "l_cheek_pigmentation": 6,
    "r_cheek_pigmentation": 6,
    "lip_dryness": 5,
    "chin_sagging": 6,
    "oil": 5,
    "hydration": 5,
    "wrinkle": 5,
    "pigmentation": 5,
    "sensitivity": 5,
}
ATTRIBUTE_TASKS = ("oil", "hydration", "wrinkle", "pigmentation", "sensitivity")

_ELASTICITY = [f"R{i}" for i in range(10)] + [f"Q{i}" for i in range(4)]
_ROUGHNESS = ["Ra", "Rmax", "Rt", "Rz=Rtm", "Rp", "Rv", "Rq", "R3z"]
#: Equipment readings stored as float columns ``eq_<key>``.
EQUIPMENT_KEYS = (
    ["pigmentation_count", "acne_count", "forehead_moisture"]
    + [f"forehead_elasticity_{s}" for s in _ELASTICITY]
    + [f"{side}_perocular_wrinkle_{s}" for side in ("l", "r") for s in _ROUGHNESS]
    + [k for side in ("l", "r") for k in (f"{side}_cheek_moisture", f"{side}_cheek_pore")]
    + [f"{side}_cheek_elasticity_{s}" for side in ("l", "r") for s in _ELASTICITY]
    + ["chin_moisture"]
    + [f"chin_elasticity_{s}" for s in _ELASTICITY]
)

GRADE_MAPPING_PRESETS = {
    # forehead-aging project's 7 → 4 grouping; 2 → 2 is our choice (module docstring).
    "forehead_aging_4": {0: 1, 1: 1, 2: 2, 3: 2, 4: 2, 5: 3, 6: 4},
}
_TASK_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def normalize_grade_mapping(mapping) -> dict[int, int] | None:
    """A preset name or ``{grade: group}`` (keys may be strings) → ``{int: int}``."""
    if mapping is None:
        return None
    if isinstance(mapping, str):
        if mapping not in GRADE_MAPPING_PRESETS:
            raise ValueError(
                f"unknown grade_mapping preset {mapping!r}: choose one of {', '.join(GRADE_MAPPING_PRESETS)} "
                "or pass a {grade: group} dict"
            )
        return dict(GRADE_MAPPING_PRESETS[mapping])
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f"grade_mapping must be a preset name or a non-empty {{grade: group}} dict, got {mapping!r}")
    out = {}
    for k, v in mapping.items():
        try:
            out[int(k)] = int(v)
        except (TypeError, ValueError):
            raise ValueError(f"grade_mapping entries must be integers, got {k!r}: {v!r}") from None
    return out


def as_reading(value) -> float | None:
    """An equipment reading as float; ``'Er'`` / null / non-numeric → None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None  # 'Er' (instrument error) and any other non-number
    return number if math.isfinite(number) else None


def as_grade(value) -> int | None:
    """An annotation grade as int; null, lists (acne lesions), text → None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def valid_bbox(bbox) -> list[int] | None:
    """``[x1, y1, x2, y2]`` with x2 > x1 and y2 > y1 → ints; otherwise None."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return None
    try:
        x1, y1, x2, y2 = (int(round(float(v))) for v in bbox)
    except (TypeError, ValueError, OverflowError):
        return None
    return [x1, y1, x2, y2] if x2 > x1 and y2 > y1 else None


class AIHubConfig(SkinBuilderConfig):
    """AI-Hub options.

    Args:
        task: the annotation used as ``label`` (default ``forehead_wrinkle``).
        grade_mapping: None, a preset name (``"forehead_aging_4"``) or a
            ``{grade: group}`` dict applied to the task grade.
        num_grades: grades are 0 … num_grades-1; needed only for a task not in
            :data:`GRADE_LEVELS` (otherwise the labels are scanned for the max).
    """

    def __init__(self, *args, task: str = "forehead_wrinkle", grade_mapping=None, num_grades=None, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(task, str) or not _TASK_RE.match(task):
            raise ValueError(f"task must be an annotation key such as 'forehead_wrinkle', got {task!r}")
        bad_levels = isinstance(num_grades, bool) or not isinstance(num_grades, int) or num_grades < 2
        if num_grades is not None and bad_levels:
            raise ValueError(f"num_grades must be an integer >= 2, got {num_grades!r}")
        self.task = task
        self.grade_mapping = grade_mapping
        self.num_grades = num_grades
        self.mapping = normalize_grade_mapping(grade_mapping)


class AIHubSkin(SkinImageBuilder):
    BUILDER_CONFIG_CLASS = AIHubConfig
    LAYOUT = (
        "img/{equ}/{subject}/*.jpg and label/{equ}/{subject}/{subject}_{equ}_{angle}_{area}.json "
        "(AI-Hub dataSetSn=71645; pass the folder that holds img/ and label/)"
    )
    TITLE = "AI-Hub skin condition measurement data (71645)"
    LESION_PHOTOS = False  # face regions: the estimated tone is over the whole crop
    LICENSE = "AI-Hub terms of use (registration; no redistribution)"
    HOMEPAGE = "https://www.aihub.or.kr/aihubdata/data/view.do?dataSetSn=71645"

    # -- layout ---------------------------------------------------------------
    def _label_files(self) -> list[tuple[str, str, str]]:
        """``(equ, subject, json path)`` for every label file, sorted."""
        self.require("img", "label")
        label_root = os.path.join(self.root, "label")
        out = []
        for equ in sorted(os.listdir(label_root)):
            equ_dir = os.path.join(label_root, equ)
            if not os.path.isdir(equ_dir):
                continue
            for subject in sorted(os.listdir(equ_dir)):
                subject_dir = os.path.join(equ_dir, subject)
                if not os.path.isdir(subject_dir):
                    continue
                for fname in sorted(os.listdir(subject_dir)):
                    if fname.lower().endswith(".json") and not fname.startswith("."):
                        out.append((equ, subject, os.path.join(subject_dir, fname)))
        if not out:
            raise ValueError(f"{self.name}: no label JSON files under {label_root!r}. Expected {self.LAYOUT}")
        return out

    def _grade_names(self) -> list[str]:
        mapping = self.config.mapping
        if mapping is not None:
            return [str(g) for g in sorted(set(mapping.values()))]
        task = self.config.task
        levels = self.config.num_grades or GRADE_LEVELS.get(task)
        if levels is None:  # an unlisted annotation: its range comes from the labels
            grades = []
            for _, _, path in self._label_files():
                label, _ = self._read_label(path)
                if label is not None:
                    grade = as_grade((label.get("annotations") or {}).get(task))
                    if grade is not None and grade >= 0:
                        grades.append(grade)
            levels = max(grades) + 1 if grades else 1
        return [str(g) for g in range(levels)]

    @staticmethod
    def _read_label(path: str) -> tuple[dict | None, str | None]:
        try:
            with open(path, encoding="utf-8-sig") as f:
                label = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            return None, f"unreadable label JSON ({type(e).__name__}: {e})"
        if not isinstance(label, dict):
            return None, "label JSON is not an object"
        return label, None

    # -- builder --------------------------------------------------------------
    def _info(self):
        features = {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=self._grade_names()),
            "group_id": datasets.Value("string"),
            "grade": datasets.Value("int8"),  # the task grade before grade_mapping
            "bbox": datasets.List(datasets.Value("int32")),
            "bbox_missing": datasets.Value("bool"),
            "facepart": datasets.Value("int8"),
            "equipment_code": datasets.Value("string"),
            "device": datasets.Value("int8"),
            "angle": datasets.Value("int16"),
            "label_file": datasets.Value("string"),
            "age": datasets.Value("int16"),
            "gender": datasets.Value("string"),
            "skin_type": datasets.Value("int8"),
            "sensitive": datasets.Value("int8"),
        }
        features.update({key: datasets.Value("int8") for key in GRADE_LEVELS})
        features.update({f"eq_{key}": datasets.Value("float32") for key in EQUIPMENT_KEYS})
        features["equipment_other"] = datasets.Value("string")
        return self.dataset_info(features)

    def _find_image(self, equ: str, subject: str, filename: str, index: dict) -> str | None:
        folder = os.path.join(self.root, "img", equ, subject)
        direct = os.path.join(folder, filename)
        if os.path.isfile(direct):
            return direct
        if folder not in index:  # fall back to sub-folders, indexed once per subject
            found = {}
            for dirpath, _, filenames in os.walk(folder):
                for fname in filenames:
                    found.setdefault(fname, os.path.join(dirpath, fname))
            index[folder] = found
        return index[folder].get(filename)

    def scan(self):
        task = self.config.task
        names = set(self._grade_names())
        records, skipped, index = [], [], {}
        seen_task = False
        self.bbox_missing_count = 0
        for equ, subject, path in self._label_files():
            label, problem = self._read_label(path)
            if problem:
                skipped.append({"path": path, "reason": problem})
                continue
            grade = as_grade((label.get("annotations") or {}).get(task))
            if grade is None:
                skipped.append({"path": path, "reason": f"no {task} grade"})
                continue
            seen_task = True
            target, problem = self._target_label(grade, names)
            if problem is None:
                image, bbox, problem = self._image_and_bbox(equ, subject, label, index)
            if problem is not None:
                skipped.append({"path": path, "reason": problem})
                continue
            self.bbox_missing_count += bbox is None
            records.append(self._record(equ, subject, path, label, grade, target, image, bbox))
        if not seen_task:
            raise self._no_task_error()
        return records, skipped

    def _target_label(self, grade: int, names: set[str]) -> tuple[str | None, str | None]:
        """``(class name, None)`` for a task grade after ``grade_mapping``, or ``(None, why it is skipped)``."""
        task, mapping = self.config.task, self.config.mapping
        if mapping is not None:
            if grade not in mapping:
                return None, f"{task} grade {grade} not in grade_mapping"
            target = str(mapping[grade])
        else:
            target = str(grade)
        if target not in names:
            return None, f"{task} grade {grade} outside 0..{len(names) - 1}"
        return target, None

    def _image_and_bbox(self, equ: str, subject: str, label: dict, index: dict):
        """``(image path, bbox, None)`` for a label's photo and face box, or ``(None, None, why it is skipped)``."""
        info = label.get("info") or {}
        images = label.get("images") or {}
        filename = info.get("filename")
        if not isinstance(filename, str) or not filename.strip():
            return None, None, "label JSON has no info.filename"
        image = self._find_image(equ, subject, os.path.basename(filename.strip()), index)
        if image is None:
            return None, None, f"image not found: img/{equ}/{subject}/{os.path.basename(filename)}"
        raw_bbox = images.get("bbox")
        bbox = valid_bbox(raw_bbox)
        if raw_bbox is not None and bbox is None:
            return None, None, f"invalid bbox {raw_bbox!r}"
        return image, bbox, None

    def _record(self, equ: str, subject: str, path: str, label: dict, grade: int, target: str, image, bbox) -> dict:
        """One scanned row: the label file's metadata, grades and equipment readings in the features' columns."""
        info = label.get("info") or {}
        images = label.get("images") or {}
        annotations = label.get("annotations") or {}
        equipment = label.get("equipment") or {}
        other = {k: as_reading(v) for k, v in equipment.items() if k not in EQUIPMENT_KEYS}
        return {
            "image": image,
            "label": target,
            "group_id": subject,
            "grade": grade,
            "bbox": bbox,
            "bbox_missing": bbox is None,
            "facepart": as_grade(images.get("facepart")),
            "equipment_code": equ,
            "device": as_grade(images.get("device")),
            "angle": as_grade(images.get("angle")),
            "label_file": os.path.relpath(path, self.root),
            "age": as_grade(info.get("age")),
            "gender": info.get("gender") or None,
            "skin_type": as_grade(info.get("skin_type")),
            "sensitive": as_grade(info.get("sensitive")),
            **{key: as_grade(annotations.get(key)) for key in GRADE_LEVELS},
            **{f"eq_{key}": as_reading(equipment.get(key)) for key in EQUIPMENT_KEYS},
            "equipment_other": json.dumps(other, sort_keys=True),
        }

    def _no_task_error(self) -> ValueError:
        """The error when no label has the configured task's grade, naming the releases that do carry it."""
        task = self.config.task
        regions = ", ".join(k for k in GRADE_LEVELS if k not in ATTRIBUTE_TASKS)
        hint = (
            f" The public 71645 labels carry region grades ({regions}); "
            f"{task!r} exists only in releases whose annotations carry it."
            if task in ATTRIBUTE_TASKS
            else ""
        )
        return ValueError(f"{self.name}: no label JSON under {self.root!r} has a {task!r} grade.{hint}")

    def make_example(self, record: dict) -> dict:
        example = super().make_example(record)
        bbox = record["bbox"]
        if bbox is None:
            return example  # whole image, written as the original file
        from PIL import Image

        with Image.open(record["image"]) as im:
            width, height = im.size
            x1, y1 = min(max(bbox[0], 0), width - 1), min(max(bbox[1], 0), height - 1)
            x2, y2 = max(min(bbox[2], width), x1 + 1), max(min(bbox[3], height), y1 + 1)
            crop = im.crop((x1, y1, x2, y2))
            if crop.mode not in ("RGB", "L", "RGBA"):
                crop = crop.convert("RGB")
            buf = io.BytesIO()
            crop.save(buf, format="PNG")
        example["image"] = {"bytes": buf.getvalue(), "path": None}
        return example
