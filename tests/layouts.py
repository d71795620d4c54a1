"""Tiny on-disk copies of the publishers' layouts for HAM10000, UTKFace, PAD-UFES-20, DDI and DermNet.

Each ``make_*(tmp_path)`` writes a few-kilobyte dataset under ``tmp_path`` whose
folder names, file names and CSV columns are exactly those of the real release
(see ``../shared/data/README.md``), with small synthetic images, at least ten
groups (so every split gets rows) and one corrupt image each. It returns a
:class:`Layout`: the folder to pass as ``--data-dir`` plus what the builder is
expected to make of it, so tests assert against facts, not re-derived logic.

Nothing here reads the real images; the layouts of the real subsets are in
``../shared/data``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

#: Side of the synthetic images: small keeps fixtures fast on a 2-core CPU.
SIDE = 16


@dataclass
class Layout:
    """A fixture dataset and the facts a builder must reproduce from it."""

    data_dir: Path
    #: number of images the builder should keep
    n_good: int
    #: file name (or path fragment) → substring expected in the skip reason
    skipped: dict[str, str] = field(default_factory=dict)
    #: number of distinct group ids among the kept images
    n_groups: int = 0
    extra: dict = field(default_factory=dict)


# -- image writers --------------------------------------------------------------
def write_image(path: str | os.PathLike, seed: int, size: tuple[int, int] = (SIDE, SIDE)) -> Path:
    """A small random RGB image; the format follows the suffix (.jpg / .png)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.fromarray(arr).save(path, format=fmt)
    return path


def write_truncated(path: str | os.PathLike, seed: int = 0) -> Path:
    """A real image cut in half: the header parses, the end marker is gone."""
    path = write_image(path, seed, size=(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_garbage(path: str | os.PathLike) -> Path:
    """Bytes that are no image at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image\n" * 10)
    return path


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


# -- HAM10000 ---------------------------------------------------------------------
HAM_COLUMNS = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
HAM_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def make_ham10000(tmp_path: str | os.PathLike) -> Layout:
    """``HAM10000_metadata.csv`` + ``images/ISIC_*.jpg``; 20 lesions, some with 2 images.

    Seven classes x two lesions (eight for nv); every first lesion of a class has two images
    (``lesion_id`` is the group). One image is truncated and one row has an
    empty age and an ``unknown`` sex, as in the real CSV.
    """
    root = Path(tmp_path) / "ham10000"
    (root / "images").mkdir(parents=True)
    rows, n, lesion_images = [], 0, {}
    for c, dx in enumerate(HAM_CLASSES):
        for k in range(8 if dx == "nv" else 2):  # nv dominates, as in the real data
            lesion = f"HAM_{c * 10 + k:07d}"
            for _ in range(2 if k == 0 else 1):
                image_id = f"ISIC_{24306 + n:07d}"
                age = "" if n == 3 else f"{30 + 5 * n}.0"
                sex = "unknown" if n == 3 else ("male" if n % 2 else "female")
                rows.append([lesion, image_id, dx, "histo" if dx == "mel" else "consensus", age, sex, "back"])
                lesion_images.setdefault(lesion, []).append(image_id)
                n += 1
    corrupt = rows[16][1]  # the second image of the first nv lesion: the lesion keeps one image
    for lesion, image_id, *_ in rows:
        if image_id == corrupt:
            write_truncated(root / "images" / f"{image_id}.jpg")
        else:
            write_image(root / "images" / f"{image_id}.jpg", seed=int(image_id[5:]))
    _write_csv(root / "HAM10000_metadata.csv", HAM_COLUMNS, rows)
    kept = [r for r in rows if r[1] != corrupt]
    return Layout(
        data_dir=root,
        n_good=len(kept),
        skipped={f"{corrupt}.jpg": "truncated JPEG"},
        n_groups=len({r[0] for r in kept}),
        extra={"rows": rows, "lesion_images": lesion_images},
    )


# -- UTKFace ----------------------------------------------------------------------
def utk_name(age, gender, race, stamp) -> str:
    return f"{age}_{gender}_{race}_{stamp}.jpg.chip.jpg"


def make_utkface(tmp_path: str | os.PathLike) -> Layout:
    """``UTKFace/[age]_[gender]_[race]_[datetime].jpg.chip.jpg`` (returns the parent folder).

    34 well-formed faces over all five default age groups, malformed names
    like the real ones (a field missing, out-of-range values, not digits), one
    truncated JPEG and one exact byte copy of another face under a second name
    (the real folder has 136 such pairs).
    """
    root = Path(tmp_path) / "utkface"
    folder = root / "UTKFace"
    folder.mkdir(parents=True)
    good = []
    ages = [1, 4, 9, 15, 22, 26, 30, 38, 44, 49, 50, 58, 63, 70, 74, 75, 80, 91, 100, 116]
    ages += [20, 21, 23, 24, 27, 28, 29, 31, 33, 35, 40, 45, 52, 55]  # young adults dominate, as in the real data
    for i, age in enumerate(ages):
        name = utk_name(age, i % 2, i % 5, f"201701{10 + i % 20:02d}{i:09d}")
        write_image(folder / name, seed=i)
        good.append(name)
    # the duplicate: same bytes as good[0], another name (and another label, as in the real data)
    dup = utk_name(2, 0, 0, "20170109191453449")
    (folder / dup).write_bytes((folder / good[0]).read_bytes())
    good.append(dup)
    malformed = {
        "39_1_20170116174525125.jpg.chip.jpg": "3 fields",  # race missing (real file name)
        "61_1_20170109142408075.jpg.chip.jpg": "3 fields",  # real file name
        "30_2_0_20170116174525125.jpg.chip.jpg": "gender",  # gender out of range
        "30_1_7_20170116174525126.jpg.chip.jpg": "race",  # race out of range
        "999_1_0_20170116174525127.jpg.chip.jpg": "age",  # age out of range
        "3x_1_0_20170116174525128.jpg.chip.jpg": "not a number",
        "notes.txt": "not a UTKFace file name",
    }
    for k, name in enumerate(malformed):
        if name.endswith(".jpg"):
            write_image(folder / name, seed=100 + k)
        else:
            (folder / name).write_text("x")
    corrupt = utk_name(33, 1, 2, "20170117000000000")
    write_truncated(folder / corrupt)
    skipped = dict(malformed)
    skipped[corrupt] = "truncated JPEG"
    return Layout(
        data_dir=root,
        n_good=len(good),
        skipped=skipped,
        n_groups=len(good) - 1,  # the byte copy joins its original's group
        extra={"good": good, "duplicate": (good[0], dup), "ages": ages + [2]},
    )


# -- PAD-UFES-20 --------------------------------------------------------------------
PAD_COLUMNS = [
    "patient_id", "lesion_id", "smoke", "drink", "background_father", "background_mother", "age",
    "pesticide", "gender", "skin_cancer_history", "cancer_history", "has_piped_water",
    "has_sewage_system", "fitspatrick", "region", "diameter_1", "diameter_2", "diagnostic", "itch",
    "grew", "hurt", "changed", "bleed", "elevation", "img_id", "biopsed",
]  # fmt: skip
PAD_CLASSES = ["ACK", "BCC", "MEL", "NEV", "SCC", "SEK"]


def _pad_row(patient, lesion, age, gender, fst, region, dx, img_id, full: bool) -> list:
    if not full:  # the real CSV leaves the questionnaire empty for many patients
        return [patient, lesion, "", "", "", "", age, "", "", "", "", "", "", "", region, "", "", dx,
                "False", "False", "False", "False", "False", "False", img_id, "False"]  # fmt: skip
    return [patient, lesion, "False", "False", "POMERANIA", "POMERANIA", age, "False", gender, "True",
            "True", "True", "True", fst, region, "6.0", "5.0", dx, "True", "True", "False", "True",
            "True", "True", img_id, "True"]  # fmt: skip


def make_pad_ufes20(tmp_path: str | os.PathLike) -> Layout:
    """``metadata.csv`` (all 26 real columns) + ``images/PAT_*.png``.

    Twenty patients with images (two of them with two lesions; BCC the
    commonest diagnosis, as in the real data), fitspatrick as the real floats
    ("3.0") or empty, five rows whose image is absent (as in the shared subset,
    where most are) and one truncated PNG.
    """
    root = Path(tmp_path) / "pad_ufes20"
    (root / "images").mkdir(parents=True)
    dxs = ["BCC", "ACK", "BCC", "NEV", "BCC", "SEK", "ACK", "BCC", "SCC", "MEL",
           "BCC", "ACK", "BCC", "NEV", "SCC", "SEK", "BCC", "MEL", "ACK", "BCC"]  # fmt: skip
    fsts = ["1.0", "2.0", "3.0", "4.0", "5.0", "6.0", "", "2.0", "", "3.0",
            "1.0", "5.0", "2.0", "", "2.0", "3.0", "4.0", "", "1.0", "2.0"]  # fmt: skip
    rows, with_image = [], []
    lesion = 100
    for p in range(len(dxs)):
        patient = f"PAT_{p + 1}"
        for j in range(2 if p in (0, 5) else 1):
            lesion += 1
            dx = dxs[(p + j) % len(dxs)]
            img_id = f"{patient}_{lesion}_{900 + lesion}.png"
            full = fsts[p] != ""
            rows.append(_pad_row(patient, str(lesion), str(20 + 3 * p), "FEMALE" if p % 2 else "MALE",
                                 fsts[p], "FACE" if p % 3 else "BACK", dx, img_id, full))  # fmt: skip
            with_image.append(img_id)
    missing = []
    for p in range(5):  # metadata rows without an image file
        patient = f"PAT_{200 + p}"
        lesion += 1
        img_id = f"{patient}_{lesion}_{900 + lesion}.png"
        rows.append(_pad_row(patient, str(lesion), "50", "MALE", "2.0", "ARM", "BCC", img_id, True))
        missing.append(img_id)
    corrupt = with_image[3]
    for img_id in with_image:
        if img_id == corrupt:
            write_truncated(root / "images" / img_id)
        else:
            write_image(root / "images" / img_id, seed=len(img_id) + int(img_id.split("_")[2]))
    _write_csv(root / "metadata.csv", PAD_COLUMNS, rows)
    kept = [r for r in rows if r[24] in with_image and r[24] != corrupt]
    return Layout(
        data_dir=root,
        n_good=len(kept),
        skipped={corrupt: "truncated PNG", "images": "metadata rows with no image file"},
        n_groups=len({r[0] for r in kept}),
        extra={"rows": rows, "missing": missing, "kept": kept},
    )


# -- DDI --------------------------------------------------------------------------
DDI_COLUMNS = ["DDI_ID", "DDI_file", "skin_tone", "malignant", "disease"]


def make_ddi(tmp_path: str | os.PathLike, index_column: bool = False) -> Layout:
    """``ddi_metadata.csv`` (DDI_ID, DDI_file, skin_tone, malignant, disease) + ``images/*.png``.

    Thirty images over the three tone pairs x benign (7) / malignant (3),
    ``malignant`` spelled TRUE / FALSE / True / false, one truncated PNG, one
    row with an invalid skin_tone. ``index_column=True`` adds the unnamed
    leading index column that a CSV written by pandas carries.
    """
    root = Path(tmp_path) / "ddi"
    (root / "images").mkdir(parents=True)
    diseases = {True: ["melanoma", "basal-cell-carcinoma", "squamous-cell-carcinoma-in-situ"],
                False: ["melanocytic-nevi", "seborrheic-keratosis", "verruca-vulgaris"]}  # fmt: skip
    spellings = {True: ["TRUE", "True", "true"], False: ["FALSE", "False", "false"]}
    rows = []
    i = 0
    for tone in ("12", "34", "56"):
        for malignant, n in ((True, 3), (False, 7)):
            for k in range(n):
                i += 1
                rows.append([str(i), f"{i:06d}.png", tone, spellings[malignant][k % 3], diseases[malignant][k % 3]])
    corrupt = rows[4][1]
    for row in rows:
        if row[1] == corrupt:
            write_truncated(root / "images" / row[1])
        else:
            write_image(root / "images" / row[1], seed=int(row[0]))
    bad_tone = [str(i + 1), f"{i + 1:06d}.png", "78", "FALSE", "acral-melanotic-macule"]
    write_image(root / "images" / bad_tone[1], seed=999)
    rows.append(bad_tone)
    if index_column:
        _write_csv(root / "ddi_metadata.csv", [""] + DDI_COLUMNS, [[str(k)] + r for k, r in enumerate(rows)])
    else:
        _write_csv(root / "ddi_metadata.csv", DDI_COLUMNS, rows)
    kept = [r for r in rows[:-1] if r[1] != corrupt]
    return Layout(
        data_dir=root,
        n_good=len(kept),
        skipped={corrupt: "truncated PNG", bad_tone[1]: "skin_tone"},
        n_groups=len(kept),
        extra={"rows": rows, "kept": kept},
    )


# -- DermNet ------------------------------------------------------------------------
def write_skin_photo(path: str | os.PathLike, seed: int, size: tuple[int, int] = (64, 48)) -> Path:
    """A small photo-like JPEG: skin tone, uneven light, a few reddish / brown spots, a corner logo.

    Smooth content (not noise) so a perceptual hash sees structure, as in a
    real photo; the white mark in the lower-left corner stands in for DermNet's
    watermark, the same in every image.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    tone = rng.uniform([90, 55, 40], [235, 190, 160])  # dark to light skin
    angle = rng.uniform(0, 2 * np.pi)
    light = 0.75 + 0.25 * np.cos(angle) * (xx / w - 0.5) * 2 + 0.25 * np.sin(angle) * (yy / h - 0.5) * 2
    arr = tone[None, None, :] * light[..., None]
    for _ in range(int(rng.integers(3, 7))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h * 0.7)
        rx, ry = rng.uniform(3, w / 4), rng.uniform(3, h / 4)
        spot = np.exp(-(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2))
        arr = arr * (1 - 0.6 * spot[..., None]) + rng.uniform([60, 10, 10], [200, 80, 60]) * 0.6 * spot[..., None]
    arr = np.clip(arr + rng.normal(0, 3, arr.shape), 0, 255).astype(np.uint8)
    _draw_logo(arr)
    Image.fromarray(arr).save(path, format="JPEG", quality=90)
    return path


def _draw_logo(arr: np.ndarray) -> None:
    h, w = arr.shape[:2]
    arr[int(h * 0.72) : int(h * 0.9), int(w * 0.05) : int(w * 0.2)] = 240


def write_near_copy(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """``src`` cropped by ~5 % at one corner, resized back, recoloured, the logo drawn again."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        w, h = im.size
        crop = im.convert("RGB").crop((round(w * 0.05), round(h * 0.03), w, h)).resize((w, h), Image.BILINEAR)
    arr = np.asarray(crop, dtype=np.float64) / 255
    arr = 255 * (arr**0.8) * np.array([1.06, 0.95, 1.0])  # brighter, warmer
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    _draw_logo(arr)
    Image.fromarray(arr).save(dest, format="JPEG", quality=85)
    return dest


#: (folder, file name, seed): 23 distinct photos in 12 condition folders, as DermNet names them.
DERMNET_PHOTOS = [
    ("Acne vulgaris", "acne-face-1-27.jpg", 1), ("Acne vulgaris", "141.jpg", 2), ("Acne vulgaris", "142.jpg", 3),
    ("Atopic dermatitis", "atopic-dermatitis-0001.jpg", 4), ("Atopic dermatitis", "atopic18.jpg", 5),
    ("Psoriasis", "ppps06.jpg", 6), ("Psoriasis", "2766.jpg", 7),
    ("Tinea corporis", "can-web.jpg", 8), ("Tinea corporis", "tinea-corporis-009.jpg", 9),
    ("Impetigo", "impetigo6.jpg", 10), ("Impetigo", "impetigo9.jpg", 11),
    ("Basal cell carcinoma", "0824.jpg", 12), ("Basal cell carcinoma", "bcc1.jpg", 13),
    ("Actinic keratosis", "311.jpg", 14), ("Actinic keratosis", "500.jpg", 15),
    ("Melanoma", "mel3.jpg", 16), ("Melanoma", "big-melanoma.jpg", 17),
    ("Melanocytic naevus", "3164.jpg", 18), ("Melanocytic naevus", "585.jpg", 19),
    ("Dermatofibroma", "dermfib3.jpg", 20), ("Vitiligo", "vitiligo-02.jpg", 21), ("Vitiligo", "vitiligo-12.jpg", 22),
    ("Urticaria", "urticaria7.jpg", 23),
]  # fmt: skip


def make_dermnet(tmp_path: str | os.PathLike) -> Layout:
    """``images/<Condition name>/<name>.jpg``: 23 photos, their copies, neighbours and bad files.

    Besides the photos in :data:`DERMNET_PHOTOS`: a cropped and recoloured copy
    of ``Psoriasis/2766.jpg`` under another name in another folder (as the real
    folders hold), a byte-identical copy of ``Acne vulgaris/141.jpg`` in
    ``Atopic dermatitis``, the consecutive ``Acne vulgaris/143.jpg`` (a
    neighbour of 142, itself a neighbour of 141) and ``Impetigo/impetigo7.jpg``
    (neighbour of nothing: impetigo6 and impetigo9 are not consecutive to each
    other, but 7 is to 6), one truncated JPEG and a ``notes.txt``. ``Urticaria``
    is outside the ``clinical`` grouping.
    """
    root = Path(tmp_path) / "dermnet"
    images = root / "images"
    for folder, name, seed in DERMNET_PHOTOS:
        write_skin_photo(images / folder / name, seed)
    write_skin_photo(images / "Acne vulgaris" / "143.jpg", 24)
    write_skin_photo(images / "Impetigo" / "impetigo7.jpg", 25)
    near = ("Psoriasis/2766.jpg", "Lichen planus/lp-crop-2.jpg")
    write_near_copy(images / near[0], images / near[1])
    exact = ("Acne vulgaris/141.jpg", "Atopic dermatitis/acne-copy.jpg")
    (images / exact[1]).write_bytes((images / exact[0]).read_bytes())
    write_truncated(images / "Melanoma" / "mel4.jpg")
    (images / "Rosacea").mkdir(parents=True)
    (images / "Rosacea" / "notes.txt").write_text("captions\n")
    n_images = len(DERMNET_PHOTOS) + 4  # two neighbours, the near copy, the byte copy
    return Layout(
        data_dir=root,
        n_good=n_images - 1,  # Urticaria is not in the clinical grouping
        skipped={"mel4.jpg": "truncated JPEG", "notes.txt": "not an image file", "Urticaria": "not in the clinical"},
        # clusters: 141-142-143 + the byte copy; 2766 + its near copy; impetigo6-7
        n_groups=n_images - 1 - 3 - 1 - 1,
        extra={
            "near_copy": near,
            "byte_copy": exact,
            "neighbours": [("Acne vulgaris/141.jpg", "Acne vulgaris/142.jpg"),
                           ("Acne vulgaris/142.jpg", "Acne vulgaris/143.jpg"),
                           ("Impetigo/impetigo6.jpg", "Impetigo/impetigo7.jpg")],
            "n_images": n_images,
        },
    )  # fmt: skip
