"""The pre- against post-activation measurement: its quick mode runs and pairs the targets."""

import json

import pytest

from empirical.imitation_target import main


def test_quick_mode_pairs_the_two_targets_on_shared_teachers(tmp_path):
    assert main(["--quick", "--quiet", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "target.json").read_text())
    assert r["seeds"] == [0, 1] and len(r["per_seed"]) == 2
    for row in r["per_seed"]:
        for target in ("pre", "post"):
            errors = row[target]["post_activation_errors"]
            assert set(errors) == {"stem", "blocks.0", "blocks.1", "blocks.2"}
            assert 0.0 <= row[target]["val_accuracy_no_ft"] <= 1.0
        # the post target is itself the post-activation output: the two records agree
        assert row["post"]["post_activation_errors"] == row["post"]["trained_target_errors"]
    acc = r["summary"]["val_accuracy_ours"]
    assert acc["pre_minus_post"] == pytest.approx(
        sum(row["pre"]["val_accuracy_ours"] - row["post"]["val_accuracy_ours"]
            for row in r["per_seed"]) / 2)
    lo, hi = acc["interval"]
    assert lo <= acc["pre_minus_post"] <= hi
