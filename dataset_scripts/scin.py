"""SCIN (Ward et al. 2024, Google Research): crowd-sourced photos of skin conditions.

Layout (the folder that holds SCIN's ``dataset/`` folder, or ``dataset/`` itself)::

    dataset/scin_cases.csv    one row per case: demographics, self-reported
                              Fitzpatrick type, image_{1,2,3}_path / _shot_type
    dataset/scin_labels.csv   one row per case: dermatologist condition labels,
                              dermatologist Fitzpatrick types, lay Monk tones
    dataset/images/<signed int>.png

One row per image (a case has up to three; empty ``image_N_path`` cells are not
images and are passed over silently). ``case_id`` is the group id, so the views
of one case never span two splits. ``case_id`` is read as text: the ids are
signed 64-bit integers (``-8813617245231396417``) that a float parse corrupts.

Deliberate choices:

* **Condition label** = the top entry of ``weighted_skin_condition_label`` (a
  dict written as a Python literal, parsed with :func:`ast.literal_eval`, never
  ``eval``); on a tie the first listed entry wins, i.e. SCIN's own order. The
  full differential is kept as the JSON column ``condition_weights``. Cases
  without a dermatologist label are skipped (one skip entry per image).
  ``min_cases_per_class`` maps conditions that top fewer cases to ``"Other"``
  (counted over the labelled cases of ``scin_labels.csv``).
* **Fitzpatrick**: ``fitzpatrick_self`` is the self-reported type (FST1-6;
  NONE_SELECTED / NONE_IDENTIFIED → None). ``fitzpatrick_dermatologist`` is the
  lower median (:func:`statistics.median_low`, always a type one dermatologist
  actually gave) of the up-to-three dermatologist estimates whose
  ``dermatologist_gradable_for_fitzpatrick_skin_type_N`` is not "NO".
  ``fitzpatrick`` = the dermatologist consensus when there is one, else the
  self-report (``fitzpatrick_source`` says which): the paper found self-reports
  skew lighter than dermatologist estimates, so the expert label is preferred.
* **Monk**: ``monk`` = the US graders' label (``monk_skin_tone_label_us``),
  falling back to the India graders' label when the US one is missing or
  ungradable; both raw labels are kept (``monk_us``, ``monk_india``).
* **tone_bucket** from the dermatologist FST, else Monk, else self-reported FST
  (``tone_source`` records which), via :mod:`skin.tone`.

Known limitation: SCIN's README lists 15 images duplicated across cases (42
occurrences); identical *paths* are kept once (later ones skipped with a
reason) but byte-identical files under different names are not detected.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import os
import statistics
from collections import Counter

import datasets

from dataset_scripts._base import TONE_FEATURES, SkinBuilderConfig, SkinImageBuilder
from skin.tone import bucket_from_fitzpatrick, bucket_from_monk

CASES_CSV = "scin_cases.csv"
LABELS_CSV = "scin_labels.csv"
IMAGE_SLOTS = (1, 2, 3)
OTHER = "Other"
_NO = {"no", "false", "0"}


class ScinConfig(SkinBuilderConfig):
    """SCIN options.

    Args:
        min_cases_per_class: conditions that are the top label of fewer labelled
            cases than this become ``"Other"``; 0 (default) keeps every condition.
    """

    def __init__(self, *args, min_cases_per_class: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(min_cases_per_class, bool) or not isinstance(min_cases_per_class, int) or min_cases_per_class < 0:
            raise ValueError(f"min_cases_per_class must be a non-negative integer, got {min_cases_per_class!r}")
        self.min_cases_per_class = min_cases_per_class


# -- parsing helpers (module level so tests and other code can reuse them) -----
def parse_weighted_label(text: str | None) -> dict[str, float] | None:
    """``"{'Eczema': 0.69, ...}"`` → dict; empty → ``{}``; malformed → ``None``."""
    text = (text or "").strip()
    if not text or text.lower() == "nan":
        return {}
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    out = {}
    for name, weight in value.items():
        if not isinstance(name, str) or isinstance(weight, bool) or not isinstance(weight, (int, float)):
            return None
        if not math.isfinite(weight):
            return None
        out[name] = float(weight)
    return out


def top_condition(weights: dict[str, float]) -> str:
    """Highest-weighted condition; ties go to the first listed (SCIN's order)."""
    return max(weights.items(), key=lambda kv: kv[1])[0]


def parse_fitzpatrick(text: str | None) -> int | None:
    """``FST1``..``FST6`` (or ``1``..``6``) → int; NONE_* / empty / anything else → None."""
    text = (text or "").strip().upper()
    if text.startswith("FST"):
        text = text[3:]
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and 1 <= value <= 6 else None


def parse_monk(text: str | None) -> int | None:
    """``1``..``10`` (also written ``3.0``) → int; empty / out of range → None."""
    try:
        value = float((text or "").strip())
    except ValueError:
        return None
    return int(value) if value.is_integer() and 1 <= value <= 10 else None


def _gradable(text: str | None) -> bool:
    """A missing gradability flag does not veto a label; an explicit NO does."""
    return (text or "").strip().lower() not in _NO


def dermatologist_fitzpatrick(row: dict) -> int | None:
    """Lower median of the gradable dermatologist FST estimates, or None."""
    votes = []
    for i in IMAGE_SLOTS:
        fst = parse_fitzpatrick(row.get(f"dermatologist_fitzpatrick_skin_type_label_{i}"))
        if fst is not None and _gradable(row.get(f"dermatologist_gradable_for_fitzpatrick_skin_type_{i}")):
            votes.append(fst)
    return statistics.median_low(votes) if votes else None


def _checked(row: dict, prefix: str) -> list[str]:
    """Suffixes of the ``prefix*`` checkbox columns answered 'YES'."""
    return [k[len(prefix) :] for k, v in row.items() if k.startswith(prefix) and (v or "").strip().upper() == "YES"]


def _case_weights(case_id: str, label_row: dict | None) -> tuple[dict[str, float] | None, str | None]:
    """``(condition weights, None)`` for a case's dermatologist label, or ``(None, why the case is skipped)``."""
    if label_row is None:
        return None, f"case {case_id} has no row in {LABELS_CSV}"
    weights = parse_weighted_label(label_row.get("weighted_skin_condition_label"))
    if weights is None:
        return None, f"case {case_id}: unparseable weighted_skin_condition_label"
    if not weights:
        return None, f"case {case_id} has no dermatologist label"
    return weights, None


def _tone_fields(case: dict, label_row: dict) -> dict:
    """A case's Fitzpatrick / Monk columns and its tone bucket, from the best source present (dermatologist first)."""
    fst_self = parse_fitzpatrick(case.get("fitzpatrick_skin_type"))
    fst_derm = dermatologist_fitzpatrick(label_row)
    monk_us = parse_monk(label_row.get("monk_skin_tone_label_us"))
    monk_india = parse_monk(label_row.get("monk_skin_tone_label_india"))
    if not _gradable(label_row.get("gradable_for_monk_skin_tone_us")):
        monk_us = None
    if not _gradable(label_row.get("gradable_for_monk_skin_tone_india")):
        monk_india = None
    monk = monk_us if monk_us is not None else monk_india
    fst = fst_derm if fst_derm is not None else fst_self
    if fst_derm is not None:
        bucket, tone_source = bucket_from_fitzpatrick(fst_derm), "dermatologist_fitzpatrick"
    elif monk is not None:
        bucket, tone_source = bucket_from_monk(monk), "monk_us" if monk_us is not None else "monk_india"
    elif fst_self is not None:
        bucket, tone_source = bucket_from_fitzpatrick(fst_self), "self_fitzpatrick"
    else:
        bucket, tone_source = None, None
    return {
        "fitzpatrick": fst,
        "monk": monk,
        "tone_bucket": bucket,
        "fitzpatrick_source": "dermatologist" if fst_derm is not None else "self" if fst_self else None,
        "fitzpatrick_self": fst_self,
        "fitzpatrick_dermatologist": fst_derm,
        "monk_us": monk_us,
        "monk_india": monk_india,
        "tone_source": tone_source,
    }


def _case_fields(case: dict, case_id: str, label_row: dict, weights: dict[str, float], class_of: dict) -> dict:
    """The columns shared by every image of a case: its top condition, tone and demographics."""
    top = top_condition(weights)
    return {
        "label": class_of[top],
        "group_id": case_id,
        "case_id": case_id,
        "condition": top,
        "condition_weight": weights[top],
        "condition_weights": json.dumps(weights),
        **_tone_fields(case, label_row),
        "age_group": case.get("age_group") or None,
        "sex": case.get("sex_at_birth") or None,
        "race_ethnicity": _checked(case, "race_ethnicity_"),
        "body_parts": _checked(case, "body_parts_"),
        "related_category": case.get("related_category") or None,
        "condition_duration": case.get("condition_duration") or None,
    }


class Scin(SkinImageBuilder):
    BUILDER_CONFIG_CLASS = ScinConfig
    LAYOUT = (
        "dataset/scin_cases.csv, dataset/scin_labels.csv and dataset/images/<signed int>.png "
        "(pass the folder that holds SCIN's dataset/ folder)"
    )
    TITLE = "SCIN (Skin Condition Image Network)"
    LICENSE = "SCIN Data Use License (research and education)"
    HOMEPAGE = "https://github.com/google-research-datasets/scin"
    CITATION = """\
@article{ward2024scin,
    title = {Crowdsourcing Dermatology Images with {Google} Search Ads: Creating a Real-World Skin Condition Dataset},
    author = {Ward, Abbi and Li, Jimmy and Wang, Julie and others},
    journal = {arXiv preprint arXiv:2402.18545},
    year = {2024}
}
"""

    # -- layout ---------------------------------------------------------------
    @property
    def dataset_dir(self) -> str:
        """``<root>/dataset``, or the root itself when it is SCIN's ``dataset/`` folder."""
        root = self.root
        if not os.path.isfile(os.path.join(root, "dataset", CASES_CSV)) and os.path.isfile(
            os.path.join(root, CASES_CSV)
        ):
            return root
        self.require(f"dataset/{CASES_CSV}", f"dataset/{LABELS_CSV}")
        return os.path.join(root, "dataset")

    def _read_csv(self, name: str, required: tuple[str, ...]) -> list[dict]:
        path = os.path.join(self.dataset_dir, name)
        if not os.path.isfile(path):
            raise ValueError(f"{self.name}: missing {path!r}. Expected {self.LAYOUT}")
        # csv gives every cell as text, so case_id stays exactly as written.
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(
                    f"{self.name}: {path!r} lacks the column(s) {', '.join(missing)}; is this SCIN's {name}? "
                    f"Expected {self.LAYOUT}"
                )
            return list(reader)

    def _labels_by_case(self) -> dict[str, dict]:
        rows = self._read_csv(LABELS_CSV, ("case_id", "weighted_skin_condition_label"))
        out: dict[str, dict] = {}
        for row in rows:
            out.setdefault(row["case_id"].strip(), row)
        return out

    def _class_map(self, labels: dict[str, dict]) -> dict[str, str]:
        """Top condition → class name (itself, or ``"Other"`` when rare)."""
        counts = Counter()
        for row in labels.values():
            weights = parse_weighted_label(row.get("weighted_skin_condition_label"))
            if weights:
                counts[top_condition(weights)] += 1
        floor = self.config.min_cases_per_class
        return {name: (name if n >= floor else OTHER) for name, n in counts.items()}

    def _resolve_image(self, raw: str) -> str:
        """``dataset/images/-123.png`` (relative to the root) or a bare ``-123.png``."""
        rel = raw.strip().replace("\\", "/")
        candidates = []
        if "/" in rel:
            candidates.append(os.path.join(self.root, *rel.split("/")))
        candidates.append(os.path.join(self.dataset_dir, "images", os.path.basename(rel)))
        for path in candidates:
            if os.path.isfile(path):
                return path
        return candidates[-1]  # the base class reports "file not found"

    # -- builder --------------------------------------------------------------
    def _info(self):
        names = sorted(set(self._class_map(self._labels_by_case()).values()))
        if not names:
            raise ValueError(
                f"{self.name}: no case in {LABELS_CSV} has a weighted_skin_condition_label. Expected {self.LAYOUT}"
            )
        return self.dataset_info(
            {
                "image": datasets.Image(),
                "label": datasets.ClassLabel(names=names),
                "group_id": datasets.Value("string"),
                "case_id": datasets.Value("string"),
                "image_slot": datasets.Value("int8"),
                "shot_type": datasets.Value("string"),
                "condition": datasets.Value("string"),
                "condition_weight": datasets.Value("float32"),
                "condition_weights": datasets.Value("string"),
                **TONE_FEATURES,
                "fitzpatrick_source": datasets.Value("string"),
                "fitzpatrick_self": datasets.Value("int8"),
                "fitzpatrick_dermatologist": datasets.Value("int8"),
                "monk_us": datasets.Value("int8"),
                "monk_india": datasets.Value("int8"),
                "tone_source": datasets.Value("string"),
                "age_group": datasets.Value("string"),
                "sex": datasets.Value("string"),
                "race_ethnicity": datasets.List(datasets.Value("string")),
                "body_parts": datasets.List(datasets.Value("string")),
                "related_category": datasets.Value("string"),
                "condition_duration": datasets.Value("string"),
            }
        )

    def scan(self):
        labels = self._labels_by_case()
        cases = self._read_csv(CASES_CSV, ("case_id", "image_1_path"))
        class_of = self._class_map(labels)
        records, skipped, seen = [], [], {}
        for case in cases:
            case_id = case["case_id"].strip()
            paths = [(i, (case.get(f"image_{i}_path") or "").strip()) for i in IMAGE_SLOTS]
            paths = [(i, self._resolve_image(p)) for i, p in paths if p]
            label_row = labels.get(case_id)
            weights, reason = _case_weights(case_id, label_row)
            if reason:
                skipped.extend({"path": p, "reason": reason} for _, p in paths)
                continue
            shared = _case_fields(case, case_id, label_row, weights, class_of)
            for slot, path in paths:
                if path in seen:
                    skipped.append({"path": path, "reason": f"same image already listed by case {seen[path]}"})
                    continue
                seen[path] = case_id
                records.append(
                    {
                        "image": path,
                        **shared,
                        "image_slot": slot,
                        "shot_type": case.get(f"image_{slot}_shot_type") or None,
                    }
                )
        return records, skipped
