"""What every SkinLens builder shares: scan → check files → grouped split → yield.

A concrete builder declares its features and a ``scan()`` that reads the
publisher's layout into plain records; this base class checks each image file,
records what it skips and why, and splits the records into train / validation
/ test by group id (``skin.splits.grouped_split``), stratified by
``stratify_key``.

It also gives every example of every builder the skin tone estimated from the
image's own pixels (:data:`ESTIMATED_TONE_FEATURES`, from
:func:`skin.tone.estimate_tone`), so that each dataset can be split by tone
whether or not its publisher labelled any: a builder only declares whether its
images are close-ups centred on a lesion (``LESION_PHOTOS = True``, the
default: the lesion centre is left out, as the app does for a photo without a
face) or faces (``False``: the whole image). The values are computed while the
Arrow files are written, so they are cached with the prepared dataset.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Hashable

import datasets
from PIL import Image

from skin.images import image_file_problem
from skin.splits import SPLITS, grouped_split
from skin.tone import estimate_tone

# Columns that several builders share, with the same meaning everywhere.
TONE_FEATURES = {
    "fitzpatrick": datasets.Value("int8"),  # 1-6, None when unknown
    "monk": datasets.Value("int8"),  # 1-10, None when unknown
    "tone_bucket": datasets.Value("string"),  # light / medium / dark / None
}
#: Columns the base class adds to every builder: the tone estimated from the image's skin pixels
#: (:func:`skin.tone.estimate_tone`), on the same three buckets as ``tone_bucket`` (which comes from labels).
ESTIMATED_TONE_FEATURES = {
    "ita_estimated": datasets.Value("float32"),  # ITA in degrees; None when too little skin
    "tone_bucket_estimated": datasets.Value("string"),  # light / medium / dark / None
}
#: Long side (px) of the copy each image's tone is estimated on. Smaller than the app's
#: ``skin.tone.WORK_SIDE``: a dataset has thousands of images, a median of L* and b* needs only a few
#: thousand pixels, and JPEGs can then be decoded at a fraction of their size. How often this and
#: the app's size give the same bucket is measured in ``bench/README.md``.
TONE_WORK_SIDE = 48


class SkinBuilderConfig(datasets.BuilderConfig):
    """Adds the split parameters every builder understands."""

    def __init__(self, *args, split_seed: int = 42, split_fractions=(0.7, 0.15, 0.15), **kwargs):
        super().__init__(*args, **kwargs)
        self.split_seed = split_seed
        self.split_fractions = tuple(split_fractions)

    def check(self) -> None:
        """Refuse bad option values, naming the fix. The builder calls it once its config is final:
        ``datasets`` applies options given with a predefined config (DermNet's groupings) by
        ``setattr`` on a copy, so checks in ``__init__`` alone would not see them."""


class SkinImageBuilder(datasets.GeneratorBasedBuilder):
    """Base class; subclasses set ``LAYOUT`` and implement ``_info`` and ``scan``."""

    BUILDER_CONFIG_CLASS = SkinBuilderConfig
    #: Human description of the expected folder layout, quoted in errors.
    LAYOUT = ""
    #: Where the data come from and on what terms, declared once per builder: ``_info`` passes
    #: them to ``datasets.DatasetInfo`` (through :meth:`dataset_info`), and the app's fairness card
    #: and the model card read them from the class (``skin.data.dataset_info``) without any data.
    TITLE = ""
    LICENSE = ""
    #: The Hub's licence identifier for a model trained on these data (its card's ``license``):
    #: a standard one where the data's licence is one, else ``"other"``, and the card then names
    #: the terms and links ``HOMEPAGE``.
    HUB_LICENSE = "other"
    HOMEPAGE = ""
    CITATION = ""
    #: Whether the images are close-ups centred on a lesion (the lesion centre and the darkest pixels
    #: are left out of the estimated tone, as the app does for a photo without a face) or faces and
    #: face regions (``False``: the whole image is used).
    LESION_PHOTOS = True
    #: Part of the cache key, beside the data folder's fingerprint: ``datasets`` keys its cache on
    #: the config, the version and this hash, never on the code, so bump this whenever what the base
    #: class adds to every example changes, or caches prepared by older code would be served.
    PREPARED_REVISION = "tone2"

    def __init__(self, *args, hash: str | None = None, **kwargs):
        super().__init__(*args, hash=f"{hash}-{self.PREPARED_REVISION}" if hash else self.PREPARED_REVISION, **kwargs)
        self.config.check()

    # -- for subclasses -----------------------------------------------------
    def dataset_info(self, features: dict) -> datasets.DatasetInfo:
        """The ``DatasetInfo`` of ``_info``: the builder module's docstring, the class's licence,
        homepage and citation, and ``features`` plus :data:`ESTIMATED_TONE_FEATURES`."""
        return datasets.DatasetInfo(
            description=sys.modules[type(self).__module__].__doc__,
            license=self.LICENSE,
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
            features=datasets.Features({**features, **ESTIMATED_TONE_FEATURES}),
        )

    def scan(self) -> tuple[list[dict], list[dict]]:
        """Read the layout: ``(records, skipped)``.

        Each record is an example dict whose ``image`` is a file path and which
        has a ``group_id``; keys starting with ``_`` are private to the builder
        (passed to :meth:`make_example`, never written). ``skipped`` holds
        ``{"path", "reason"}`` dicts for rows the layout itself rules out.
        """
        raise NotImplementedError

    def stratify_key(self, record: dict) -> Hashable:
        return record["label"]

    def make_example(self, record: dict) -> dict:
        """Turn a record into the example written to disk (override to crop…)."""
        return {k: v for k, v in record.items() if not k.startswith("_")}

    # -- shared machinery ---------------------------------------------------
    @property
    def root(self) -> str:
        data_dir = self.config.data_dir
        if not data_dir:
            raise ValueError(f"{self.name}: no data directory given. Pass --data-dir pointing at {self.LAYOUT}")
        if not os.path.isdir(data_dir):
            raise ValueError(f"{self.name}: data directory {data_dir!r} does not exist. Expected {self.LAYOUT}")
        return data_dir

    def require(self, *relpaths: str) -> None:
        """Fail with the expected layout if any of ``relpaths`` is missing."""
        missing = [p for p in relpaths if not os.path.exists(os.path.join(self.root, p))]
        if missing:
            raise ValueError(
                f"{self.name}: {self.root!r} does not look like this dataset: missing {', '.join(missing)}. "
                f"Expected {self.LAYOUT}"
            )

    def split_records(self) -> tuple[dict[str, list[dict]], list[dict]]:
        """Records per split after file checks, and everything skipped."""
        records, skipped = self.scan()
        good = []
        for rec in records:
            problem = image_file_problem(rec["image"])
            if problem:
                skipped.append({"path": rec["image"], "reason": problem})
            else:
                good.append(rec)
        if not good:
            raise ValueError(f"{self.name}: no usable images under {self.root!r}. Expected {self.LAYOUT}")
        assignment = grouped_split(
            [self.stratify_key(r) for r in good],
            [r["group_id"] for r in good],
            fractions=self.config.split_fractions,
            seed=self.config.split_seed,
        )
        by_split = {s: [] for s in SPLITS}
        for rec, split in zip(good, assignment):
            by_split[split].append(rec)
        return by_split, skipped

    def _split_generators(self, dl_manager):
        by_split, self.skipped = self.split_records()
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"records": recs})
            for split, recs in by_split.items()
            if recs
        ]

    def estimated_tone(self, image) -> dict:
        """The :data:`ESTIMATED_TONE_FEATURES` of one image: a path, or the ``{"bytes", "path"}``
        dict a :meth:`make_example` may write (a crop)."""
        source = image
        if isinstance(image, dict):
            source = io.BytesIO(image["bytes"]) if image.get("bytes") is not None else image["path"]
        try:
            with Image.open(source) as im:
                im.draft("RGB", (TONE_WORK_SIDE, TONE_WORK_SIDE))  # JPEG: decode at 1/2 to 1/8 scale
                tone = estimate_tone(im, lesion_photo=self.LESION_PHOTOS, work_side=TONE_WORK_SIDE)
        except OSError as e:  # the header passed the file check, the pixels do not decode
            where = image.get("path") if isinstance(image, dict) else image
            raise ValueError(f"{self.name}: cannot decode {where!r} ({type(e).__name__}: {e})") from e
        return {"ita_estimated": tone["ita"], "tone_bucket_estimated": tone["bucket"]}

    def _generate_examples(self, records):
        for i, rec in enumerate(records):
            example = self.make_example(rec)
            yield i, {**example, **self.estimated_tone(example["image"])}
