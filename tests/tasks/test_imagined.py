"""The hover task inside a world model: the same physics step, real starts, uncertainty, safety terminations."""

from __future__ import annotations

import torch
from helpers import TRAINED_POLICY

from sim2real.core.policy_file import OnnxPolicy
from sim2real.policies.world_model import QuadrotorWorldModel
from sim2real.sim.quadrotor import MODELS, POS
from sim2real.sim.safety import SafetyLimits
from sim2real.tasks.quadrotor_hover.env import HoverConfig, QuadrotorHoverEnv, Shift
from sim2real.tasks.quadrotor_hover.flight import SimulatedRobot
from sim2real.tasks.quadrotor_hover.imagined import HoverImagination, start_bank

NOMINAL = MODELS["crazyflie-paper"]


def _flight(seconds: float = 3.0):
    robot = SimulatedRobot(Shift(), seed=2)
    return robot.record(OnnxPolicy(TRAINED_POLICY), seconds)


def test_the_imagined_step_is_the_simulator_step_of_its_member() -> None:
    flight = _flight()
    model = QuadrotorWorldModel(NOMINAL, 2)
    with torch.no_grad():
        model.log_scale[1, 0] = 0.3  # member 1 is heavier
    imag = HoverImagination(HoverConfig(), SafetyLimits(), torch.zeros(3), burn_in=20, perturbed_fraction=0.0)
    env = imag.env(model, [flight], num_envs=8, horizon=5, penalty=0.0, seed=1)
    bank = start_bank([flight], model, HoverConfig().action_history, 20)
    starts = env.state.clone()
    assert all(bool((bank.state == s).all(1).any()) for s in starts)  # every start is a logged state
    sim = QuadrotorHoverEnv(HoverConfig(num_envs=8))
    sim.params[:], sim.f_dist[:], sim.t_dist[:] = env.params, env.f_dist, env.t_dist  # the members' physics
    a = torch.rand(8, 4) * 2 - 1
    _, _, _, _, info = env.step(a)
    expected = sim.simulate(starts, (a + 1) / 2)
    assert torch.allclose(env.state, expected, atol=1e-6)
    heavy = env.member == 1
    assert bool(heavy.any()) and bool((~heavy).any())
    assert bool((info["uncertainty"] > 0).all())  # the members disagree, everywhere
    # each episode randomised around its member as the training randomised around the nominal model
    dr, tau = HoverConfig().dr, env.scale[:, 8]
    assert torch.allclose(env.params, model.params()[env.member].detach() * env.scale) and float(tau.std()) > 0
    assert bool(((tau >= dr.motor_tau[0]) & (tau <= dr.motor_tau[1])).all())


def test_imagined_rollouts_end_at_the_safety_limits_and_pay_for_uncertainty() -> None:
    flight = _flight()
    model = QuadrotorWorldModel(NOMINAL, 2)
    with torch.no_grad():
        model.log_scale[1, 2] = 0.5  # member 1's motors are much stronger: the members disagree
    limits = SafetyLimits(position_box_m=0.3, setpoint_box_m=0.2)
    imag = HoverImagination(HoverConfig(), limits, torch.zeros(3), burn_in=20, perturbed_fraction=0.0)
    calm = imag.env(model, [flight], 16, 200, penalty=0.0, seed=3)
    paid = imag.env(model, [flight], 16, 200, penalty=10.0, seed=3)
    full = torch.ones(16, 4)  # full throttle: up and out of the 0.3 m box
    ended = torch.zeros(16, dtype=torch.bool)
    for _ in range(60):
        _, r_calm, term, _, info = calm.step(full)
        _, r_paid, *_ = paid.step(full)
        assert torch.allclose(r_calm - r_paid, 10.0 * info["uncertainty"], atol=1e-5)
        ended |= term
    assert bool(ended.all())


def test_real_transitions_are_replay_rows_of_the_logged_steps() -> None:
    flight = _flight(2.0)
    model = QuadrotorWorldModel(NOMINAL, 1)
    imag = HoverImagination(HoverConfig(), SafetyLimits(), torch.zeros(3), burn_in=20)
    rows = imag.real_transitions(model, [flight])
    n = flight.steps - 20
    assert rows["obs_actor"].shape == (n, 146) and rows["obs_critic"].shape == (n, 38) and rows["reward"].shape == (n,)
    assert torch.equal(rows["action"], flight.action[20:])
    assert all(bool(torch.isfinite(v).all()) for v in rows.values())
    # the next observation's position error is the logged next position minus the set-point
    assert torch.allclose(rows["next_obs_critic"][:, :3], flight.odom[21:, POS] - flight.targets[20:-1], atol=1e-6)
    assert float(rows["terminated"].sum()) == 0.0


def test_the_gate_assessment_sees_a_policy_that_leaves() -> None:
    flight = _flight()
    model = QuadrotorWorldModel(NOMINAL, 2)
    imag = HoverImagination(HoverConfig(), SafetyLimits(), torch.zeros(3), burn_in=20)
    good = imag.assess(OnnxPolicy(TRAINED_POLICY), model, [flight], 16, 1.0, seed=0)
    bad = imag.assess(lambda obs: torch.ones(obs.shape[0], 4), model, [flight], 16, 1.0, seed=0)
    assert good["violations"] == 0 and good["min_margin"] > 0.2 and good["error_m"] < 0.15
    assert bad["violations"] == 16 and bad["error_m"] > good["error_m"]
