"""UTKFace (Zhang, Song & Qi 2017): aligned, cropped faces labelled with age, gender and race.

Layout: ``UTKFace/[age]_[gender]_[race]_[datetime].jpg.chip.jpg`` (200x200);
the data directory may be the folder that holds ``UTKFace/`` or ``UTKFace``
itself. The labels exist only in the file name: age 0-116, gender 0 male /
1 female, race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others.

Deliberate choices:

* **Age groups** (the primary ``label``) are those of the age-progression work
  UTKFace was made for: 0-24, 25-49, 50-74, 75-99, 100+ (``skin.tasks.AGE_BINS``,
  the groups the age model is scored by). Config ``age_bins`` (ascending lower
  edges) changes them; a group is named ``"lo-hi"`` and the last ``"lo+"``.
  Splits are stratified by age group.
* **Malformed names are skipped and counted, never guessed**: the real folder
  has names with a field missing (``39_1_20170116174525125.jpg.chip.jpg``) —
  which field is gone cannot be known — and any value out of range (gender not
  0/1, race not 0-4, age above ``MAX_AGE``) or not a number is skipped too.
* **No skin-tone labels.** ``race`` is a self-/annotator-reported category, not a
  measurement of skin colour; mapping it to Fitzpatrick or tone buckets would
  invent labels, so the tone-label columns are absent. The tone estimated from
  the pixels (``ita_estimated``, ``tone_bucket_estimated``) is there, over the
  whole face chip (``LESION_PHOTOS = False``).
* **Groups.** UTKFace publishes no subject ids, so a subject photographed twice
  can land in two splits; the group id is the file stem up to and including
  the datetime (``age_gender_race_datetime``), i.e. one group per file. The one
  leak that *can* be detected is handled: the real folder holds the same bytes
  under two names (136 pairs, some with different labels), so files with
  identical content share the group id of the first name in sorted order
  (config ``group_duplicates``, default True; costs one read of each file).
"""

from __future__ import annotations

import hashlib
import os
import re

import datasets

from dataset_scripts._base import SkinBuilderConfig, SkinImageBuilder
from skin.tasks import AGE_BINS, age_group_names, age_to_group

GENDERS = ["male", "female"]
RACES = ["White", "Black", "Asian", "Indian", "Others"]
#: Ages above this are label errors (the oldest face in UTKFace is 116).
MAX_AGE = 130
SUFFIX = ".jpg.chip.jpg"
_FIELD = re.compile(r"\d+")


def parse_name(name: str) -> tuple[dict | None, str | None]:
    """``(fields, None)`` for a well-formed UTKFace file name, else ``(None, reason)``."""
    if not name.endswith(SUFFIX):
        return None, f"not a UTKFace file name (expected [age]_[gender]_[race]_[datetime]{SUFFIX})"
    stem = name[: -len(SUFFIX)]
    parts = stem.split("_")
    if len(parts) != 4:
        return None, (
            f"malformed file name: {len(parts)} fields, expected 4 ([age]_[gender]_[race]_[datetime]); "
            "the missing one cannot be told"
        )
    bad = [p for p in parts if not _FIELD.fullmatch(p)]
    if bad:
        return None, f"malformed file name: field {bad[0]!r} is not a number"
    age, gender, race = (int(p) for p in parts[:3])
    if age > MAX_AGE:
        return None, f"age {age} out of range (0-{MAX_AGE})"
    if gender >= len(GENDERS):
        return None, f"gender {gender} out of range (0 male / 1 female)"
    if race >= len(RACES):
        return None, f"race {race} out of range (0-{len(RACES) - 1})"
    return {"stem": stem, "age": age, "gender": gender, "race": race, "datetime": parts[3]}, None


class UTKFaceConfig(SkinBuilderConfig):
    """Adds ``age_bins`` (ascending lower edges of the age groups) and ``group_duplicates``."""

    def __init__(self, *args, age_bins=AGE_BINS, group_duplicates: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(age_bins, (str, bytes)) or not hasattr(age_bins, "__iter__"):
            raise ValueError(f"age_bins must be a list of ascending lower edges like [0, 25, 50], got {age_bins!r}")
        bins = list(age_bins)
        if not bins or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in bins):
            raise ValueError(f"age_bins must be non-negative integers, e.g. [0, 25, 50, 75, 100]; got {age_bins!r}")
        if any(b >= c for b, c in zip(bins, bins[1:])):
            raise ValueError(f"age_bins must be strictly ascending lower edges, got {age_bins!r}")
        self.age_bins = tuple(bins)
        self.group_duplicates = bool(group_duplicates)


def _content_key(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.blake2b(f.read(), digest_size=16).hexdigest()
    except OSError:
        return None  # the base class's file check reports it


class UTKFace(SkinImageBuilder):
    BUILDER_CONFIG_CLASS = UTKFaceConfig
    VERSION = datasets.Version("1.0.0")
    LAYOUT = f"a folder UTKFace/ of [age]_[gender]_[race]_[datetime]{SUFFIX} files (or that folder itself)"
    TITLE = "UTKFace"
    LESION_PHOTOS = False  # face chips: the estimated tone is over the whole image
    LICENSE = "UTKFace terms: non-commercial research only"
    HOMEPAGE = "https://susanqq.github.io/UTKFace/"
    CITATION = """\
@inproceedings{zhang2017utkface,
    title = {Age Progression/Regression by Conditional Adversarial Autoencoder},
    author = {Zhang, Zhifei and Song, Yang and Qi, Hairong},
    booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
    year = {2017}
}
"""

    def _info(self):
        groups = age_group_names(self.config.age_bins)
        return self.dataset_info(
            {
                "image": datasets.Image(),
                "label": datasets.ClassLabel(names=groups),
                "age_group": datasets.ClassLabel(names=groups),
                "age": datasets.Value("int16"),
                "gender": datasets.ClassLabel(names=GENDERS),
                "race": datasets.ClassLabel(names=RACES),
                "group_id": datasets.Value("string"),
                "datetime": datasets.Value("string"),
            }
        )

    @property
    def image_dir(self) -> str:
        """``<data_dir>/UTKFace`` if present, else ``data_dir`` when it holds the faces itself."""
        nested = os.path.join(self.root, "UTKFace")
        if os.path.isdir(nested):
            return nested
        with os.scandir(self.root) as it:
            if any(e.name.endswith(SUFFIX) for e in it):
                return self.root
        raise ValueError(
            f"{self.name}: {self.root!r} has no UTKFace/ folder and no *{SUFFIX} files. Expected {self.LAYOUT}"
        )

    def scan(self):
        folder = self.image_dir
        bins = self.config.age_bins
        groups = age_group_names(bins)
        records, skipped = [], []
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.startswith(".") or os.path.isdir(path):
                continue  # .DS_Store and the like
            fields, reason = parse_name(name)
            if fields is None:
                skipped.append({"path": path, "reason": reason})
                continue
            if fields["age"] < bins[0]:
                skipped.append({"path": path, "reason": f"age {fields['age']} is below the first age bin {bins[0]}"})
                continue
            group = groups[age_to_group(fields["age"], bins)]
            records.append(
                {
                    "image": path,
                    "label": group,
                    "age_group": group,
                    "age": fields["age"],
                    "gender": fields["gender"],
                    "race": fields["race"],
                    "group_id": fields["stem"],
                    "datetime": fields["datetime"],
                }
            )
        if self.config.group_duplicates:
            first_stem: dict[str, str] = {}
            for rec in records:  # sorted by name, so "first" is stable
                key = _content_key(rec["image"])
                if key is not None:
                    rec["group_id"] = first_stem.setdefault(key, rec["group_id"])
        return records, skipped
