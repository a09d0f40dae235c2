"""Batched MuJoCo backend and the Gymnasium v5 locomotion tasks (parity with Gymnasium, VecEnv contract, DR)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco", reason="MuJoCo backend tests need the mujoco package (sim2real[mujoco])")
gym = pytest.importorskip("gymnasium")

from sim2real.sim.mujoco.env import MujocoDRConfig  # noqa: E402
from sim2real.sim.registry import list_tasks, make  # noqa: E402

GYM_IDS = {
    "mujoco-halfcheetah": "HalfCheetah-v5",
    "mujoco-hopper": "Hopper-v5",
    "mujoco-ant": "Ant-v5",
    "mujoco-humanoid": "Humanoid-v5",
}
# Our observations/rewards are float32 casts of the same float64 MuJoCo computation Gymnasium does, so they
# agree to float32 rounding; checked as |ours - gym| <= ATOL + RTOL * |gym|.
RTOL, ATOL = 1e-5, 1e-5


@pytest.fixture(autouse=True)
def _quiet_mujoco_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _gym_env(task: str):
    return gym.make(GYM_IDS[task]).unwrapped


def _copy_state(env, gym_env, env_id: int) -> None:
    qpos = torch.as_tensor(gym_env.data.qpos.copy())[None]
    qvel = torch.as_tensor(gym_env.data.qvel.copy())[None]
    env.set_state(qpos, qvel, torch.tensor([env_id]))


@pytest.mark.parametrize("task", list(GYM_IDS))
def test_matches_gymnasium_v5_step_for_step(task):
    """Env 1 of a 2-env batch (2 threads) follows Gymnasium's v5 env for 150 random in-range actions."""
    g = _gym_env(task)
    env = make(task, num_envs=2, num_threads=2)
    env.reset(seed=0)
    g_obs, _ = g.reset(seed=1)
    _copy_state(env, g, 1)
    np.testing.assert_allclose(env.observe()["policy"][1].double().numpy(), g_obs, rtol=RTOL, atol=ATOL)
    rng = np.random.default_rng(0)
    lo, hi = g.action_space.low, g.action_space.high
    assert env.spec.action_dim == g.action_space.shape[0] and env.obs_dim == g_obs.shape[0]
    for t in range(150):
        a = rng.uniform(lo, hi).astype(np.float32)
        action = torch.zeros(2, env.spec.action_dim)
        action[1] = torch.from_numpy(a)
        _, reward, terminated, truncated, info = env.step(action)
        g_obs, g_reward, g_terminated, _, _ = g.step(a.astype(np.float64))
        ours = info["final_obs"]["policy"][1].double().numpy()
        np.testing.assert_allclose(ours, g_obs, rtol=RTOL, atol=ATOL, err_msg=f"{task} obs at step {t}")
        np.testing.assert_allclose(float(reward[1]), g_reward, rtol=RTOL, atol=ATOL, err_msg=f"{task} reward {t}")
        assert bool(terminated[1]) == bool(g_terminated), f"{task} terminated at step {t}"
        assert not bool(truncated[1])
        if g_terminated:  # both restart from Gymnasium's next reset state
            g.reset(seed=100 + t)
            _copy_state(env, g, 1)
    g.close()
    env.close()


@pytest.mark.parametrize("task", ["mujoco-halfcheetah", "mujoco-ant"])
def test_batch_row_equals_single_env(task):
    """Env 2 of a 4-env batch (2 threads) equals a 1-env run from the same state with the same actions."""
    batch = make(task, num_envs=4, num_threads=2)
    single = make(task, num_envs=1, num_threads=1)
    batch.reset(seed=1)
    qpos, qvel = batch.get_state()
    single.set_state(qpos[2:3], qvel[2:3])
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        a = torch.rand(4, batch.spec.action_dim, generator=gen) * 2 - 1
        _, rb, tb, _, ib = batch.step(a)
        _, rs, ts, _, is_ = single.step(a[2:3])
        assert torch.equal(ib["final_obs"]["policy"][2], is_["final_obs"]["policy"][0])
        assert rb[2] == rs[0] and tb[2] == ts[0]
        if bool(ts[0]):
            break


def test_auto_reset_and_final_obs():
    env = make("mujoco-hopper", num_envs=4, num_threads=2)
    obs0 = env.reset(seed=0)
    assert set(obs0) == {"policy", "critic"} and obs0["policy"].shape == (4, 11)
    assert obs0["policy"].dtype == torch.float32 and torch.equal(obs0["policy"], obs0["critic"])
    a = torch.ones(4, 3)
    a[:2] = 0.0  # envs 0, 1 stand still longer than 2, 3 (full torque falls over fast)
    for _ in range(200):
        obs, reward, terminated, truncated, info = env.step(a)
        if bool(terminated.any()):
            break
    assert bool(terminated.any()) and not bool(truncated.any())
    done = terminated.nonzero().flatten()
    final = info["final_obs"]["policy"]
    assert not torch.allclose(final[done], obs["policy"][done])  # reset rows differ from the pre-reset obs
    live = (~terminated).nonzero().flatten()
    assert torch.equal(final[live], obs["policy"][live])
    assert (env.steps[done] == 0).all()
    assert info["episode"]["length"].shape == (len(done),) and (info["episode"]["length"] > 0).all()
    assert torch.isfinite(info["episode"]["return"]).all()
    # the reset state is the v5 start distribution: qpos0 + U(-5e-3, 5e-3)
    assert (obs["policy"][done, 0] - 1.25).abs().max() <= 5e-3 + 1e-6


def test_truncation_at_time_limit():
    env = make("mujoco-halfcheetah", num_envs=3, episode_steps=5)
    env.reset(seed=0)
    a = torch.zeros(3, 6)
    for k in range(1, 6):
        obs, _, terminated, truncated, info = env.step(a)
        assert not terminated.any()
        assert bool(truncated.all()) == (k == 5)
    assert torch.equal(info["episode"]["length"], torch.full((3,), 5))
    assert not torch.equal(info["final_obs"]["policy"], obs["policy"])
    assert env.spec.max_episode_steps == 5 and make("mujoco-hopper", num_envs=1).spec.max_episode_steps == 1000


def test_action_clipping_to_ctrlrange():
    env = make("mujoco-hopper", num_envs=2, num_threads=1)
    env.reset(seed=0)
    qpos, qvel = env.get_state()
    env.set_state(qpos[:1].expand(2, -1), qvel[:1].expand(2, -1))
    _, reward, _, _, info = env.step(torch.tensor([[1.0, -1.0, 1.0], [7.0, -9.0, 1e6]]))
    assert torch.equal(info["final_obs"]["policy"][0], info["final_obs"]["policy"][1])
    assert reward[0] == reward[1]  # the control cost is that of the applied (clipped) action
    hum = make("mujoco-humanoid", num_envs=1)
    assert hum.spec.action_low == -0.4 and hum.spec.action_high == 0.4


def test_determinism_under_seed():
    def rollout(seed: int) -> torch.Tensor:
        env = make("mujoco-ant", num_envs=3, num_threads=2)
        out = [env.reset(seed=seed)["policy"]]
        gen = torch.Generator().manual_seed(5)
        for _ in range(20):
            out.append(env.step(torch.rand(3, 8, generator=gen) * 2 - 1)[0]["policy"])
        return torch.stack(out)

    assert torch.equal(rollout(3), rollout(3))
    assert not torch.equal(rollout(3)[0], rollout(4)[0])


def _run_from(env, qpos, qvel, steps=20) -> torch.Tensor:
    env.set_state(qpos, qvel)
    a = torch.full((env.num_envs, env.spec.action_dim), 0.3)
    return torch.stack([env.step(a)[4]["final_obs"]["policy"] for _ in range(steps)])


def test_domain_randomization_off_is_nominal_and_on_changes_dynamics():
    base = make("mujoco-ant", num_envs=2)
    base.reset(seed=0)
    assert all(m is base.model for m in base.models)  # off: one shared model, nominal parameters
    qpos, qvel = base.get_state()
    ref = _run_from(base, qpos, qvel)

    unit = MujocoDRConfig(enabled=True, mass_scale=(1, 1), friction_scale=(1, 1), damping_scale=(1, 1),
                          gain_scale=(1, 1))  # fmt: skip
    same = make("mujoco-ant", num_envs=2, dr=unit)
    same.reset(seed=0)
    assert torch.allclose(_run_from(same, qpos, qvel), ref, rtol=1e-5, atol=1e-5)  # per-env copies, factor 1

    for field_name in ("mass_scale", "friction_scale", "damping_scale", "gain_scale"):
        dr = MujocoDRConfig(enabled=True, **{k: (1, 1) for k in ("mass_scale", "friction_scale", "damping_scale",
                                                                "gain_scale") if k != field_name})  # fmt: skip
        env = make("mujoco-ant", num_envs=2, dr=dr)
        env.reset(seed=0)
        params = env.get_params()
        out = _run_from(env, qpos, qvel)
        assert not torch.allclose(out, ref, atol=1e-4), field_name
        assert not torch.equal(out[:, 0], out[:, 1]), f"{field_name}: envs share one draw"
    p = env.get_params()
    assert p["actuator_gain"].shape == (2, 8) and not torch.equal(p["actuator_gain"][0], p["actuator_gain"][1])
    assert torch.equal(params["body_mass"], base.get_params()["body_mass"])  # mass factor held at 1 there


def test_push_disturbances():
    ref_env = make("mujoco-halfcheetah", num_envs=2)
    ref_env.reset(seed=0)
    qpos, qvel = ref_env.get_state()
    ref = _run_from(ref_env, qpos, qvel, steps=5)
    unit = dict(mass_scale=(1, 1), friction_scale=(1, 1), damping_scale=(1, 1), gain_scale=(1, 1))
    pushed = make("mujoco-halfcheetah", num_envs=2, dr=MujocoDRConfig(enabled=True, push_prob=1.0, **unit))
    pushed.reset(seed=0)
    out = _run_from(pushed, qpos, qvel, steps=5)
    assert not torch.allclose(out, ref, atol=1e-3)
    none = make("mujoco-halfcheetah", num_envs=2, dr=MujocoDRConfig(enabled=True, push_prob=0.0, **unit))
    none.reset(seed=0)
    assert torch.allclose(_run_from(none, qpos, qvel, steps=5), ref, rtol=1e-5, atol=1e-5)


def test_bad_input_errors():
    env = make("mujoco-hopper", num_envs=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="NaN"):
        env.step(torch.tensor([[0.0, 0.0, 0.0], [float("nan"), 0.0, 0.0]]))
    with pytest.raises(TypeError):
        env.step(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        env.set_state(torch.full((2, env.nq), float("nan")), torch.zeros(2, env.nv))
    with pytest.raises(TypeError):
        make("mujoco-hopper", num_envs=2, no_such_setting=1)
    with pytest.raises(ValueError):
        make("mujoco-hopper", num_envs=0)


def test_registered_with_spec():
    names = {t.name for t in list_tasks()}
    assert set(GYM_IDS) <= names
    dims = {"mujoco-halfcheetah": 17, "mujoco-hopper": 11, "mujoco-ant": 105, "mujoco-humanoid": 348}
    for task, dim in dims.items():
        env = make(task, num_envs=1)
        assert env.spec.obs_dims == {"policy": dim, "critic": dim}
        assert env.spec.control_dt == pytest.approx(_gym_env(task).dt)
