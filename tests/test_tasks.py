"""Teacher tasks and the best-linear-fit baseline."""

import numpy as np
import pytest

from meanfield import friedman_task, ridge_task, teacher_task
from meanfield.tasks import best_linear_loss


def test_linear_fit_solves_an_affine_target_exactly(rng):
    X = rng.normal(size=(100, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.7
    assert best_linear_loss(X[:60], y[:60], X[60:], y[60:]) < 1e-20


def test_difficulty_knob_moves_the_task_away_from_linear():
    def unexplained(difficulty, seed):
        t = teacher_task(dim=8, depth=8, width=1024, difficulty=difficulty, seed=seed)
        return t.linear_loss / t.constant_loss

    easy = [unexplained(0.1, s) for s in range(4)]
    hard = [unexplained(8.0, s) for s in range(4)]
    assert max(easy) < 0.01
    assert np.median(hard) > 0.05
    assert all(h > e for h, e in zip(hard, easy, strict=True))
    hard = teacher_task(width=256)
    assert hard.describe()["linear_fraction_unexplained"] == pytest.approx(
        hard.linear_loss / hard.constant_loss)


def test_tasks_are_seeded_and_standardised():
    t1, t2 = teacher_task(seed=5, width=256), teacher_task(seed=5, width=256)
    np.testing.assert_array_equal(t1.y_train, t2.y_train)
    assert t1.y_train.mean() == pytest.approx(0.0, abs=1e-12)
    assert t1.y_train.std() == pytest.approx(1.0)
    f = friedman_task(dim=6, seed=1)
    assert f.X_train.shape == (512, 6)
    assert 0.05 < f.linear_loss / f.constant_loss < 0.5  # Friedman #1 is partly linear


def test_bad_task_parameters_raise():
    with pytest.raises(ValueError):
        friedman_task(dim=3)
    with pytest.raises(ValueError):
        teacher_task(difficulty=-1.0)


def test_ridge_task_is_far_from_linear_and_seeded():
    t = ridge_task(seed=2)
    assert t.linear_loss / t.constant_loss > 0.2
    np.testing.assert_array_equal(t.y_test, ridge_task(seed=2).y_test)
    with pytest.raises(ValueError):
        ridge_task(ridges=0)
