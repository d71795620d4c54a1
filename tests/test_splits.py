"""skin.splits.grouped_split: no group in two splits, stratified, reproducible, independent of row order."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from skin.splits import DEFAULT_FRACTIONS, SPLITS, grouped_split


def _data(n_groups=300, seed=0):
    """Rows of groups with 1-4 rows each; labels imbalanced 60/30/10 and constant within a group."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for g in range(n_groups):
        label = rng.choice(["nv", "mel", "bcc"], p=[0.6, 0.3, 0.1])
        for _ in range(rng.integers(1, 5)):
            labels.append(str(label))
            groups.append(f"lesion_{g}")
    return labels, groups


def _split_of_group(groups, out):
    seen = defaultdict(set)
    for g, s in zip(groups, out):
        seen[g].add(s)
    return seen


def test_no_group_spans_two_splits_and_every_row_is_assigned():
    labels, groups = _data()
    out = grouped_split(labels, groups)
    assert len(out) == len(labels) and set(out) == set(SPLITS)
    assert all(len(s) == 1 for s in _split_of_group(groups, out).values())


def test_fractions_of_groups_and_labels_are_close_to_the_target():
    labels, groups = _data(600)
    out = grouped_split(labels, groups)
    by_group = {g: next(iter(s)) for g, s in _split_of_group(groups, out).items()}
    shares = Counter(by_group.values())
    for split, target in zip(SPLITS, DEFAULT_FRACTIONS):
        assert shares[split] / len(by_group) == pytest.approx(target, abs=0.04), shares
    # stratified: the rare class keeps its share in every split
    overall = Counter(labels)["bcc"] / len(labels)
    for split in SPLITS:
        rows = [lab for lab, s in zip(labels, out) if s == split]
        assert Counter(rows)["bcc"] / len(rows) == pytest.approx(overall, abs=0.05), split


def test_reproducible_and_independent_of_row_order():
    labels, groups = _data()
    out = grouped_split(labels, groups, seed=7)
    assert grouped_split(labels, groups, seed=7) == out
    order = np.random.default_rng(1).permutation(len(labels))
    shuffled = grouped_split([labels[i] for i in order], [groups[i] for i in order], seed=7)
    assert {groups[i]: s for i, s in zip(order, shuffled)} == {g: s for g, s in zip(groups, out)}
    assert grouped_split(labels, groups, seed=8) != out


def test_few_groups_fall_back_to_a_stable_hash():
    labels = ["a", "b", "a", "b", "a", "a"]
    groups = ["p1", "p1", "p2", "p3", "p4", "p5"]  # fewer than 10 groups: no stratification possible
    out = grouped_split(labels, groups)
    assert set(out) <= set(SPLITS)
    assert out[0] == out[1]
    assert grouped_split(labels[::-1], groups[::-1]) == out[::-1]


def test_classes_with_too_few_groups_still_split_without_leaks():
    labels = ["common"] * 200 + ["rare"]
    groups = [f"g{i // 2}" for i in range(200)] + ["g_rare"]
    out = grouped_split(labels, groups)
    assert all(len(s) == 1 for s in _split_of_group(groups, out).values())
    assert set(out) == set(SPLITS)


def test_zero_fractions_leave_a_split_empty():
    labels, groups = _data()
    out = grouped_split(labels, groups, fractions=(0.8, 0.0, 0.2))
    assert "validation" not in out and {"train", "test"} == set(out)
    assert grouped_split([], []) == []


@pytest.mark.parametrize("fractions", [(0.7, 0.2, 0.2), (0.5, 0.5), (1.2, -0.1, -0.1)])
def test_bad_fractions_raise(fractions):
    with pytest.raises(ValueError, match="fractions"):
        grouped_split(["a"], ["g"], fractions=fractions)


def test_lengths_must_match():
    with pytest.raises(ValueError, match="differ in length"):
        grouped_split(["a", "b"], ["g"])


def test_an_oversized_group_goes_to_train_and_held_out_splits_keep_their_size():
    # 30 classes of small groups plus one group holding 10 % of the rows (a chain of near-duplicates)
    labels, groups = [], []
    for i in range(600):
        labels.append(i % 6)
        groups.append(f"g{i // 2}")
    labels += [0] * 66
    groups += ["chain"] * 66
    out = grouped_split(labels, groups)
    chain = {s for s, g in zip(out, groups) if g == "chain"}
    assert chain == {"train"}
    n = len(out)
    for split in ("validation", "test"):
        share = out.count(split) / n
        assert 0.12 < share < 0.18, (split, share)
        assert {labels[i] for i, s in enumerate(out) if s == split} == set(range(6))


def _with_a_large_group(seed=0):
    """Small groups of three classes plus one group of 20 rows, under the oversized limit."""
    labels, groups = _data(n_groups=300, seed=seed)
    labels += ["nv"] * 20
    groups += ["large"] * 20
    return labels, groups


def _split_of(name, groups, out):
    (split,) = _split_of_group(groups, out)[name]
    return split


def test_the_default_seed_leaves_the_largest_group_where_it_was():
    # documented behaviour the shipped splits depend on: StratifiedGroupKFold places the largest group first
    labels, groups = _with_a_large_group()
    assert len({_split_of("large", groups, grouped_split(labels, groups, seed=s)) for s in range(12)}) == 1


def test_shuffle_folds_moves_the_largest_group_and_stays_leak_free():
    labels, groups = _with_a_large_group()
    places = Counter()
    for seed in range(24):
        out = grouped_split(labels, groups, seed=seed, shuffle_folds=True)
        assert all(len(s) == 1 for s in _split_of_group(groups, out).values())
        assert grouped_split(labels, groups, seed=seed, shuffle_folds=True) == out  # reproducible
        for split in ("validation", "test"):
            assert 0.10 < out.count(split) / len(out) < 0.20, (seed, split)
        places[_split_of("large", groups, out)] += 1
    assert set(places) == set(SPLITS), places  # every split receives it under some seed
    assert places["train"] > places["validation"] and places["train"] > places["test"]


def test_shuffle_folds_leaves_the_default_untouched():
    labels, groups = _data()
    assert grouped_split(labels, groups, seed=3, shuffle_folds=False) == grouped_split(labels, groups, seed=3)
