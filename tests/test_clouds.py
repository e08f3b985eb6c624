"""Particle clouds before and after imitation: the quick run, its command line and figure."""

import math

import numpy as np
import pytest
import torch

from meanfield.clouds import CloudsConfig, energy_distance, principal_plane, run_clouds

STAGES = ("init", "imitation", "backprop")


@pytest.fixture(scope="module")
def quick(quick_clouds):
    """`gowide meanfield clouds --quick` as a user would run it; (directory, stdout, record)
    (conftest: run once, shared with test_cli)."""
    return quick_clouds


def test_quick_run_writes_the_documented_record(quick):
    out, stdout, rec = quick
    cfg = rec["config"]
    assert set(rec) >= {"config", "seed", "task", "stages", "coordinates", "projection",
                        "teacher_points", "layers", "distances", "test_loss", "linear_loss",
                        "budget", "elapsed_seconds", "preset", "provenance"}
    assert rec["preset"] == "quick" and rec["seed"] == cfg["seed"] == 0
    assert rec["task"]["kind"] == "ridge"
    assert rec["provenance"]["device"] == "cpu" and rec["provenance"]["versions"]["torch"]
    assert rec["stages"] == list(STAGES)
    assert len(rec["coordinates"]) == 2 * cfg["dim"] + 1
    assert [e["layer"] for e in rec["layers"]] == cfg["layers"]
    for entry in rec["layers"]:
        assert set(entry) == {"layer", "projection", "teacher", "thin", "energy_distance",
                              "block_error"}
        assert len(entry["teacher"]["x"]) == len(entry["teacher"]["y"]) == rec["teacher_points"]
        assert set(entry["thin"]) == set(STAGES)
        for cloud in entry["thin"].values():
            assert len(cloud["x"]) == len(cloud["y"]) == cfg["thin_width"]
        comps = np.asarray(entry["projection"]["components"])
        assert comps.shape == (2, 2 * cfg["dim"] + 1)
        np.testing.assert_allclose(comps @ comps.T, np.eye(2), atol=1e-9)
        assert set(entry["energy_distance"]) == set(entry["block_error"]) == {*STAGES, "floor"}
    for key in ("energy_distance", "block_error"):
        assert all(len(v) == cfg["depth"] for v in rec["distances"][key].values())
    # as many particle-gradient evaluations on both routes
    assert rec["budget"]["imitation"]["particle_gradients"] == \
        rec["budget"]["backprop"]["particle_gradients"]
    assert (out / "clouds.json").stat().st_size < 500_000
    assert "energy distance" in stdout and "results:" in stdout
    assert (out / "clouds.png").stat().st_size > 1000
    assert not list(out.glob(".*.tmp")), "no temporary files may be left behind"


def test_distances_are_finite(quick):
    _, _, rec = quick
    d = rec["distances"]
    for key in ("energy_distance", "block_error"):
        for values in d[key].values():
            assert all(v is not None and math.isfinite(v) and v >= 0 for v in values)
    for v in (*d["output_deviation"].values(), *rec["test_loss"].values()):
        assert v is not None and math.isfinite(v)


def test_imitation_lowers_the_block_error_in_every_layer(quick):
    """What the theory predicts: imitation is gradient descent on J_l = δ_l²."""
    _, _, rec = quick
    delta = rec["distances"]["block_error"]
    assert all(b < a for a, b in zip(delta["init"], delta["imitation"], strict=True))


def test_imitation_brings_the_cloud_closer_in_particle_space_on_average(quick):
    """Measured, not a theorem: J_l's minimisers are not unique in particle space. The mean
    over layers of the energy distance falls on seeds 0-9 of the quick preset, because the
    teacher's training moved its particles far from the initial law; layer by layer it does
    not always (on seeds 1 and 7 the top layers' clouds end farther from the teacher's than
    they started), so only the mean is checked."""
    _, _, rec = quick
    mean = rec["distances"]["mean_energy_distance"]
    assert mean["imitation"] < mean["init"]


def test_same_seed_same_record(quick):
    _, _, rec = quick
    again = run_clouds(CloudsConfig.quick(), progress=False)
    assert again["distances"]["mean_energy_distance"] == pytest.approx(
        rec["distances"]["mean_energy_distance"], rel=1e-12)
    assert again["layers"][0]["thin"]["imitation"] == rec["layers"][0]["thin"]["imitation"]


def test_figure_script_draws_from_the_saved_results(quick, tmp_path):
    from figures.fig_clouds import main as fig_main

    out, _, _ = quick
    assert fig_main([str(out / "clouds.json"), "--out", str(tmp_path)]) == 0
    for suffix in ("png", "pdf"):
        assert (tmp_path / f"clouds.{suffix}").stat().st_size > 1000


@pytest.mark.parametrize("overrides", [dict(thin_width=1000), dict(layers=(0, 8)),
                                       dict(layers=()), dict(task="friedman"),
                                       dict(imitation_mode="sideways")])
def test_bad_config_is_refused(overrides):
    with pytest.raises(ValueError):
        CloudsConfig.quick(**overrides).validate()


def test_energy_distance_and_principal_plane():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(64, 5)))
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-7)
    assert energy_distance(x, x + 3.0) > energy_distance(x, x + 1.0) > 0.1
    pts = rng.normal(size=(200, 5)) * np.array([5.0, 1.0, 3.0, 0.1, 0.1])
    plane = principal_plane(pts)
    assert np.argmax(np.abs(plane["components"][0])) == 0
    assert np.argmax(np.abs(plane["components"][1])) == 2
    assert (plane["components"][np.arange(2), [0, 2]] > 0).all()
    assert plane["explained_variance"][0] > plane["explained_variance"][1]
