"""Deterministic, leakage-free train / validation / test splits.

Rows that share a group id (a lesion, a patient, a SCIN case, a UTKFace
subject) always land in the same split. Within that constraint the split is
stratified by label with scikit-learn's ``StratifiedGroupKFold`` where the data
allows it (every class needs as many groups as folds); otherwise it falls back
to ``GroupShuffleSplit``-style assignment by a stable hash of the group id, so
the result never depends on row order, Python's hash seed or the platform.

A group that holds more than :data:`OVERSIZED_GROUP_SHARE` of all rows (and
more than :data:`OVERSIZED_GROUP_MIN_ROWS`) goes to train whole: one such group (a chain of DermNet near-duplicates and
consecutive photos of one page) would by itself fill a large part of a 15 %
validation or test split and skew its classes. Held-out splits stay leak-free
either way; they are just carved from the remaining groups.

The seed moves small groups, not the largest ones. ``StratifiedGroupKFold``
hands groups out largest first and gives the first to fold 0, and the held-out
part is that first fold, so the largest groups under the oversized limit land
in the same split whatever the seed: on DermNet's clinical grouping its
60-image cluster is in validation and its 58-image cluster in test for every
seed tried (``bench/clinical_split_spread.py``). Each split is still leak-free
and stratified; it is one draw, not a family of independent ones.
``shuffle_folds=True`` lets the seed also pick the held-out fold, so that any
group can land anywhere, as a study of split-to-split spread needs. The
builders keep the default: changing it would move rows between the train and
test splits of the models already trained on them.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np

SPLITS = ("train", "validation", "test")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
#: Groups larger than this share of the rows (and than ``OVERSIZED_GROUP_MIN_ROWS``) are always assigned to train.
OVERSIZED_GROUP_SHARE = 0.02
OVERSIZED_GROUP_MIN_ROWS = 20


def oversized_limit(n: int) -> float:
    """Rows above which a group of ``n`` rows in all is oversized and goes to train whole."""
    return max(OVERSIZED_GROUP_SHARE * n, OVERSIZED_GROUP_MIN_ROWS)


def _stable_unit(value: Hashable, seed: int) -> float:
    """A number in [0, 1) that depends only on ``value`` and ``seed``."""
    digest = hashlib.sha256(f"{seed}:{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _hash_split(groups: Sequence[Hashable], fractions, seed: int) -> list[str]:
    cut_train = fractions[0]
    cut_val = fractions[0] + fractions[1]
    out = []
    for g in groups:
        u = _stable_unit(g, seed)
        out.append("train" if u < cut_train else "validation" if u < cut_val else "test")
    return out


def _carve(labels, groups, fraction: float, seed: int, shuffle_folds: bool = False) -> np.ndarray:
    """Boolean mask of rows held out (~``fraction`` of groups), stratified: the first of
    ``StratifiedGroupKFold``'s folds, or with ``shuffle_folds`` the one the seed picks."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = max(2, round(1 / fraction))
    n_groups_per_label = Counter()
    first_label = {}
    for lab, g in zip(labels, groups):
        first_label.setdefault(g, lab)
    for lab in first_label.values():
        n_groups_per_label[lab] += 1
    if (len(first_label) < n_splits or min(n_groups_per_label.values()) < 2
            or max(n_groups_per_label.values()) < n_splits):
        # scikit-learn refuses when every class has fewer groups than folds.
        mask = np.array([_stable_unit(g, seed) < fraction for g in groups])
        return mask
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    # Stratify on string labels so mixed / numeric labels behave the same.
    folds = sgkf.split(np.zeros(len(labels)), [str(x) for x in labels], list(groups))
    if shuffle_folds:
        _, held = list(folds)[np.random.default_rng(seed).integers(n_splits)]
    else:
        _, held = next(folds)
    mask = np.zeros(len(labels), dtype=bool)
    mask[held] = True
    return mask


def grouped_split(
    labels: Sequence[Hashable],
    groups: Sequence[Hashable],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 42,
    *,
    shuffle_folds: bool = False,
) -> list[str]:
    """Assign every row to ``"train"``, ``"validation"`` or ``"test"``.

    Args:
        labels: the stratification label of each row (class, age group, grade).
        groups: the group id of each row; a group never spans two splits.
        fractions: target (train, validation, test) fractions of groups.
        seed: makes the assignment reproducible.
        shuffle_folds: let the seed pick the held-out folds too, so that the
            largest groups move between splits from seed to seed (see the
            module docstring); the builders keep ``False``.

    Returns:
        One split name per row, in row order.
    """
    if len(labels) != len(groups):
        raise ValueError(f"labels ({len(labels)}) and groups ({len(groups)}) differ in length")
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    n = len(labels)
    if n == 0:
        return []
    groups = [str(g) for g in groups]
    if len(set(groups)) < 10:
        return _hash_split(groups, fractions, seed)
    out = np.array(["train"] * n, dtype=object)
    sizes = Counter(groups)
    limit = oversized_limit(n)
    pool = np.array([i for i, g in enumerate(groups) if sizes[g] <= limit], dtype=int)
    # held-out shares are of all rows: carve proportionally more from a pool without the oversized groups
    scale = n / max(len(pool), 1)
    test = np.zeros(n, bool)
    if fractions[2] > 0 and len(pool):
        share = min(1.0, fractions[2] * scale)
        test[pool[_carve([labels[i] for i in pool], [groups[i] for i in pool], share, seed, shuffle_folds)]] = True
    out[test] = "test"
    rest = pool[~test[pool]] if len(pool) else pool
    if fractions[1] > 0 and len(rest):
        val_frac = min(1.0, fractions[1] * scale / (fractions[0] + fractions[1]))
        val = _carve([labels[i] for i in rest], [groups[i] for i in rest], val_frac, seed + 1, shuffle_folds)
        out[rest[val]] = "validation"
    return out.tolist()
