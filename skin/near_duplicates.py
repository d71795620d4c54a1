"""Near-duplicate clusters for datasets without patient ids: perceptual hashes + neighbouring file numbers.

A web atlas such as DermNet publishes the same photo several times (cropped a
little, resized, recoloured, under another name or in another condition's
folder) and shows one patient in consecutively numbered photos. A split by file
would put copies of one photo on both sides of train / test. This module finds
the pairs that must stay together and joins them into clusters (connected
components, ``scipy.sparse.csgraph``); a builder uses the cluster as its
``group_id``.

Two rules, each a set of pairs:

* **Perceptual hash.** imagehash's pHash (DCT of a 32x32 grayscale image, the
  8x8 lowest frequencies against their median: 64 bits) of a *normalised
  thumbnail*: 128x96 grayscale (JPEGs are decoded at that size by libjpeg's
  DCT scaling, which is most of the speed), histogram-equalised so a copy with
  other brightness, contrast or tone curve matches, with the watermark corner
  (:data:`WATERMARK_BOX`) set to mid grey, because a logo that every image
  carries at the same place makes unrelated photos look alike. Each image is
  hashed whole and as nine 92 % crops (corners, edge middles, centre): two
  images are near-duplicates when their whole-image hashes, or one's whole
  hash and one of the other's crop hashes, differ in at most
  :data:`PHASH_THRESHOLD` bits, so a copy cropped by a few percent still
  matches. The hashes of all views of all images are computed as a batch of
  matrix products (:func:`phash_views`: imagehash's arithmetic, with Pillow's
  LANCZOS resize as a matrix), because ten Pillow resizes per file cost more
  than decoding it; a test checks the result against ``imagehash.phash`` on
  the same views (Pillow rounds each resize pass to 8 bits, so a bit or two
  next to the median may differ).
* **Neighbouring numbers.** Files in the same folder whose names differ only in
  a final number that differs by one (``scabies-013.jpg`` / ``scabies-014.jpg``)
  are joined: consecutive photos in an atlas often come from one patient's page.
  Chains join: 13-14-15 is one cluster.

Both err on the side of merging (unrelated photos do end in one cluster),
because a leak between train and test costs more than a coarser split;
``bench/README.md`` measures how much coarser.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageOps

#: The thumbnail every hash is computed on (width, height): the DermNet photos are 4:3.
THUMB_SIZE = (128, 96)
#: The corner a watermark occupies, as fractions (left, top, right, bottom) of the image:
#: DermNet's logo and its "Te Whatu Ora" caption both lie in the lower-left corner.
WATERMARK_BOX = (0.0, 0.62, 0.5, 1.0)
#: Side of each crop, as a fraction of the thumbnail, and where the crops sit (x, y in 0..1).
CROP_SCALE = 0.92
CROP_ANCHORS = tuple((x, y) for y in (0.0, 0.5, 1.0) for x in (0.0, 0.5, 1.0))
#: Hamming distance (of 64 bits) at or below which two images are near-duplicates; chosen on the
#: real DermNet folder by looking at pairs on either side of it (``bench/README.md``). pHashes of
#: two images differ in an even number of bits (each has as many ones as zeros), so 6 = 7.
PHASH_THRESHOLD = 6
_PHASH_SIDE = 32  # imagehash.phash: hash_size 8 x highfreq_factor 4
_NAME_NUMBER = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)(?P<suffix>\D*)$")


def thumbnail(path: str | os.PathLike, box: tuple[float, float, float, float] | None = WATERMARK_BOX) -> np.ndarray:
    """The normalised grayscale thumbnail that is hashed, ``(height, width)`` uint8 (see the module docstring).

    Raises Pillow's ``OSError`` when the file does not decode (truncated, not an image).
    """
    with Image.open(path) as im:
        im.draft("L", THUMB_SIZE)  # JPEG: decode at 1/2, 1/4 ... scale, straight to grayscale
        gray = im.convert("L")
    if gray.size != THUMB_SIZE:
        gray = gray.resize(THUMB_SIZE, Image.Resampling.BILINEAR)
    arr = np.array(ImageOps.equalize(gray))
    if box is not None:
        w, h = THUMB_SIZE
        left, top, right, bottom = box
        arr[round(top * h) : round(bottom * h), round(left * w) : round(right * w)] = 128
    return arr


def view_boxes(size: tuple[int, int] = THUMB_SIZE) -> list[tuple[int, int, int, int]]:
    """``(left, top, right, bottom)`` of each view: the whole image, then the crops."""
    w, h = size
    cw, ch = round(w * CROP_SCALE), round(h * CROP_SCALE)
    boxes = [(0, 0, w, h)]
    for ax, ay in CROP_ANCHORS:
        x, y = round((w - cw) * ax), round((h - ch) * ay)
        boxes.append((x, y, x + cw, y + ch))
    return boxes


def _lanczos(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)


def _resize_matrix(start: int, stop: int, size_in: int, size_out: int) -> np.ndarray:
    """``(size_out, size_in)``: Pillow's LANCZOS resize of ``[start, stop)`` as a matrix (in floats).

    The taps and their normalisation follow Pillow's ``precompute_coeffs``;
    Pillow then rounds to 8 bits after each pass, which this does not.
    """
    scale = (stop - start) / size_out
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    out = np.zeros((size_out, size_in))
    for i in range(size_out):
        center = start + (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), size_in)
        taps = np.arange(lo, hi)
        w = _lanczos((taps - center + 0.5) / filterscale)
        out[i, lo:hi] = w / w.sum()
    return out


def _dct_rows(n: int, k: int = 8) -> np.ndarray:
    """The first ``k`` rows of the unnormalised type-II DCT (``scipy.fft.dct``) on ``n`` points."""
    return 2 * np.cos(np.pi * np.arange(k)[:, None] * (2 * np.arange(n)[None, :] + 1) / (2 * n))


@lru_cache(maxsize=4)
def _operators(size: tuple[int, int] = THUMB_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Maps from a thumbnail to each view's 8x8 DCT block: the distinct row maps (8 x height) and
    column maps (8 x width), and for each view which row and which column map it uses."""
    w, h = size
    dct = _dct_rows(_PHASH_SIDE)
    boxes = view_boxes(size)
    row_spans = sorted({(top, bottom) for _, top, _, bottom in boxes})
    col_spans = sorted({(left, right) for left, _, right, _ in boxes})
    rows = np.stack([dct @ _resize_matrix(top, bottom, h, _PHASH_SIDE) for top, bottom in row_spans])
    cols = np.stack([dct @ _resize_matrix(left, right, w, _PHASH_SIDE) for left, right in col_spans])
    row_of = np.array([row_spans.index((top, bottom)) for _, top, _, bottom in boxes])
    col_of = np.array([col_spans.index((left, right)) for left, _, right, _ in boxes])
    return rows.astype(np.float32), cols.astype(np.float32), row_of, col_of


def phash_views(thumbs: np.ndarray, chunk: int = 256) -> np.ndarray:
    """``(n, views)`` uint64 pHashes of a stack of ``(n, height, width)`` thumbnails, all views at once.

    pHash is linear up to its median test: crop, LANCZOS resize to 32x32 and
    the 2-D DCT are one matrix product per side. The ten views share four row
    spans, so the rows are reduced once per span, then the columns per view.
    """
    rows, cols, row_of, col_of = _operators((thumbs.shape[2], thumbs.shape[1]))
    out = [np.zeros((0, len(row_of)), dtype=np.uint64)]
    for start in range(0, len(thumbs), chunk):
        part = thumbs[start : start + chunk].astype(np.float32)
        half = np.einsum("ray,nyx->nrax", rows, part)
        low = np.einsum("nvax,vbx->nvab", half[:, row_of], cols[col_of]).reshape(len(part), len(row_of), 64)
        bits = low > np.median(low, axis=2, keepdims=True)
        out.append(np.packbits(bits, axis=2).view(">u8")[..., 0].astype(np.uint64))
    return np.concatenate(out)


def hash_files(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """``(len(paths), 1 + len(CROP_ANCHORS))`` uint64 hashes: per file the whole image, then its crops."""
    if not paths:
        return np.zeros((0, 1 + len(CROP_ANCHORS)), dtype=np.uint64)
    return phash_views(np.stack([thumbnail(p) for p in paths]))


def to_hex(hashes: np.ndarray) -> list[str]:
    """16-digit hex strings, as ``str(imagehash.phash(...))`` writes them."""
    return [f"{int(h):016x}" for h in np.asarray(hashes, dtype=np.uint64).ravel()]


def hash_pairs(hashes: np.ndarray, threshold: int = PHASH_THRESHOLD, block: int = 1024) -> np.ndarray:
    """``(m, 2)`` index pairs ``i < j`` whose hashes match (see the module docstring).

    ``hashes`` is ``(n, k)``: column 0 the whole image, the others its crops.
    Every view of row ``i`` is compared with the whole of every ``j``, which
    covers both directions (``j``'s crops meet ``i``'s whole from row ``j``).
    Distances are computed in blocks of rows so memory stays ``block x n``.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    whole = hashes[:, 0]
    found = [np.zeros((0, 2), dtype=np.int64)]
    for start in range(0, len(hashes), block):
        rows = hashes[start : start + block]
        dist = np.bitwise_count(rows[:, :1] ^ whole[None, :])
        for k in range(1, hashes.shape[1]):
            np.minimum(dist, np.bitwise_count(rows[:, k : k + 1] ^ whole[None, :]), out=dist)
        i, j = np.nonzero(dist <= threshold)
        i += start
        keep = i != j
        found.append(np.sort(np.stack([i[keep], j[keep]], axis=1), axis=1))
    return np.unique(np.concatenate(found), axis=0)


def name_number(file_name: str) -> tuple[str, int, str] | None:
    """``"scabies-013.jpg"`` → ``("scabies-", 13, "")``: the last number in the stem; none → ``None``.

    Prefix and suffix are compared case-insensitively; the number's width is
    ignored (``-009`` and ``-0010`` are neighbours).
    """
    m = _NAME_NUMBER.match(os.path.splitext(file_name)[0])
    if not m:
        return None
    return m.group("prefix").lower(), int(m.group("number")), m.group("suffix").lower()


def neighbour_pairs(folders: Sequence[str], file_names: Sequence[str]) -> np.ndarray:
    """``(m, 2)`` index pairs of files in the same folder whose final numbers are consecutive."""
    where = {}
    for i, (folder, name) in enumerate(zip(folders, file_names)):
        parsed = name_number(name)
        if parsed:
            prefix, number, suffix = parsed
            where.setdefault((folder, prefix, suffix, number), []).append(i)
    pairs = []
    for (folder, prefix, suffix, number), members in where.items():
        for i in members:
            for j in where.get((folder, prefix, suffix, number + 1), ()):
                pairs.append((min(i, j), max(i, j)))
    return np.array(sorted(set(pairs)), dtype=np.int64).reshape(-1, 2)


def cluster_labels(n: int, *pair_sets: np.ndarray) -> np.ndarray:
    """Connected components of the union of ``pair_sets`` over ``n`` items: a label per item."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = np.concatenate([np.asarray(p, dtype=np.int64).reshape(-1, 2) for p in pair_sets] or [np.zeros((0, 2))])
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


@dataclass(frozen=True)
class ClusterReport:
    """What the clustering did, for ``skin.data info`` and the tests."""

    images: int
    #: pairs each rule found (a pair may be found by both)
    pairs: dict[str, int]
    clusters: int
    #: ``images - clusters``: how many images joined another's cluster
    merged: int
    #: clusters of more than one image
    multi_image_clusters: int
    largest: int
    #: images merged by each rule applied alone
    merged_by_rule: dict[str, int]
    phash_threshold: int

    def to_dict(self) -> dict:
        return asdict(self)


def report(n: int, rules: dict[str, np.ndarray], labels: np.ndarray, threshold: int) -> ClusterReport:
    """The :class:`ClusterReport` of ``labels`` (from :func:`cluster_labels`) and the ``rules`` that made them."""
    sizes = np.bincount(labels, minlength=1) if n else np.zeros(0, dtype=int)
    n_clusters = int((sizes > 0).sum())
    return ClusterReport(
        images=n,
        pairs={name: int(len(p)) for name, p in rules.items()},
        clusters=n_clusters,
        merged=n - n_clusters,
        multi_image_clusters=int((sizes > 1).sum()),
        largest=int(sizes.max()) if n else 0,
        merged_by_rule={name: n - len(set(cluster_labels(n, p).tolist())) for name, p in rules.items()},
        phash_threshold=threshold,
    )

