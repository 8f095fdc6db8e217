"""The centring-rule analysis: its distance against a naive loop, and the rule's two ends (centre all, none)."""

import math

import numpy as np

from csrv2.experiments.research import centring_rule


def test_relative_distance_is_the_mean_offset_in_units_of_the_rows_spread():
    rng = np.random.default_rng(0)
    rows, b_pre = rng.normal(size=(50, 6)), rng.normal(size=6)
    mean = [sum(r[j] for r in rows) / len(rows) for j in range(6)]
    spread = math.sqrt(sum(sum((r[j] - mean[j]) ** 2 for j in range(6)) for r in rows) / len(rows))
    offset = math.sqrt(sum((mean[j] - b_pre[j]) ** 2 for j in range(6)))
    assert math.isclose(centring_rule.relative_distance(rows, b_pre), offset / spread, rel_tol=1e-12)
    # the same cloud moved away from b_pre: farther; scaled about b_pre: unchanged
    assert centring_rule.relative_distance(rows + 3.0, b_pre) > centring_rule.relative_distance(rows, b_pre)
    scaled = b_pre + 2.5 * (rows - b_pre)
    assert math.isclose(centring_rule.relative_distance(scaled, b_pre), offset / spread, rel_tol=1e-9)


def test_the_rule_centres_exactly_the_tasks_beyond_tau():
    rows = [
        {"fold": f, "task": f"t{i}", "type": "sts", "held_out": True, "distance": d, "trained": tr, "centred": c}
        for f in ("A", "B")
        for i, (d, tr, c) in enumerate([(0.2, 0.5, 0.4), (0.5, 0.3, 0.6), (0.7, 0.2, 0.1)])
    ]
    one_fold = rows[:3]
    assert math.isclose(centring_rule.rule_score(one_fold, 0.0), 100 * (0.4 + 0.6 + 0.1) / 3)  # centre all
    assert math.isclose(centring_rule.rule_score(one_fold, np.inf), 100 * (0.5 + 0.3 + 0.2) / 3)  # none
    assert math.isclose(centring_rule.rule_score(one_fold, 0.4), 100 * (0.5 + 0.6 + 0.1) / 3)
    text = centring_rule.report(rows)
    assert "fold A, held-out: Spearman" in text and "τ picked on fold A" in text and "| A | t1 | sts |" in text
