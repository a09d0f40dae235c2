"""The quadrotor-hover VecEnv: batching, reset/autoreset, observation layout, noise, DR, curriculum, errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from sim2real.sim.quadrotor import MODELS, PARAM_NAMES, STATE_DIM, quat_to_rotmat
from sim2real.sim.registry import get_task, list_tasks, make
from sim2real.sim.vecenv import VecEnv
from sim2real.tasks.quadrotor_hover.env import (
    REWARD_TERMS,
    DomainRandomization,
    HoverConfig,
    InitConfig,
    NoiseConfig,
    QuadrotorHoverEnv,
    RewardConfig,
)

QUIET_INIT = InitConfig(
    origin_fraction=0.0, max_pos=0.0, max_tilt_deg=0.0, max_vel=0.0, max_omega=0.0, motor_speed=None
)


def small_env(**overrides) -> QuadrotorHoverEnv:
    return QuadrotorHoverEnv(HoverConfig(num_envs=4, action_history=8), **overrides)


def random_state(n: int, gen: torch.Generator) -> torch.Tensor:
    s = torch.zeros(n, STATE_DIM)
    s[:, 0:3] = 0.2 * (torch.rand(n, 3, generator=gen) - 0.5)
    q = torch.randn(n, 4, generator=gen) * torch.tensor([4.0, 1.0, 1.0, 1.0])
    s[:, 3:7] = q / q.norm(dim=-1, keepdim=True)
    s[:, 7:10] = 0.2 * torch.randn(n, 3, generator=gen)
    s[:, 10:13] = torch.randn(n, 3, generator=gen)
    s[:, 13:17] = 0.4 + 0.4 * torch.rand(n, 4, generator=gen)
    return s


# ----------------------------------------------------------------------------------------------- batching
def test_batched_stepping_equals_independent_single_envs() -> None:
    n = 4
    gen = torch.Generator().manual_seed(0)
    states = random_state(n, gen)
    nominal = torch.tensor(MODELS["crazyflie-paper"].param_vector())
    params = nominal * (1 + 0.05 * (torch.rand(n, len(PARAM_NAMES), generator=gen) - 0.5))
    force = 0.01 * torch.randn(n, 3, generator=gen)
    torque = 1e-5 * torch.randn(n, 3, generator=gen)
    actions = [0.4 * torch.rand(n, 4, generator=gen) - 0.2 + 0.33 for _ in range(20)]

    batched = QuadrotorHoverEnv(HoverConfig(num_envs=n, action_history=4))
    singles = [QuadrotorHoverEnv(HoverConfig(num_envs=1, action_history=4)) for _ in range(n)]
    batched.set_state(states)
    batched.set_params(params)
    batched.set_disturbance(force, torque)
    for i, env in enumerate(singles):
        env.set_state(states[i : i + 1])
        env.set_params(params[i : i + 1])
        env.set_disturbance(force[i : i + 1], torque[i : i + 1])

    # the pure step first; float32 sums over the 4 rotors run in another order for a batch of 1 and of 4 (BLAS
    # gemv vs gemm), so the two agree to a few float32 ulps, not bit for bit
    sim_b = batched.simulate(states, (actions[0] + 1) / 2)
    sim_s = torch.cat([e.simulate(states[i : i + 1], (actions[0][i : i + 1] + 1) / 2) for i, e in enumerate(singles)])
    torch.testing.assert_close(sim_b, sim_s, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batched.get_state(), states)  # simulate leaves the env's state alone

    for a in actions:
        obs_b, rew_b, term_b, trunc_b, _ = batched.step(a)
        outs = [e.step(a[i : i + 1]) for i, e in enumerate(singles)]
        assert not term_b.any() and not trunc_b.any()
        torch.testing.assert_close(
            batched.get_state(), torch.cat([e.get_state() for e in singles]), rtol=1e-5, atol=1e-6
        )
        torch.testing.assert_close(obs_b["critic"], torch.cat([o[0]["critic"] for o in outs]), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rew_b, torch.cat([o[1] for o in outs]), rtol=1e-6, atol=1e-6)
        # the noise-free history part of the policy obs as well
        torch.testing.assert_close(obs_b["policy"][:, 18:], torch.cat([o[0]["policy"][:, 18:] for o in outs]))
    moved = (batched.get_state()[:, 0:3] - states[:, 0:3]).norm(dim=-1)
    assert bool((moved > 1e-3).all())  # the comparison is over a real trajectory


# ----------------------------------------------------------------------------------------------- reset
def test_reset_seed_reproducible_and_seed_dependent() -> None:
    env = small_env()
    a = env.reset(seed=7)
    p_a = env.get_params()
    env.step(torch.zeros(4, 4))
    b = env.reset(seed=7)
    for k in ("policy", "critic"):
        assert torch.equal(a[k], b[k])
    assert torch.equal(p_a, env.get_params())
    other = QuadrotorHoverEnv(HoverConfig(num_envs=4, action_history=8)).reset(seed=7)
    assert torch.equal(a["policy"], other["policy"])
    c = env.reset(seed=8)
    assert not torch.allclose(a["critic"], c["critic"])
    assert not torch.allclose(a["policy"], c["policy"])


def test_reset_initial_state_distribution() -> None:
    init = InitConfig(origin_fraction=0.25, max_pos=0.1, max_tilt_deg=20.0, max_vel=0.3, max_omega=0.4, motor_speed=0.7)
    env = QuadrotorHoverEnv(HoverConfig(num_envs=400, action_history=2, init=init))
    s = env.get_state()
    assert float(s[:, 0:3].abs().max()) <= 0.1
    assert float(s[:, 7:10].abs().max()) <= 0.3
    assert float(s[:, 10:13].abs().max()) <= 0.4
    assert bool((s[:, 13:17] == 0.7).all())
    torch.testing.assert_close(s[:, 3:7].norm(dim=-1), torch.ones(400))
    tilt = torch.acos(quat_to_rotmat(s[:, 3:7])[:, 2, 2].clamp(-1, 1))
    assert float(tilt.max()) <= np.radians(20.0) + 1e-4
    at_origin = (s[:, 0:13] == torch.tensor([0.0] * 3 + [1.0, 0.0, 0.0, 0.0] + [0.0] * 6)).all(-1)
    assert 0.15 < float(at_origin.float().mean()) < 0.35


# ----------------------------------------------------------------------------------------------- autoreset
def test_autoreset_after_leaving_the_box() -> None:
    env = small_env()
    env.reset(seed=1)
    s = env.get_state()
    s[1, 0] = 0.59
    s[1, 7] = 5.0  # 5 m/s along +x: out of the 0.6 m box after one 10 ms step
    env.set_state(s)
    a = torch.full((4, 4), env.hover_action)
    expected_next = env.simulate(env.get_state(), (a + 1) / 2)
    obs, reward, terminated, truncated, info = env.step(a)
    assert terminated.tolist() == [False, True, False, False]
    assert not truncated.any()
    final = info["final_obs"]
    # the pre-reset observation of env 1 is the out-of-box state
    torch.testing.assert_close(final["critic"][1, 0:3], expected_next[1, 0:3])
    assert float(final["critic"][1, 0]) > 0.6
    # the returned observation is the fresh episode (inside the init box, level history)
    assert float(obs["critic"][1, 0:3].abs().max()) <= env.cfg.init.max_pos
    assert float(env.get_state()[1, 0:3].abs().max()) <= env.cfg.init.max_pos
    assert int(env.steps[1]) == 0
    # rows of envs that did not end are equal in obs and final_obs
    for k in ("policy", "critic"):
        keep = torch.tensor([0, 2, 3])
        assert torch.equal(final[k][keep], obs[k][keep])
        assert not torch.equal(final[k][1], obs[k][1])
    assert info["episode"]["length"].tolist() == [1]
    torch.testing.assert_close(info["episode"]["return"], reward[1:2])
    assert info["reward_terms"][1, REWARD_TERMS.index("terminated")] == 1.0


def test_truncation_after_episode_steps() -> None:
    env = QuadrotorHoverEnv(HoverConfig(num_envs=3, action_history=2, episode_steps=5, init=QUIET_INIT))
    env.reset(seed=0)
    a = torch.full((3, 4), env.hover_action)
    for _episode in range(2):
        for k in range(1, 6):
            obs, _, terminated, truncated, info = env.step(a)
            assert not terminated.any()
            if k < 5:
                assert not truncated.any()
                assert "episode" not in info
            else:
                assert truncated.all()
                assert info["episode"]["length"].tolist() == [5, 5, 5]
                assert int(env.steps.max()) == 0


# ----------------------------------------------------------------------------------------------- observation
def test_observation_layout_default_history() -> None:
    env = QuadrotorHoverEnv(HoverConfig(num_envs=2))
    spec = env.spec
    assert spec.obs_dims == {"policy": 18 + 32 * 4, "critic": 38}
    assert spec.obs_dims["policy"] == 146
    obs = env.reset(seed=0)
    assert obs["policy"].shape == (2, 146) and obs["critic"].shape == (2, 38)
    assert obs["policy"].dtype == torch.float32 and obs["critic"].dtype == torch.float32
    names = spec.obs_groups["policy"].names
    assert names == ("position_error", "rotation_matrix", "linear_velocity", "angular_velocity", "action_history")
    # the critic group starts with the sensed terms of the policy group, noise-free
    assert spec.obs_groups["critic"].terms[:4] == spec.obs_groups["policy"].noise_free().terms[:4]
    assert spec.action_dim == 4
    assert spec.to_dict()["obs_dims"] == spec.obs_dims


def test_observation_contents_match_state() -> None:
    env = QuadrotorHoverEnv(HoverConfig(num_envs=8, action_history=3, noise=NoiseConfig(0.0, 0.0, 0.0, 0.0)))
    env.reset(seed=3)
    env.target[:] = torch.tensor([0.1, -0.2, 0.3])
    obs = env.observe()
    s = env.get_state()
    layout = {name: env.spec.obs_groups["critic"].slice(name) for name in env.spec.obs_groups["critic"].names}
    c = obs["critic"]
    torch.testing.assert_close(c[:, layout["position_error"]], s[:, 0:3] - env.target)
    assert torch.equal(c[:, layout["rotation_matrix"]], quat_to_rotmat(s[:, 3:7]).reshape(-1, 9))
    assert torch.equal(c[:, layout["linear_velocity"]], s[:, 7:10])
    assert torch.equal(c[:, layout["angular_velocity"]], s[:, 10:13])
    assert torch.equal(c[:, layout["disturbance_force"]], env.f_dist)
    assert torch.equal(c[:, layout["disturbance_torque"]], env.t_dist)
    assert torch.equal(c[:, layout["motor_speed"]], s[:, 13:17])
    rel = torch.nan_to_num(env.get_params() / env.nominal_params - 1.0, 0.0)
    torch.testing.assert_close(c[:, layout["physical_params"]], rel)
    # row-major: entry (i, j) of R sits at 3 + 3 i + j
    R = quat_to_rotmat(s[:, 3:7])
    assert torch.equal(c[:, 3 + 3 * 1 + 2], R[:, 1, 2])
    # with zero noise the policy obs equals the critic's first 18 entries
    assert torch.equal(obs["policy"][:, :18], c[:, :18])


def test_action_history_order_and_reset_fill() -> None:
    h = 4
    init = replace(QUIET_INIT, motor_speed=0.8)
    env = QuadrotorHoverEnv(HoverConfig(num_envs=2, action_history=h, init=init))
    obs = env.reset(seed=0)
    hist = obs["policy"][:, 18:].reshape(2, h, 4)
    assert torch.equal(hist, torch.full((2, h, 4), 2 * 0.8 - 1))  # the normalised motor speed, not zeros
    a1 = torch.tensor([[0.1, 0.2, 0.3, 0.4], [-0.1, -0.2, -0.3, -0.4]])
    a2 = a1 + 0.05
    env.step(a1)
    obs, *_ = env.step(a2)
    hist = obs["policy"][:, 18:].reshape(2, h, 4)
    torch.testing.assert_close(hist[:, -1], a2)  # newest last
    torch.testing.assert_close(hist[:, -2], a1)
    assert torch.equal(hist[:, :-2], torch.full((2, h - 2, 4), 2 * 0.8 - 1))
    # actions outside [-1, 1] are clipped before they enter the history
    obs, *_ = env.step(torch.full((2, 4), 3.0))
    assert torch.equal(obs["policy"][:, -4:], torch.ones(2, 4))
    # set_state refills the history from the motor speeds
    s = env.get_state()
    s[:, 13:17] = 0.25
    env.set_state(s)
    assert torch.equal(env.observe()["policy"][:, 18:], torch.full((2, 4 * h), -0.5))


def test_hover_motor_speed_init_fills_history_with_hover_action() -> None:
    env = QuadrotorHoverEnv(HoverConfig(num_envs=2, action_history=3, init=QUIET_INIT))
    obs = env.reset(seed=0)
    torch.testing.assert_close(obs["policy"][:, 18:], torch.full((2, 12), env.hover_action))
    assert env.hover_action == pytest.approx(MODELS["crazyflie-paper"].hover_action())


def test_noise_only_on_policy_obs_with_configured_std() -> None:
    noise = NoiseConfig(position=0.01, orientation=0.02, velocity=0.03, angular_velocity=0.04)
    n = 3000
    env = QuadrotorHoverEnv(HoverConfig(num_envs=n, action_history=1, noise=noise))
    obs = env.reset(seed=0)
    s = env.get_state()
    critic, policy = obs["critic"], obs["policy"]
    # the critic sees the exact state
    torch.testing.assert_close(critic[:, 0:3], s[:, 0:3] - env.target)
    assert torch.equal(critic[:, 3:12], quat_to_rotmat(s[:, 3:7]).reshape(-1, 9))
    assert torch.equal(critic[:, 12:18], s[:, 7:13])
    diff = policy[:, :18] - critic[:, :18]
    for block, std in ((slice(0, 3), 0.01), (slice(3, 12), 0.02), (slice(12, 15), 0.03), (slice(15, 18), 0.04)):
        d = diff[:, block]
        assert float(d.std()) == pytest.approx(std, rel=0.05)
        assert abs(float(d.mean())) < 0.05 * std
    # different envs and entries get independent noise
    assert float(torch.corrcoef(diff[:, 0:2].T)[0, 1]) == pytest.approx(0.0, abs=0.06)
    # history is the policy's own output: noise-free
    assert torch.equal(policy[:, 18:], torch.full((n, 4), 2 * 0.5 - 1))
    # layout documents the noise
    stds = {t.name: t.noise_std for t in env.spec.obs_groups["policy"]}
    assert stds["position_error"] == 0.01 and stds["angular_velocity"] == 0.04 and stds["action_history"] == 0.0


# ----------------------------------------------------------------------------------------------- DR
def test_domain_randomisation_ranges_and_variation() -> None:
    dr = DomainRandomization(
        mass=(0.9, 1.1), inertia=(0.8, 1.2), thrust=(0.95, 1.05), torque_coeff=(0.7, 1.3), motor_tau=(0.5, 1.5)
    )
    n = 256
    env = QuadrotorHoverEnv(HoverConfig(num_envs=n, action_history=1, model="crazyflie-newer", dr=dr))
    p = env.get_params()
    ratio = p / env.nominal_params
    bounds = {
        "mass": dr.mass,
        "ixx": dr.inertia,
        "iyy": dr.inertia,
        "izz": dr.inertia,
        "thrust_c0": dr.thrust,
        "thrust_c1": dr.thrust,
        "thrust_c2": dr.thrust,
        "torque_coeff": dr.torque_coeff,
        "motor_tau_rise": dr.motor_tau,
        "motor_tau_fall": dr.motor_tau,
    }
    for i, name in enumerate(PARAM_NAMES):
        lo, hi = bounds[name]
        col = ratio[:, i]
        assert float(col.min()) >= lo - 1e-6 and float(col.max()) <= hi + 1e-6, name
        assert len(torch.unique(col)) > n // 2, name  # differs across envs
        assert float(col.max() - col.min()) > 0.5 * (hi - lo), name  # covers the range
    # one thrust factor for all three coefficients, one factor for both motor time constants
    torch.testing.assert_close(ratio[:, 4], ratio[:, 6])
    torch.testing.assert_close(ratio[:, 5], ratio[:, 6])
    torch.testing.assert_close(ratio[:, 8], ratio[:, 9])
    # the three inertia factors are independent
    assert not torch.allclose(ratio[:, 1], ratio[:, 2])
    # a new episode draws new parameters
    p_before = env.get_params()
    env.reset()
    assert not torch.equal(p_before, env.get_params())


def test_domain_randomisation_disabled_gives_nominal_params() -> None:
    env = QuadrotorHoverEnv(HoverConfig(num_envs=16, action_history=1, dr=DomainRandomization(enabled=False)))
    expected = torch.tensor(MODELS["crazyflie-paper"].param_vector()).repeat(16, 1)
    assert torch.equal(env.get_params(), expected)
    obs = env.reset(seed=5)
    assert torch.equal(obs["critic"][:, 28:38], torch.zeros(16, 10))


# ----------------------------------------------------------------------------------------------- curriculum & reward
def test_curriculum_weights_grow_per_interval_with_caps() -> None:
    rc = RewardConfig(interval=1000)
    env = QuadrotorHoverEnv(HoverConfig(num_envs=1, action_history=1, reward=rc))
    w0 = env.reward_weights
    expected0 = {"position": 5.0, "orientation": 5.0, "velocity": 0.01, "action": 0.01, "angular_velocity": 0.05}
    assert {k: w0[k] for k in expected0} == pytest.approx(expected0)
    env.set_env_steps(999)
    assert env.reward_weights == pytest.approx(w0)  # stages change only at interval boundaries
    env.set_env_steps(1000)
    w1 = env.reward_weights
    assert w1["position"] == pytest.approx(5.0 * 1.2)
    assert w1["velocity"] == pytest.approx(0.01 * 1.4)
    assert w1["action"] == pytest.approx(0.01 * 1.4)
    assert w1["orientation"] == pytest.approx(5.0)
    env.set_env_steps(3500)
    assert env.reward_weights["position"] == pytest.approx(5.0 * 1.2**3)
    prev = env.reward_weights
    for k in range(4, 60):
        env.set_env_steps(1000 * k)
        w = env.reward_weights
        assert all(w[key] >= prev[key] - 1e-9 for key in w)
        prev = w
    assert prev["position"] == pytest.approx(rc.position_max)
    assert prev["velocity"] == pytest.approx(rc.velocity_max)
    assert prev["action"] == pytest.approx(rc.action_max)
    env.set_env_steps(0)
    assert env.reward_weights == pytest.approx(w0)  # deterministic in env_steps (resume)

    off = QuadrotorHoverEnv(HoverConfig(num_envs=1, action_history=1, reward=replace(rc, curriculum=False)))
    off.set_env_steps(10**6)
    assert off.reward_weights == pytest.approx(w0)


@pytest.mark.parametrize("clip_min", [None, 0.0], ids=["no-clip", "clip-at-0"])
def test_reward_from_terms_reproduces_step_reward(clip_min: float | None) -> None:
    rc = RewardConfig(termination_penalty=3.0, angular_velocity=0.1, interval=100, clip_min=clip_min)
    if clip_min is not None:
        rc = replace(rc, position=400.0, position_max=1000.0)  # large costs so that clipping happens
    env = QuadrotorHoverEnv(HoverConfig(num_envs=6, action_history=2, reward=rc))
    assert env.reward_term_names == REWARD_TERMS
    col = {name: i for i, name in enumerate(REWARD_TERMS)}
    env.set_env_steps(450)  # a non-trivial curriculum stage
    s = env.get_state()
    s[0, 0] = 0.595
    s[0, 7] = 3.0  # env 0 terminates in the first step
    env.set_state(s)
    gen = torch.Generator().manual_seed(0)
    w = env.reward_weights
    assert set(w) == set(REWARD_TERMS) - {"terminated"}
    clipped = 0
    for step in range(5):
        a = 2 * torch.rand(6, 4, generator=gen) - 1
        obs, reward, terminated, _, info = env.step(a)
        if step == 0:
            assert bool(terminated[0])
        terms = info["reward_terms"]
        assert terms.shape == (6, len(REWARD_TERMS))
        torch.testing.assert_close(env.reward_from_terms(terms), reward)
        shaped = rc.constant - rc.scale * sum(w[name] * terms[:, col[name]] for name in w)
        if clip_min is not None:
            clipped += int((shaped < clip_min).sum())
            shaped = shaped.clamp_min(clip_min)
        torch.testing.assert_close(reward, shaped - 3.0 * terminated.float())
        # the terms are those of the pre-reset state
        fc = info["final_obs"]["critic"]
        torch.testing.assert_close(terms[:, col["position"]], fc[:, 0:3].square().sum(-1))
        torch.testing.assert_close(terms[:, col["velocity"]], fc[:, 12:15].square().sum(-1))
        torch.testing.assert_close(terms[:, col["angular_velocity"]], fc[:, 15:18].square().sum(-1))
        torch.testing.assert_close(terms[:, col["action"]], (a - env.hover_action).square().sum(-1))
        torch.testing.assert_close(terms[:, col["terminated"]], terminated.float())
    if clip_min is not None:
        assert clipped > 0


# ----------------------------------------------------------------------------------------------- bad input
def test_action_validation_errors() -> None:
    env = small_env()
    before = env.get_state()
    with pytest.raises(ValueError, match=r"shape"):
        env.step(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"shape"):
        env.step(torch.zeros(3, 4))
    bad = torch.zeros(4, 4)
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN.*\[2\]"):
        env.step(bad)
    bad[2, 1] = float("inf")
    with pytest.raises(ValueError, match=r"Inf"):
        env.step(bad)
    with pytest.raises(TypeError, match=r"floating"):
        env.step(torch.zeros(4, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"torch.Tensor"):
        env.step(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(TypeError, match=r"torch.Tensor"):
        env.step([[0.0] * 4] * 4)
    # a rejected action leaves the env untouched
    assert int(env.steps.max()) == 0
    assert torch.equal(before, env.get_state())
    # float64 is accepted and converted
    obs, *_ = env.step(torch.zeros(4, 4, dtype=torch.float64))
    assert obs["policy"].dtype == torch.float32


def test_registry_errors_and_construction_errors() -> None:
    with pytest.raises(KeyError, match=r"quadrotor-hover"):
        get_task("no-such-task")
    with pytest.raises(KeyError, match=r"no-such-task"):
        make("no-such-task")
    assert "quadrotor-hover" in [t.name for t in list_tasks()]
    env = make("quadrotor-hover", num_envs=2, action_history=1)
    assert isinstance(env, VecEnv) and env.num_envs == 2
    with pytest.raises(ValueError, match=r"num_envs"):
        QuadrotorHoverEnv(HoverConfig(num_envs=0))
    with pytest.raises(ValueError, match=r"num_envs"):
        make("quadrotor-hover", num_envs=0)
    with pytest.raises(KeyError, match=r"unknown quadrotor model"):
        QuadrotorHoverEnv(HoverConfig(num_envs=1, model="nope"))


def test_set_params_and_set_state_validation() -> None:
    env = small_env()
    p = env.get_params()
    bad = p.clone()
    bad[1, 0] = -0.01
    with pytest.raises(ValueError, match=r"mass"):
        env.set_params(bad)
    assert torch.equal(env.get_params(), p)  # unchanged after the rejected call
    bad = p.clone()
    bad[0, 9] = 0.0
    with pytest.raises(ValueError, match=r"positive"):
        env.set_params(bad)
    bad = p.clone()
    bad[0, 4] = float("nan")
    with pytest.raises(ValueError, match=r"finite"):
        env.set_params(bad)
    with pytest.raises(ValueError, match=r"params must be"):
        env.set_params(p[:, :9])
    with pytest.raises(ValueError, match=r"state must be"):
        env.set_state(torch.zeros(4, 16))
    # per-env writes touch only the selected envs
    new = p[1:3] * 1.01
    env.set_params(new, torch.tensor([1, 2]))
    got = env.get_params()
    assert torch.equal(got[1:3], new) and torch.equal(got[[0, 3]], p[[0, 3]])


# ----------------------------------------------------------------------------------------------- state dict
def test_state_dict_round_trip_continues_identically() -> None:
    cfg = HoverConfig(num_envs=4, action_history=4, episode_steps=12, reward=RewardConfig(interval=20))
    gen = torch.Generator().manual_seed(0)
    actions = [2 * torch.rand(4, 4, generator=gen) - 1 for _ in range(30)]
    a_env = QuadrotorHoverEnv(cfg)
    a_env.reset(seed=11)
    for act in actions[:5]:
        a_env.step(act)
    a_env.set_env_steps(60)
    sd = a_env.state_dict()
    outs_a = [a_env.step(act) for act in actions[5:]]

    b_env = QuadrotorHoverEnv(cfg)
    b_env.reset(seed=999)  # different trajectory before loading
    b_env.load_state_dict(sd)
    assert b_env.reward_weights == a_env.reward_weights
    outs_b = [b_env.step(act) for act in actions[5:]]
    resets = 0
    for (oa, ra, ta, tra, ia), (ob, rb, tb, trb, ib) in zip(outs_a, outs_b):
        for k in ("policy", "critic"):
            assert torch.equal(oa[k], ob[k])
            assert torch.equal(ia["final_obs"][k], ib["final_obs"][k])
        assert torch.equal(ra, rb) and torch.equal(ta, tb) and torch.equal(tra, trb)
        resets += int((ta | tra).sum())
    assert resets >= 4  # the continuation crossed episode boundaries (generator state restored too)
    assert torch.equal(a_env.get_state(), b_env.get_state())

    with pytest.raises(ValueError, match=r"state"):
        QuadrotorHoverEnv(replace(cfg, num_envs=2)).load_state_dict(sd)


def test_exp_reward_form_matches_linear_slope_at_the_setpoint_and_stays_positive() -> None:
    lin = QuadrotorHoverEnv(HoverConfig(num_envs=2, action_history=1, reward=RewardConfig(clip_min=None)))
    exp = QuadrotorHoverEnv(HoverConfig(num_envs=2, action_history=1, reward=RewardConfig(clip_min=None, form="exp")))
    terms = torch.zeros(2, len(lin.reward_term_names))
    terms[0, 0] = 1e-4  # tiny squared position error: both forms agree to first order
    terms[1, 0] = 10.0  # far away: linear goes negative, exp stays positive
    r_lin, r_exp = lin.reward_from_terms(terms), exp.reward_from_terms(terms)
    assert float(r_exp[0]) == pytest.approx(float(r_lin[0]), abs=1e-6)
    assert float(r_lin[1]) < 0 < float(r_exp[1])
    with pytest.raises(ValueError, match="reward.form"):
        QuadrotorHoverEnv(HoverConfig(num_envs=1, reward=RewardConfig(form="cubic")))
