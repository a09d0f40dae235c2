"""The Isaac Gym adapter: a VecTask behind our VecEnv contract, in this process and behind the bridge's pipe.

Isaac Gym cannot be installed here (Python <= 3.8, not on the package index), so these tests drive the adapter
with :class:`vectask_pointmass.PointMassTask`, a small task written for the tests that follows IsaacGymEnvs'
VecTask conventions (its buffers, its step and its one-step-late resets). The real Isaac Gym path is tested at the
end and skipped where ``isaacgym`` is missing.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import field, make_dataclass
from functools import partial
from pathlib import Path

import pytest
import torch
from vectask_pointmass import PointMassTask

from sim2real.core.config import apply_overrides
from sim2real.core.policy_file import OnnxPolicy
from sim2real.eval.returns import evaluate_returns
from sim2real.export.onnx import export_onnx
from sim2real.policies.runner import Runner, TrainConfig
from sim2real.policies.sac import SACConfig
from sim2real.sim.isaacgym_bridge import RemoteError, RemoteVecTask
from sim2real.sim.isaacgym_vectask import IsaacGymConfig, VecTaskEnv, make_isaacgym
from sim2real.sim.registry import TaskSpec, get_task, make, register

HERE = str(Path(__file__).parents[1])  # tests/, where vectask_pointmass.py lives
TASK = "test-vectask-pointmass"
PointMassConfig = make_dataclass("PointMassConfig", [("task", str, field(default="PointMass")),
                                                     ("num_envs", int, field(default=8)),
                                                     ("device", str, field(default="cpu"))], bases=(IsaacGymConfig,))  # fmt: skip
PointMassConfig.__module__ = __name__


def _make(cfg: IsaacGymConfig) -> VecTaskEnv:
    return VecTaskEnv(PointMassTask(cfg.num_envs, cfg.device), cfg, name=TASK)


register(TaskSpec(name=TASK, description="point mass, VecTask conventions (tests)", config=PointMassConfig, make=_make,
                  train_defaults=partial(TrainConfig, task=TASK, num_envs=8, env=PointMassConfig())))  # fmt: skip


def _remote(num_envs: int = 4, task: str = "PointMass") -> RemoteVecTask:
    kwargs = {"seed": 3, "task": task, "num_envs": num_envs, "sim_device": "cpu", "rl_device": "cpu"}
    return RemoteVecTask(sys.executable, kwargs, factory="vectask_pointmass:make", paths=(HERE,))


def test_groups_termination_and_same_step_reset() -> None:
    env = make(TASK, num_envs=4)
    obs = env.reset(seed=0)
    assert env.spec.obs_dims == {"policy": 4, "critic": 5} and env.spec.action_dim == 2
    assert env.spec.control_dt == pytest.approx(0.04) and env.spec.max_episode_steps == 100
    assert obs["policy"].abs()[:, :2].max() <= 1.0 and torch.equal(obs["critic"][:, :4], obs["policy"])
    push = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # envs 0, 1 leave |x| < 2
    rewards, ended = [], None
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(push)
        rewards.append(reward[0])
        if terminated[0]:
            ended = info
            break
    assert ended is not None, "pushed envs must leave the |x| < 2 box"
    assert not truncated.any() and not terminated[2:].any()
    final = ended["final_obs"]["policy"]
    assert final[0, :2].norm() > 2.0 and obs["policy"][0, :2].abs().max() <= 1.0  # final state kept, new episode out
    assert torch.equal(final[2:], obs["policy"][2:])  # envs that go on: final_obs == obs
    ep = ended["episode"]
    assert ep["return"][0] == pytest.approx(float(torch.stack(rewards).sum()), rel=1e-5)
    assert int(ep["length"][0]) == len(rewards) and int(env.steps[0]) == 0
    # the task does not reset the env again at its next step (the adapter cleared its reset_buf)
    x_new = obs["policy"][0, :2].clone()
    obs, *_ = env.step(torch.zeros(4, 2))
    assert (obs["policy"][0, :2] - x_new).norm() < 0.01 and int(env.steps[0]) == 1


def test_time_out_is_truncation() -> None:
    env = make(TASK, num_envs=2)
    env.reset(seed=1)
    t = 0
    while t < 100:
        t += 1
        _, _, terminated, truncated, info = env.step(torch.zeros(2, 2))
        if truncated.any():
            break
    assert truncated.all() and not terminated.any() and t == 99  # IsaacGymEnvs: progress >= max_episode_length - 1
    assert info["episode"]["length"].tolist() == [99, 99]


def test_bad_actions_and_configs() -> None:
    env = make(TASK, num_envs=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(torch.tensor([[0.0, float("nan")], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="action shape"):
        env.step(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="reset must be one of"):
        PointMassConfig(reset="later")
    with pytest.raises(TypeError, match="not a VecTask"):
        VecTaskEnv(object(), PointMassConfig(), name=TASK)
    with pytest.raises(ValueError, match="the task has 3 envs"):
        VecTaskEnv(PointMassTask(3), PointMassConfig(num_envs=2), name=TASK)


def test_sac_trains_exports_and_evaluates_on_a_vectask(tmp_path: Path) -> None:
    torch.manual_seed(0)
    sac = SACConfig(actor_obs="policy", critic_obs="critic", actor_hidden=(64, 64), critic_hidden=(64, 64), batch_size=128)
    cfg = apply_overrides(TrainConfig(task=TASK, num_envs=8, env=PointMassConfig(), sac=sac), {
        "total_env_steps": 8000, "warmup_env_steps": 800, "updates_per_step": 6.0, "log_interval": 3000,
        "log_dir": str(tmp_path)})  # fmt: skip
    runner = Runner(cfg, quiet=True)
    runner.train()
    policy = OnnxPolicy(export_onnx(runner.run_dir))
    assert policy.metadata.task == TASK and policy.obs_dim == 4
    spec = get_task(TASK)
    trained = evaluate_returns(policy, spec, PointMassConfig(), episodes=16, seed=7)
    still = evaluate_returns(lambda obs: torch.zeros(len(obs), 2), spec, PointMassConfig(), episodes=16, seed=7)
    # standing still costs the start distance every step (~ -0.76 x 99); the trained policy brings the mass home
    assert trained["return_mean"] > 0.5 * still["return_mean"], (trained, still)


def test_bridge_runs_the_task_in_another_process_step_for_step() -> None:
    local = VecTaskEnv(PointMassTask(4), PointMassConfig(num_envs=4), name=TASK)
    remote_task = _remote()
    remote = VecTaskEnv(remote_task, PointMassConfig(num_envs=4), name=TASK)
    try:
        assert remote.spec.obs_dims == local.spec.obs_dims and remote.spec.control_dt == local.spec.control_dt
        a, b = local.reset(seed=5), remote.reset(seed=5)
        gen = torch.Generator().manual_seed(0)
        ends = 0
        for _ in range(150):
            action = torch.rand(4, 2, generator=gen) * 2 - 1
            a, ra, ta, ua, ia = local.step(action)
            b, rb, tb, ub, ib = remote.step(action)
            assert torch.equal(a["policy"], b["policy"]) and torch.equal(a["critic"], b["critic"])
            assert torch.equal(ra, rb) and torch.equal(ta, tb) and torch.equal(ua, ub)
            assert torch.equal(ia["final_obs"]["policy"], ib["final_obs"]["policy"])
            ends += int((ta | ua).sum())
        assert ends > 0  # resets crossed the pipe too
        remote.set_env_steps(1234)
    finally:
        remote.close()
    assert remote_task._proc.returncode == 0


def test_bridge_errors_are_clear() -> None:
    with pytest.raises(RemoteError, match="ValueError: task Broken has no config"):
        _remote(task="Broken")
    with pytest.raises(RemoteError, match="cannot start the VecTask server"):
        RemoteVecTask("/nonexistent/python3.8", {})
    task = _remote()
    try:
        with pytest.raises(RemoteError, match="Error"):  # a wrong action shape fails in the task, not silently
            task.step(torch.zeros(3, 7))
        task.step(torch.zeros(4, 2))  # the server goes on after an error
    finally:
        task.close()
    with pytest.raises(RemoteError, match="exited"):
        task.step(torch.zeros(4, 2))


@pytest.mark.skipif(importlib.util.find_spec("isaacgym") is not None, reason="Isaac Gym is installed here")
def test_missing_isaac_gym_names_the_install_steps() -> None:
    with pytest.raises(ImportError, match="env.python"):
        make("isaacgym-cartpole", num_envs=4, device="cpu")


@pytest.mark.skipif(importlib.util.find_spec("isaacgym") is None,
                    reason="Isaac Gym Preview 4 is not installable here (Python <= 3.8, not on the package index)")  # fmt: skip
def test_real_isaac_gym_cartpole() -> None:  # pragma: no cover - needs Isaac Gym
    env = make_isaacgym(get_task("isaacgym-cartpole").config(num_envs=16))
    try:
        obs = env.reset(seed=0)
        assert obs["policy"].shape == (16, env.spec.obs_dims["policy"])
        for _ in range(600):
            obs, reward, terminated, truncated, info = env.step(torch.zeros(16, env.spec.action_dim, device=env.device))
            assert torch.isfinite(obs["policy"]).all() and reward.shape == (16,)
    finally:
        env.close()
