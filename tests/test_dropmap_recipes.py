"""Recipes on hand-made numbers: what each keeps, ties, forced experts, class weights, groups."""

from __future__ import annotations

import pytest

from release.errors import InputError
from release.spec.drop_recipes import Recipe, expert_scores, recipe_problems, select_layer

# Two classes, six experts. Counts are tokens routed; sums are Σ router weight × ‖output‖.
COUNTS = {"code": [10, 10, 10, 10, 0, 10], "math": [10, 10, 10, 10, 4, 0]}
SUMS = {"code": [5.0, 4.0, 3.0, 2.0, 0.0, 1.0], "math": [50.0, 40.0, 30.0, 20.0, 8.0, 0.0]}


def test_pooled_is_reap_over_all_tokens() -> None:
    assert expert_scores(COUNTS, SUMS, Recipe("pooled")) == [55 / 20, 44 / 20, 33 / 20, 22 / 20, 8 / 4, 1 / 10]
    weighted = expert_scores(COUNTS, SUMS, Recipe("pooled", class_weights={"code": 3.0}))
    assert weighted[0] == (3 * 5.0 + 50.0) / (3 * 10 + 10)


def test_max_class_normalises_each_class_within_the_layer() -> None:
    # code's best (expert 0) scores 0.5 per token, math's best 5.0: both become 1.
    scores = expert_scores(COUNTS, SUMS, Recipe("max-class"))
    assert scores == [1.0, 0.8, 0.6, 0.4, 2.0 / 5.0, 0.1 / 0.5]
    assert select_layer(COUNTS, SUMS, Recipe("max-class"), 4) == (0, 1, 2, 3)
    # Expert 5 only serves code; weighting code up lets it outrank math's weakest.
    heavy = Recipe("max-class", class_weights={"code": 3.0})
    assert expert_scores(COUNTS, SUMS, heavy)[5] == pytest.approx(0.6)
    assert select_layer(COUNTS, SUMS, heavy, 4) == (0, 1, 2, 3)
    assert select_layer(COUNTS, SUMS, heavy, 5) == (0, 1, 2, 3, 5)


def test_pooled_and_max_class_differ_on_a_specialist() -> None:
    # Expert 4 serves only math, where every expert is weak; elsewhere it would lose.
    counts = {"math": [10, 10, 10, 10, 10], "prose": [10, 10, 10, 10, 0]}
    sums = {"math": [0.1, 0.1, 0.1, 0.1, 0.9], "prose": [9.0, 8.0, 7.0, 6.0, 0.0]}
    assert 4 not in select_layer(counts, sums, Recipe("pooled"), 4)
    assert 4 in select_layer(counts, sums, Recipe("max-class"), 4)


def test_ties_go_to_the_lower_index() -> None:
    counts = {"a": [1, 1, 1, 1]}
    sums = {"a": [2.0, 1.0, 2.0, 1.0]}
    assert select_layer(counts, sums, Recipe("pooled"), 3) == (0, 1, 2)
    assert select_layer(counts, sums, Recipe("max-class"), 1) == (0,)


def test_keep_top_per_class_forces_each_class_best() -> None:
    # Without forcing, code's best (expert 0) is also math's best; code's second (5) would go.
    counts = {"code": [10, 0, 0, 0, 0, 10], "math": [10, 10, 10, 10, 10, 0]}
    sums = {"code": [9.0, 0, 0, 0, 0, 1.0], "math": [50.0, 40.0, 30.0, 20.0, 10.0, 0.0]}
    assert select_layer(counts, sums, Recipe("pooled"), 4) == (0, 1, 2, 3)
    assert select_layer(counts, sums, Recipe("pooled", keep_top_per_class=2), 4) == (0, 1, 2, 5)
    with pytest.raises(InputError, match="forces 4 experts in layer 7, more than the 3 kept"):
        select_layer(counts, sums, Recipe("pooled", keep_top_per_class=3), 3, layer=7)


def test_groups_keep_the_same_number_each() -> None:
    counts = {"a": [1] * 8}
    sums = {"a": [8.0, 7.0, 6.0, 5.0, 1.0, 2.0, 3.0, 4.0]}
    assert select_layer(counts, sums, Recipe("pooled"), 4) == (0, 1, 2, 3)
    assert select_layer(counts, sums, Recipe("pooled"), 4, groups=2) == (0, 1, 6, 7)


def test_recipe_problems_name_the_field() -> None:
    bad = Recipe("median", keep_top_per_class=-1, class_weights={"poetry": 1.0, "code": 0.0})
    got = {(p.field, p.message.split(" (")[0]) for p in recipe_problems(bad, ["code"], file="release.toml",
                                                                         field="dropmap")}
    assert ("dropmap.recipe", "unknown recipe 'median'") in got
    assert ("dropmap.keep_top_per_class", "must be ≥ 0") in got
    assert ("dropmap.class_weights.poetry", "no calibration class 'poetry'") in got
    assert ("dropmap.class_weights.code", "class weight must be a positive number, got 0.0") in got
