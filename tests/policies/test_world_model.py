"""The physics-informed world model: system identification from logged odometry and commands."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import TRAINED_POLICY

from sim2real.core.policy_file import OnnxPolicy
from sim2real.policies.world_model import Flight, QuadrotorWorldModel, WorldModelConfig, clean_flights, fit
from sim2real.sim.quadrotor import MODELS
from sim2real.tasks.quadrotor_hover.env import Shift
from sim2real.tasks.quadrotor_hover.flight import fly

NOMINAL = MODELS["crazyflie-paper"]


@pytest.fixture(scope="module")
def policy() -> OnnxPolicy:
    return OnnxPolicy(TRAINED_POLICY)


def test_sysid_from_30_s_of_flight_on_a_heavier_quadrotor_with_weaker_motors(policy: OnnxPolicy) -> None:
    """30 s on mass +25 %, thrust -10 % (outside the training randomisation): both found within 5 %."""
    flight = fly(policy, 30.0, Shift(mass=1.25, thrust=0.9), seed=3)
    model, report = fit([flight], NOMINAL, WorldModelConfig(windows=256, bootstrap=2))
    p = report.parameters
    assert p["mass"]["mean"] == pytest.approx(1.25, rel=0.05) and p["thrust"]["mean"] == pytest.approx(0.9, rel=0.05)
    assert p["motor_tau"]["mean"] == pytest.approx(1.0, rel=0.05) and p["inertia"] == {"mean": 1.0, "std": 0.0}
    # the fitted model predicts the held-out seconds far better than the simulator it started from
    err = report.prediction_error
    assert err["fitted"]["50_step_m"] < 0.1 * err["prior"]["50_step_m"] and err["fitted"]["1_step_m"] < 1e-5
    assert report.data["held_out_steps"] == 600 and report.data["non_finite_rows"] == 0
    assert model.k == 2 and all(v["std"] >= 0 for v in p.values())


def test_sysid_finds_slower_motors_and_a_steady_wind(policy: OnnxPolicy) -> None:
    wind = (0.08, 0.0, 0.0)  # 8 % of the weight, sideways
    flight = fly(policy, 20.0, Shift(motor_tau=1.6, wind=wind), seed=4)
    _, report = fit([flight], NOMINAL, WorldModelConfig(windows=256, bootstrap=1))
    p = report.parameters
    assert p["motor_tau"]["mean"] == pytest.approx(1.6, rel=0.05) and p["mass"]["mean"] == pytest.approx(1.0, rel=0.05)
    weight = NOMINAL.mass * NOMINAL.gravity
    assert p["force_x"]["mean"] == pytest.approx(wind[0] * weight, rel=0.1) and abs(p["force_y"]["mean"]) < 0.01 * weight


def test_bad_rows_are_cut_and_counted() -> None:
    odom = torch.zeros(101, 13)
    odom[:, 3] = 1.0
    action = torch.zeros(100, 4)
    odom[40, 0] = math.nan  # breaks the steps 39 and 40
    action[70] = math.inf
    pieces, counts = clean_flights([Flight(odom, action, 0.01)], min_steps=20)
    assert [p.steps for p in pieces] == [39, 29, 29] and counts["non_finite_rows"] == 3 and counts["short_steps"] == 0
    assert clean_flights([Flight(odom, action, 0.01)], min_steps=35)[1]["short_steps"] == 58
    with pytest.raises(ValueError, match="no 10-step window"):
        fit([Flight(odom[:8], action[:7], 0.01)], NOMINAL, WorldModelConfig(burn_in_s=0.0))
    with pytest.raises(ValueError, match="cannot fit"):
        fit([Flight(odom, action, 0.01)], NOMINAL, WorldModelConfig(fit=("mass", "colour")))
    with pytest.raises(ValueError, match="actions must be"):
        Flight(odom, action[:50], 0.01)


def test_motor_model_follows_the_commands() -> None:
    model = QuadrotorWorldModel(NOMINAL, 1)
    action = torch.ones(50, 4)  # full set-point from rest (the first set-point is 1: r starts there)
    r = model.motor_speeds(torch.cat((-torch.ones(1, 4), action)), 0.01)[0]
    tau = NOMINAL.motor_tau_rise
    expected = 1 - math.exp(-0.5 / tau)  # first-order response after 50 steps of 10 ms
    r = r.detach()
    assert r[0].tolist() == [0.0] * 4 and float(r[-1, 0]) == pytest.approx(expected, rel=1e-4)


def test_residual_ensemble_learns_what_the_physics_misses(policy: OnnxPolicy) -> None:
    """Linear drag is not in the physics: the residual cuts the held-out 50-step error, and knows where it is unsure."""
    from sim2real.policies.residual import ResidualConfig, features

    flight = fly(policy, 30.0, Shift(drag=0.5), seed=6)
    model, report = fit([flight], NOMINAL, WorldModelConfig(bootstrap=1, residual=ResidualConfig(steps=1000)))
    err = report.prediction_error
    assert err["fitted"]["50_step_m"] < 0.2 * err["physics"]["50_step_m"] < err["prior"]["50_step_m"]
    assert model.residual is not None and model.residual.members == 5
    r = model.motor_speeds(flight.action, flight.dt)[0].detach()
    seen = torch.cat((flight.odom[200:400], r[200:400]), 1)
    far = seen.clone()
    far[:, 7:10] += 3.0  # 3 m/s faster than anything flown
    a = flight.action[200:400]
    with torch.no_grad():
        assert model.residual.disagreement(far, a).mean() > 3 * model.residual.disagreement(seen, a).mean()
        assert features(seen, a).shape == (200, 18)


def test_a_purely_learned_model_predicts_from_data_alone_but_worse_than_the_physics(policy: OnnxPolicy) -> None:
    """physics=False (the MBPO-style baseline): better than the nominal simulator on a shifted quadrotor, far worse
    than the fitted physics on the same 30 s, and its rollouts keep unit quaternions."""
    from sim2real.policies.residual import WHOLE, ResidualConfig

    flight = fly(policy, 30.0, Shift(mass=1.25, thrust=0.9), seed=3)
    learned, report = fit([flight], NOMINAL, WorldModelConfig(physics=False, residual=ResidualConfig(steps=800)))
    _, physics = fit([flight], NOMINAL, WorldModelConfig(windows=256, bootstrap=1))
    err = report.prediction_error
    assert err["fitted"]["50_step_m"] < 0.5 * err["prior"]["50_step_m"]
    assert physics.prediction_error["fitted"]["50_step_m"] < 0.1 * err["fitted"]["50_step_m"]
    assert report.parameters == {} and learned.residual is not None and learned.residual.target == WHOLE
    r = learned.motor_speeds(flight.action, flight.dt)[0]
    assert torch.equal(r[1:], (flight.action + 1) / 2)  # no motor model: the motor state is the last command
    with torch.no_grad():
        s0 = torch.cat((flight.odom[300:310], r[300:310]), 1)[None]
        pred = learned.rollout(s0, flight.action[None, 300:310, None].expand(1, 10, 20, 4), flight.dt)
    assert torch.allclose(pred[..., 3:7].norm(dim=-1), torch.ones(1, 10, 20), atol=1e-5)


def test_residual_training_rejects_bad_data() -> None:
    from sim2real.policies.residual import ResidualConfig, ResidualEnsemble, fit_residual

    x, y = torch.randn(300, 18), torch.randn(300, 6)
    with pytest.raises(ValueError, match="need x"):
        fit_residual(x[:, :10], y)
    y[5, 2] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_residual(x, y)
    with pytest.raises(ValueError, match="fewer than one batch"):
        fit_residual(x[:100], torch.zeros(100, 6), ResidualConfig(batch=256))
    with pytest.raises(ValueError, match="members"):
        ResidualEnsemble(0)


def test_warm_start_and_mixed_control_periods(policy: OnnxPolicy) -> None:
    flight = fly(policy, 8.0, Shift(mass=1.25, thrust=0.9), seed=7)
    first, _ = fit([flight], NOMINAL, WorldModelConfig(bootstrap=1, iterations=1, windows=128, holdout_fraction=0.0))
    again, report = fit([flight], NOMINAL, WorldModelConfig(bootstrap=1, iterations=3, windows=128,
                                                            holdout_fraction=0.0), init=first)  # fmt: skip
    assert again is first and report.parameters["mass"]["mean"] == pytest.approx(1.25, rel=0.05)
    assert report.prediction_error == {}  # nothing held out
    slow = Flight(flight.odom, flight.action, 0.02)
    with pytest.raises(ValueError, match="different control periods"):
        fit([flight, slow], NOMINAL)


def test_known_physics_predict_the_shifted_quadrotor(policy: OnnxPolicy) -> None:
    """set_physics with the true shift (no fit): the prediction the loop's oracle imagines with."""
    from sim2real.policies.world_model import prediction_error

    shift = Shift(mass=1.25, thrust=0.9, motor_tau=1.6, wind=(0.08, 0.0, 0.0))
    flight = fly(policy, 10.0, shift, seed=5)
    prior, known = QuadrotorWorldModel(NOMINAL), QuadrotorWorldModel(NOMINAL, k=2)
    weight = NOMINAL.mass * NOMINAL.gravity
    known.set_physics({"mass": 1.25, "thrust": 0.9, "motor_tau": 1.6}, (0.08 * weight, 0.0, 0.0))
    p = known.summary()
    assert p["mass"]["mean"] == pytest.approx(1.25) and p["motor_tau"]["mean"] == pytest.approx(1.6)
    assert p["force_x"]["mean"] == pytest.approx(0.08 * weight, rel=1e-5) and p["inertia"]["mean"] == pytest.approx(1.0)
    assert prediction_error(known, [flight], 50, 100) < 0.1 * prediction_error(prior, [flight], 50, 100)
    with pytest.raises(ValueError, match="out of the model's range"):
        known.set_physics({"mass": 3.0})  # beyond the factor range the parametrisation can express
    with pytest.raises(ValueError, match="out of the model's range"):
        known.set_physics({"drag": 1.0})
