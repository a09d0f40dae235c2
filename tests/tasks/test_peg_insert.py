"""The peg-insert scene: physics that needs the peg's pose in the hand, what the pads feel, the VecEnv contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco", reason="the [mujoco] extra is not installed")

from sim2real.tasks.peg_insert import PegInsertConfig, PegInsertEnv  # noqa: E402


def _scripted(env: PegInsertEnv, obs: dict[str, torch.Tensor], knows_the_grasp: bool) -> torch.Tensor:
    """Centre the peg's tip (privileged) or the hand (what the robot knows) over the socket, then go down."""
    c = env.spec.obs_groups["critic"]
    crit = obs["critic"]
    if knows_the_grasp:
        xy = -crit[:, c.slice("tip_to_socket")][:, :2]
    else:
        xy = -crit[:, c.slice("hand_to_socket_estimate")][:, :2]
    a = torch.zeros(env.num_envs, 3)
    a[:, :2] = (xy / env.cfg.max_step_m).clamp(-1, 1)
    a[:, 2] = torch.where(xy.abs().max(1).values < 0.0003, -1.0, 0.0)  # down once over it
    return a


def _success_rate(env: PegInsertEnv, knows_the_grasp: bool, episodes: int, seed: int) -> float:
    obs, ended = env.reset(seed), []
    while len(ended) < episodes:
        obs, _, _, _, info = env.step(_scripted(env, obs, knows_the_grasp))
        if "episode" in info:
            ended += info["episode"]["success"].tolist()
    return float(np.mean(ended[:episodes]))


def test_inserting_needs_the_pegs_pose_in_the_hand() -> None:
    env = PegInsertEnv(PegInsertConfig(num_envs=16, tactile="none"))
    try:
        knows, guesses = _success_rate(env, True, 32, 0), _success_rate(env, False, 32, 0)
    finally:
        env.close()
    assert knows >= 0.9 and guesses <= 0.6, (knows, guesses)  # 1 mm clearance, the peg up to 5 mm off in the grasp


def test_the_pads_feel_where_the_peg_sits_in_the_grasp() -> None:
    env = PegInsertEnv(PegInsertConfig(num_envs=24))
    try:
        obs = env.reset(3)
        rows, cols = env.cfg.taxels
        field = obs["tactile"].reshape(24, 2, rows, cols, 3)
        pressure = field[..., 0].clamp_min(0)
        x = env.sensor.taxels[:, 0].reshape(rows, cols)  # the pads' x is the hand's x
        centroid = (pressure * x).sum((-1, -2)) / pressure.sum((-1, -2)).clamp_min(1e-9)  # (E, 2) [m]
        offset = torch.as_tensor(env.in_hand[:, 0], dtype=torch.float32)
        assert bool((pressure.sum((-1, -2)) > 0).all())  # every grasp is felt on both pads
        r = np.corrcoef(offset.numpy(), centroid[:, 0].numpy())[0, 1]
        assert r > 0.95 and torch.allclose(centroid[:, 0], centroid[:, 1], atol=1e-3), r
    finally:
        env.close()


def test_a_blocked_peg_slips_in_the_grasp_which_only_the_pads_feel() -> None:
    """The arm is stiff and the grasp gives: pushing the peg onto the socket's top moves the arm as commanded (no
    contact cue in proprioception) and slides the peg up between the pads (the imprint moves), until the grasp is
    lost: the episode then ends, failed, with the penalty."""
    env = PegInsertEnv(PegInsertConfig(num_envs=1, num_threads=1))
    try:
        obs = env.reset(0)
        d, c = env.datas[0], env.spec.obs_groups["critic"]
        rows, cols = env.cfg.taxels
        y = env.sensor.taxels[:, 1].reshape(rows, cols)  # along the pad's rows: the peg's axis

        def imprint(o: dict[str, torch.Tensor]) -> float:
            p = o["tactile"].reshape(2, rows, cols, 3)[0, ..., 0].clamp_min(0)
            return float((p * y).sum() / p.sum())

        over_wall = env.socket[0, :2] + [0.0, 0.008]  # the tip over the wall's top, 8 mm beside the hole's centre
        for _ in range(10):
            a = torch.zeros(1, 3)
            a[0, :2] = torch.as_tensor(over_wall - d.qpos[0:2]) / env.cfg.max_step_m
            obs, *_ = env.step(a.clamp(-1, 1))
        felt, lag, slid, info = [imprint(obs)], [], 0.0, {}
        for _ in range(60):  # straight down, onto the wall and on
            obs, reward, terminated, _, info = env.step(torch.tensor([[0.0, 0.0, -1.0]]))
            if bool(terminated[0]):
                break
            lag.append(float(np.abs(d.qpos[0:3] - d.ctrl).max()))
            felt.append(imprint(obs))
            slid = float(obs["critic"][0, c.slice("peg_in_hand")][1]) - env.in_hand[0, 1]
        assert bool(terminated[0]) and info["episode"]["success"].tolist() == [0.0]
        assert float(reward[0]) < -env.cfg.lost_grasp_penalty
        assert max(lag) < 3e-4  # the arm never stalls: 0.3 mm at most from its command
        assert slid > 0.006  # the peg had slid up in the grasp before it was lost ...
        assert abs(felt[-1] - felt[0]) > 0.0015  # ... and the pads felt it: the imprint moved along the peg
    finally:
        env.close()


@pytest.mark.parametrize(
    ("tactile", "dim"), [("force_field", 2 * 14 * 10 * 3), ("image", 2 * 3 * 80 * 60), ("none", 0)]
)
def test_observation_groups_and_the_vecenv_contract(tactile: str, dim: int) -> None:
    env = PegInsertEnv(PegInsertConfig(num_envs=4, tactile=tactile, episode_s=0.25))
    try:
        obs = env.reset(1)
        assert obs["policy"].shape == (4, 9) and obs["critic"].shape == (4, 21)
        assert ("tactile" in obs) == (dim > 0) and (dim == 0 or obs["tactile"].shape == (4, dim))
        assert env.spec.obs_dims == {k: v.shape[1] for k, v in obs.items()}
        for _ in range(5):  # 0.25 s at 20 Hz
            obs, reward, terminated, truncated, info = env.step(torch.zeros(4, 3))
            assert set(info["final_obs"]) == set(obs)  # every step (the contract)
        assert bool(truncated.all()) and not bool(terminated.any()) and reward.shape == (4,)
        assert info["episode"]["length"].tolist() == [5] * 4 and set(info["final_obs"]) == set(obs)
        assert bool(torch.isfinite(reward).all()) and float(env.steps.max()) == 0
        with pytest.raises(ValueError, match="action must be \\(4, 3\\)"):
            env.step(torch.zeros(3, 3))
        with pytest.raises(ValueError, match="NaN"):
            env.step(torch.full((4, 3), math.nan))
    finally:
        env.close()
    with pytest.raises(ValueError, match="tactile must be"):
        PegInsertConfig(tactile="touch")
