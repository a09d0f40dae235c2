"""Gymnasium wrappers: SB3 compatibility, vector conventions, Pendulum parity, registration."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from sim2real.sim.gym_wrappers import FromGymnasium, ToGymnasiumEnv, ToGymnasiumVector
from sim2real.tasks.quadrotor_hover.env import HoverConfig, QuadrotorHoverEnv
from sim2real.tasks.quadrotor_hover.gym_env import HOVER_GYM_ID, register_gymnasium

torch.set_num_threads(1)


def _hover(num_envs: int = 1, **kw) -> QuadrotorHoverEnv:
    return QuadrotorHoverEnv(HoverConfig(num_envs=num_envs, **kw))


@pytest.mark.parametrize("obs_group", ["policy", "critic", None])
def test_sb3_check_env_passes(obs_group: str | None) -> None:
    from stable_baselines3.common.env_checker import check_env

    env = ToGymnasiumEnv(_hover(), obs_group=obs_group)
    check_env(env)  # raises on any API violation
    if obs_group is None:
        assert isinstance(env.observation_space, spaces.Dict)
        assert env.observation_space["policy"].shape == (146,) and env.observation_space["critic"].shape == (38,)


def test_to_gym_env_rejects_batched_env() -> None:
    with pytest.raises(ValueError, match="num_envs=4"):
        ToGymnasiumEnv(_hover(4))


def test_to_gym_env_returns_final_obs_and_does_not_autoreset() -> None:
    raw, env = _hover(episode_steps=3), ToGymnasiumEnv(_hover(episode_steps=3))
    raw_obs = raw.reset(5)
    obs, info = env.reset(seed=5)
    assert obs.dtype == np.float32 and obs.shape == (146,) and info == {}
    np.testing.assert_array_equal(obs, raw_obs["policy"][0].numpy())
    rng = np.random.default_rng(0)
    for t in range(1, 7):
        a = rng.uniform(-1, 1, 4).astype(np.float32)
        raw_obs, raw_r, raw_te, raw_tr, raw_info = raw.step(torch.from_numpy(a)[None])
        obs, r, te, tr, info = env.step(a)
        assert type(r) is float and type(te) is bool and type(tr) is bool
        assert r == pytest.approx(float(raw_r[0])) and (te, tr) == (bool(raw_te[0]), bool(raw_tr[0]))
        assert info["reward_terms"].shape == (len(raw.reward_term_names),)
        if te or tr:
            assert t % 3 == 0 and info["episode"]["l"] == 3
            np.testing.assert_array_equal(obs, raw_info["final_obs"]["policy"][0].numpy())  # not the reset obs
            obs, _ = env.reset()  # the caller resets: the episode the VecEnv already started
        np.testing.assert_array_equal(obs, raw_obs["policy"][0].numpy())
    # a seeded reset really resets
    np.testing.assert_array_equal(env.reset(seed=5)[0], _hover().reset(5)["policy"][0].numpy())


def test_sb3_sac_runs_on_wrapped_env() -> None:
    from stable_baselines3 import SAC

    model = SAC("MlpPolicy", ToGymnasiumEnv(_hover(episode_steps=20)), learning_starts=20, batch_size=16,
                policy_kwargs={"net_arch": [16, 16]}, seed=0, device="cpu")  # fmt: skip
    model.learn(total_timesteps=48)
    action, _ = model.predict(np.zeros((3, 146), np.float32), deterministic=True)
    assert action.shape == (3, 4) and np.abs(action).max() <= 1.0


def test_vector_wrapper_shapes_and_same_step_final_obs() -> None:
    n = 4
    raw, venv = _hover(n, episode_steps=3), ToGymnasiumVector(_hover(n, episode_steps=3))
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert venv.num_envs == n and venv.single_observation_space.shape == (146,)
    assert venv.observation_space.shape == (n, 146) and venv.action_space.shape == (n, 4)
    assert venv.single_action_space == spaces.Box(-1, 1, (4,), np.float32)
    obs, _ = venv.reset(seed=2)
    raw.reset(2)
    assert obs.shape == (n, 146) and obs.dtype == np.float32
    for t in range(1, 4):
        a = venv.action_space.sample()
        raw_obs, _, _, _, raw_info = raw.step(torch.from_numpy(a))
        obs, rew, term, trunc, infos = venv.step(a)
        assert rew.shape == (n,) and rew.dtype == np.float32
        assert term.dtype == np.bool_ and trunc.dtype == np.bool_ and term.shape == (n,)
        assert infos["reward_terms"].shape == (n, len(raw.reward_term_names))
        np.testing.assert_array_equal(obs, raw_obs["policy"].numpy())
        if t < 3:
            assert "final_obs" not in infos
    assert trunc.all() and infos["_final_obs"].all() and infos["_episode"].all()
    assert infos["final_obs"].dtype == object and infos["final_obs"].shape == (n,)
    for i in range(n):
        np.testing.assert_array_equal(infos["final_obs"][i], raw_info["final_obs"]["policy"][i].numpy())
        assert not np.array_equal(infos["final_obs"][i], obs[i])  # obs already holds the new episode
    np.testing.assert_array_equal(infos["episode"]["l"], np.full(n, 3))


def test_vector_wrapper_dict_observation_and_partial_done() -> None:
    n = 3
    venv = ToGymnasiumVector(_hover(n, termination_box=0.6), obs_group=None)
    assert isinstance(venv.single_observation_space, spaces.Dict)
    obs, _ = venv.reset(seed=0)
    assert obs["policy"].shape == (n, 146) and obs["critic"].shape == (n, 38)
    venv.env.state[1, 0] = 0.59  # env 1 leaves the box in the next step
    venv.env.state[1, 7] = 5.0
    obs, _, term, trunc, infos = venv.step(np.zeros((n, 4), np.float32))
    assert term.tolist() == [False, True, False] and not trunc.any()
    assert infos["_final_obs"].tolist() == [False, True, False]
    assert infos["final_obs"][0] is None and infos["final_obs"][2] is None
    fin = infos["final_obs"][1]
    assert set(fin) == {"policy", "critic"} and fin["critic"][0] > 0.6  # pre-reset position error
    assert abs(obs["critic"][1, 0]) <= 0.2 + 1e-6  # reset already happened


def test_from_gymnasium_pendulum_matches_plain_gymnasium() -> None:
    seed, steps = 3, 230
    env = FromGymnasium("Pendulum-v1", num_envs=1)
    assert env.spec.obs_dims == {"policy": 3, "critic": 3} and env.spec.action_dim == 1
    assert env.spec.control_dt == pytest.approx(0.05) and env.spec.max_episode_steps == 200
    assert (env.spec.action_low, env.spec.action_high) == (-1.0, 1.0)
    plain = gymnasium.make("Pendulum-v1")
    obs = env.reset(seed)
    p_obs, _ = plain.reset(seed=seed)
    np.testing.assert_allclose(obs["policy"][0].numpy(), p_obs, atol=1e-6)
    assert obs["policy"] is obs["critic"] and obs["policy"].dtype == torch.float32
    rng = np.random.default_rng(1)
    ep_return, ended = 0.0, 0
    for _ in range(steps):
        a = rng.uniform(-1, 1, (1, 1)).astype(np.float32)
        np.testing.assert_allclose(env.env_action(torch.from_numpy(a)), 2.0 * a, atol=1e-6)
        obs, r, term, trunc, info = env.step(torch.from_numpy(a))
        p_obs, p_r, p_term, p_trunc, _ = plain.step(2.0 * a[0])
        ep_return += p_r
        assert r.dtype == torch.float32 and term.dtype == torch.bool and trunc.dtype == torch.bool
        assert r.shape == term.shape == trunc.shape == (1,)
        assert r.item() == pytest.approx(p_r, abs=1e-4) and (term.item(), trunc.item()) == (p_term, p_trunc)
        np.testing.assert_allclose(info["final_obs"]["policy"][0].numpy(), p_obs, atol=1e-5)
        if p_term or p_trunc:
            ended += 1
            assert info["episode"]["length"].tolist() == [200]
            assert info["episode"]["return"].item() == pytest.approx(ep_return, rel=1e-4)
            p_obs, _ = plain.reset()  # the same-step autoreset continues the env's own RNG
            ep_return = 0.0
        else:
            assert "episode" not in info
        np.testing.assert_allclose(obs["policy"][0].numpy(), p_obs, atol=1e-5)
    assert ended == 1
    env.close()


def test_from_gymnasium_vectorised_and_rejects_discrete() -> None:
    env = FromGymnasium(lambda: gymnasium.make("Pendulum-v1"), num_envs=3)
    obs = env.reset(0)
    assert obs["policy"].shape == (3, 3)
    obs, r, term, trunc, info = env.step(torch.zeros(3, 1))
    assert r.shape == (3,) and info["final_obs"]["policy"].shape == (3, 3)
    with pytest.raises(ValueError, match="action shape"):
        env.step(torch.zeros(2, 1))
    with pytest.raises(TypeError, match="Box action space"):
        FromGymnasium("CartPole-v1")


def test_gymnasium_make_registered_hover() -> None:
    register_gymnasium()
    register_gymnasium()  # idempotent
    env = gymnasium.make(HOVER_GYM_ID)
    assert env.observation_space.shape == (146,) and env.action_space.shape == (4,)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (146,)
    _, r, term, trunc, info = env.step(env.action_space.sample())
    assert isinstance(r, float) and not term and not trunc and "reward_terms" in info
    short = gymnasium.make(HOVER_GYM_ID, episode_steps=2, obs_group=None)
    short.reset(seed=0)
    short.step(np.zeros(4, np.float32))
    obs, _, _, trunc, _ = short.step(np.zeros(4, np.float32))
    assert trunc and set(obs) == {"policy", "critic"}
