"""Task mujoco-humanoid-walk: layout, servo, commands, reward, termination, DR, training, export, validation."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco", reason="MuJoCo backend tests need the mujoco package (sim2real[mujoco])")
pytest.importorskip("gymnasium")

from sim2real.core.config import apply_overrides
from sim2real.policies.runner import Runner  # noqa: E402
from sim2real.policies.sac import SAC  # noqa: E402
from sim2real.sim.mujoco.env import MujocoDRConfig  # noqa: E402
from sim2real.sim.registry import get_task, make  # noqa: E402
from sim2real.tasks.humanoid_walk import (  # noqa: E402
    TASK,
    CommandConfig,
    HumanoidWalkConfig,
    HumanoidWalkEnv,
    ObsNoiseConfig,
    TerminationConfig,
    humanoid_dr,
    train_defaults,
    validate,
)

torch.set_num_threads(1)
NO_FALL = TerminationConfig(min_height=-1e9, max_height=1e9, max_tilt=math.pi)


@pytest.fixture(autouse=True)
def _quiet_mujoco_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def env_of(num_envs: int = 4, dr: bool = False, **kw) -> HumanoidWalkEnv:
    kw.setdefault("num_threads", 1)
    return HumanoidWalkEnv(HumanoidWalkConfig(num_envs=num_envs, dr=humanoid_dr() if dr else MujocoDRConfig(), **kw))


def sl(env: HumanoidWalkEnv, name: str, group: str = "critic") -> slice:
    return env.spec.obs_groups[group].slice(name)


def test_registry_spec_and_layout() -> None:
    entry = get_task(TASK)
    assert entry.config is HumanoidWalkConfig and entry.validate is validate and entry.train_defaults is not None
    env = make(TASK, num_envs=2, num_threads=1)
    spec = env.spec
    assert spec.obs_dims == {"policy": 60, "critic": 121} and spec.action_dim == 17
    assert (spec.action_low, spec.action_high) == (-1.0, 1.0) and spec.control_dt == pytest.approx(0.02)
    pol, cri = spec.obs_groups["policy"], spec.obs_groups["critic"]
    assert pol.noise_free().terms == cri.terms[: len(pol)]  # the critic starts with the policy group, noise-free
    assert all(t.noise_std == 0.0 for t in cri) and all(t.noise_std > 0 for t in pol if "joint" in t.name)
    robot = spec.robot
    joints = [env.model.joint(j).name for j in env.model.actuator_trnid[:, 0]]
    assert robot["joint_names"] == joints == spec.action_meaning["names"] and joints[0] == "abdomen_y"
    for key in ("default_joint_pos", "action_scale", "kp", "kd", "torque_limit", "joint_range"):
        assert len(robot[key]) == 17, key
    assert robot["default_joint_pos"][joints.index("right_knee")] == -0.3 and "q_target" in robot["control"]


@pytest.mark.parametrize("dr", [False, True])
def test_random_rollout_shapes_finite_and_dr_factors(dr: bool) -> None:
    env = env_of(8, dr=dr, num_threads=2)
    obs = env.reset(seed=3)
    gen = torch.Generator().manual_seed(0)
    ended = 0
    for _ in range(250):
        obs, reward, terminated, truncated, info = env.step(torch.rand(8, 17, generator=gen) * 2 - 1)
        assert obs["policy"].shape == (8, 60) and obs["critic"].shape == (8, 121)
        assert obs["policy"].dtype == obs["critic"].dtype == reward.dtype == torch.float32
        assert terminated.dtype == truncated.dtype == torch.bool and reward.shape == (8,)
        for x in (obs["policy"], obs["critic"], reward, info["reward_terms"], info["final_obs"]["critic"]):
            assert torch.isfinite(x).all()
        assert torch.allclose(env.reward_from_terms(info["reward_terms"]), reward, atol=1e-4, rtol=1e-5)
        ended += int(terminated.sum())
    assert ended > 8  # random targets make it fall: resets were exercised
    factors = obs["critic"][:, sl(env, "dr_body_mass").start :].double()
    if not dr:
        assert torch.equal(factors, torch.ones_like(factors))
        return
    params, nom = env.get_params(), env._nominal  # the critic's factors are get_params() / nominal
    mass = params["body_mass"][:, 1:] / torch.as_tensor(nom["body_mass"][1:])
    torch.testing.assert_close(factors[:, :13], mass, atol=1e-6, rtol=1e-6)
    gain = params["actuator_gain"] / torch.as_tensor(env.kp)
    torch.testing.assert_close(factors[:, -17:], gain, atol=1e-6, rtol=1e-6)
    assert (mass - 1).abs().max() > 0.02 and (gain - 1).abs().max() > 0.02
    for m in env.models:  # the servo's bias follows its randomized gain: no offset of the set-point
        np.testing.assert_allclose(m.actuator_biasprm[:, 1], -m.actuator_gainprm[:, 0])


def test_pushes_apply_force() -> None:
    """Pushes on the torso change the robot's momentum by the impulse and show in the critic observation."""
    import mujoco

    def run(push_prob: float) -> tuple[torch.Tensor, HumanoidWalkEnv, dict]:
        dr = MujocoDRConfig(enabled=True, push_prob=push_prob, push_force_std=300.0, push_steps=2)
        env = HumanoidWalkEnv(HumanoidWalkConfig(num_envs=4, num_threads=1, dr=dr, termination=NO_FALL))
        env.reset(seed=0)  # same seed: same DR draws and start states with and without pushes
        obs = env.step(torch.zeros(4, 17))[0]
        v_com = []
        for m, d in zip(env.models, env.datas):
            mujoco.mj_forward(m, d)
            mujoco.mj_subtreeVel(m, d)
            v_com.append(d.subtree_linvel[env.root_body].copy())  # centre-of-mass velocity of the robot
        return torch.as_tensor(np.stack(v_com)), env, obs

    v_push, env, obs = run(1.0)
    v_free, _, _ = run(0.0)
    force = torch.as_tensor(env._push[:, :3])
    assert (force.norm(dim=1) > 1.0).all()
    torch.testing.assert_close(
        obs["critic"][:, sl(env, "push_force")].double(), force / env._weight_n, atol=1e-6, rtol=0
    )
    mass = torch.tensor([m.body_mass.sum() for m in env.models])
    impulse = force * env.dt / mass[:, None]  # delta v_com = F dt / M (the ground reaction barely changes in 20 ms)
    torch.testing.assert_close(v_push - v_free, impulse, atol=0.15 * float(impulse.abs().max()), rtol=0)


def test_servo_tracks_position_targets() -> None:
    """The MuJoCo actuator is the PD law; floating in zero gravity it drives the joints to default + scale * a."""
    import mujoco

    env = env_of(2, termination=NO_FALL, noise=ObsNoiseConfig(enabled=False))
    env.model.opt.gravity[:] = 0.0
    env.reset(seed=0)
    qpos, qadr = torch.as_tensor(env.init_qpos).repeat(2, 1), torch.as_tensor(env._qadr)
    qpos[:, 2] = 1.6
    q0 = torch.as_tensor(env.default_pose) + 0.1 * (-1.0) ** torch.arange(17)  # +-0.1 rad off the default pose
    qpos[0, qadr] = q0
    env.set_state(qpos, torch.zeros(2, env.nv))
    action = torch.zeros(2, 17)
    action[1] = -0.5  # (+0.5 turns both legs inward until the feet touch)
    lo, hi = env.act_low.double(), env.act_high.double()
    target = torch.clamp(
        torch.as_tensor(env.default_pose) + torch.as_tensor(env.action_scale) * action.double(), lo, hi
    )
    m, d = env.models[0], env.datas[0]
    d.ctrl[:] = target[0].numpy()
    mujoco.mj_forward(m, d)  # at rest: tau = clip(kp (q_target - q), +-tau_max)
    kp, limit = torch.as_tensor(env.kp), torch.as_tensor(env.torque_limit)
    expected = torch.maximum(torch.minimum(kp * (target[0] - q0), limit), -limit)
    torch.testing.assert_close(torch.as_tensor(d.actuator_force), expected)
    for _ in range(100):
        obs = env.step(action)[0]
    # q_target = default + scale * a in the joint range (sent to MuJoCo as float32, the VecEnv action dtype)
    torch.testing.assert_close(torch.as_tensor(env._ctrl), target.float().double(), atol=0, rtol=0)
    q = env.get_state()[0][:, qadr]
    assert (q - target).abs().max() < 0.01
    joint_pos = obs["policy"][:, sl(env, "joint_pos", "policy")].double()
    torch.testing.assert_close(joint_pos, q - torch.as_tensor(env.default_pose), atol=1e-6, rtol=0)


def test_friction_cone_option() -> None:
    import mujoco

    assert env_of(1).model.opt.cone == mujoco.mjtCone.mjCONE_PYRAMIDAL  # the MJCF's (see the module docstring)
    assert env_of(1, friction_cone="elliptic").model.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC
    with pytest.raises(ValueError, match="friction_cone"):
        env_of(1, friction_cone="round")


def test_commands_resampled_and_observed() -> None:
    cmds = CommandConfig(resample_s=0.2, standing_fraction=0.0)  # every 10 control steps
    env = env_of(4, commands=cmds, termination=NO_FALL)
    obs = env.reset(seed=1)
    cmd = sl(env, "command", "policy")
    first = env.commands.clone()
    assert torch.equal(obs["policy"][:, cmd], first.float()) and first.abs().min() > 0
    for k in range(1, 11):
        obs = env.step(torch.zeros(4, 17))[0]
        assert torch.equal(obs["policy"][:, cmd], env.commands.float())
        assert torch.equal(env.commands, first) == (k < 10)
    c = env.commands
    assert (c[:, 0] >= -0.5).all() and (c[:, 0] <= 1.0).all() and (c[:, 2].abs() <= 0.5).all()
    standing = env_of(3, commands=CommandConfig(standing_fraction=1.0))
    standing.reset(seed=0)
    assert torch.equal(standing.commands, torch.zeros(3, 3))


def test_reward_higher_when_velocity_matches_command() -> None:
    env = env_of(2, noise=ObsNoiseConfig(enabled=False))
    env.reset(seed=0)
    qvel = torch.zeros(2, env.nv)
    qvel[0, 0] = 0.8  # env 0 moves forward at the commanded speed, env 1 stands
    qvel[:, 5] = 0.3  # both turn at the commanded yaw rate
    env.set_state(torch.as_tensor(env.init_qpos).repeat(2, 1), qvel)
    env.set_commands(torch.tensor([[0.8, 0.0, 0.3], [0.8, 0.0, 0.3]]))
    _, reward, terminated, _, info = env.step(torch.zeros(2, 17))
    assert not terminated.any()
    terms, err = info["reward_terms"], info["tracking_error"]
    assert terms[0, 0] > 0.8 and terms[1, 0] < 0.2 and err[0, 0] < 0.2 and err[1, 0] > 0.6
    assert (terms[:, 1] > 0.8).all() and (err[:, 1] < 0.2).all()
    assert reward[0] > reward[1] + 0.5


def test_termination_on_fall_and_truncation() -> None:
    env = env_of(3, episode_steps=3)
    env.reset(seed=0)
    qpos = torch.as_tensor(env.init_qpos).repeat(3, 1)
    qpos[0, 2] -= env.reset_noise  # feet on the floor (reset states start reset_noise above it)
    qpos[1, 2] = 0.5  # torso too low
    qpos[2, 3:7] = torch.tensor([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0])  # lying on its side
    env.set_state(qpos, torch.zeros(3, env.nv))
    obs, _, terminated, truncated, info = env.step(torch.zeros(3, 17))
    assert terminated.tolist() == [False, True, True] and not truncated.any()
    assert info["episode"]["length"].tolist() == [1, 1] and info["reward_terms"][:, 2].tolist() == [1.0, 0.0, 0.0]
    assert (obs["critic"][1:, sl(env, "base_height")] > 1.2).all()  # reset to standing
    feet = obs["critic"][0, sl(env, "foot_contact_force")].reshape(2, 3)  # world, / body weight
    assert feet[:, 2].sum() == pytest.approx(1.0, abs=0.15) and feet[:, :2].abs().max() < 0.1  # env 0 stands
    for _ in range(2):
        _, _, terminated, truncated, _ = env.step(torch.zeros(3, 17))
    assert truncated.tolist() == [True, False, False] and not terminated.any()


def test_validate_keys_deterministic_and_counts_falls() -> None:
    def zero(obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(obs.shape[0], 17)

    cfg = HumanoidWalkConfig(num_threads=1, episode_steps=30)
    a, b = validate(zero, cfg, 3, seed=1), validate(zero, cfg, 3, seed=1)
    assert a == b and {"score", "vel_error_xy", "yaw_rate_error", "fall_rate", "episode_length"} <= a.keys()
    assert a["fall_rate"] == 0.0 and a["episode_length"] == 30 and a["vel_error_xy"] > 0
    assert validate(zero, cfg, 3, seed=2) != a
    long = validate(zero, HumanoidWalkConfig(num_threads=1, episode_steps=150), 3, seed=1)  # zero action falls
    assert long["fall_rate"] == 1.0 and long["episode_length"] < 150 and long["score"] > 2.0


# ----------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    cfg = apply_overrides(
        train_defaults(),
        {"num_envs": 8, "total_env_steps": 2400, "warmup_env_steps": 800, "updates_per_step": 1.0,
         "sac.batch_size": 64, "sac.actor_hidden": (64, 64), "sac.critic_hidden": (64, 64),
         "log_interval": 800, "checkpoint_interval": 10**9, "eval_interval": 800, "eval_start": 1600,
         "eval_episodes": 2, "env": {"num_threads": 1, "episode_steps": 40},
         "log_dir": str(tmp_path_factory.mktemp("runs"))},
    )  # fmt: skip
    r = Runner(cfg, quiet=True)
    r.summary = r.train()
    return r


def test_ci_training_runs_without_nan(runner: Runner) -> None:
    assert runner.env_steps == 2400 and runner.agent.num_updates == (2400 - 800) // 8 + 1  # learns from step 800
    losses = [v for row in runner.history for k, v in row.items() if k.startswith("losses/")]
    assert losses and all(math.isfinite(v) for v in losses)
    for name, p in runner.agent.state_dict()["actor"].items():
        assert torch.isfinite(p).all(), name
    assert all(torch.isfinite(p).all() for p in runner.agent.critic.parameters())
    best = runner.summary["best_validation"]
    assert {"score", "vel_error_xy", "fall_rate"} <= best.keys() and (runner.run_dir / "best.pt").is_file()


def test_critic_td_loss_decreases_on_a_fixed_batch(runner: Runner) -> None:
    """SAC's own update with the target critics and the actor frozen (tau 0, actor never due) regresses Q onto
    fixed targets: 200 updates on one replay batch of the trained run must halve its TD loss. Fails if the
    critic's loss, gradients or optimiser are miswired, or the stored observations/reward terms are garbage."""
    cfg = dataclasses.replace(runner.cfg.sac, tau=0.0, actor_delay=10**9)
    agent = SAC(runner.env.spec.obs_dims, 17, cfg)  # a copy with the frozen settings
    agent.load_state_dict(runner.agent.state_dict())
    agent.num_updates = 1  # actor due only at multiples of actor_delay
    rng = torch.get_rng_state()
    batch = runner.replay.sample(256)
    batch["reward"] = runner.env.reward_from_terms(batch.pop("reward_terms"))
    keys = ("obs_actor", "obs_critic", "action", "reward", "next_obs_actor", "next_obs_critic", "terminated")
    actor_before = copy.deepcopy(agent.actor.state_dict())

    def td_loss() -> float:
        torch.manual_seed(0)  # the same next-action samples each time
        return float(agent._losses(*(batch[k] for k in keys), with_actor=False)[0])

    before = td_loss()
    for _ in range(200):
        agent.update(batch)
    after = td_loss()
    torch.set_rng_state(rng)
    assert math.isfinite(after) and after < 0.5 * before, (before, after)
    assert all(torch.equal(v, agent.actor.state_dict()[k]) for k, v in actor_before.items())


def test_export_metadata_is_self_describing(runner: Runner, tmp_path: Path) -> None:
    from sim2real.core.policy_file import OnnxPolicy, read_metadata
    from sim2real.export.onnx import export_onnx, load_trained_policy

    path = export_onnx(runner.run_dir, tmp_path / "policy.onnx", parity_samples=256)
    meta = read_metadata(path).to_json()
    assert (
        meta["task"] == TASK and meta["obs_dim"] == 60 and meta["act_dim"] == 17 and meta["parity_max_abs_diff"] <= 1e-5
    )
    robot = meta["robot"]
    assert robot["joint_names"] == runner.env.spec.robot["joint_names"]
    for key in ("joint_names", "default_joint_pos", "action_scale", "kp", "kd"):
        assert len(robot[key]) == 17, key
    assert [t["name"] for t in meta["obs_layout"]][-1] == "last_action" and meta["control_rate_hz"] == 50.0
    tp, policy = load_trained_policy(runner.run_dir), OnnxPolicy(path)
    x = env_of(4).reset(seed=5)["policy"]
    assert (policy(x) - tp.reference(x)).abs().max() <= 1e-5
    # `sim2real eval` on a non-hover policy: whole episodes in the env rebuilt from the metadata, plus validation
    from sim2real.cli.main import main as cli_main

    assert cli_main(["eval", str(path), "--episodes", "3", "--json", "--out", str(tmp_path / "ev")]) == 0
    res = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert res["task"] == TASK and res["episodes"] == 3 and math.isfinite(res["return_mean"])
    assert res["return_min"] <= res["return_mean"] <= res["return_max"] and res["length_mean"] >= 1
    assert set(res["validation"]) >= {"score", "vel_error_xy", "fall_rate"}
