"""Task mujoco-humanoid-walk on the mujoco_warp backend: step-for-step parity with the CPU backend, VecEnv contract
(commands, resets, final_obs), DR factors per world. Runs on Warp's CPU device (the same kernels as on a GPU).

Tolerances. The warp physics is float32 (eps 1.2e-7), the CPU backend's float64. From the same (float32) state,
the 4 implicit substeps with stiff servos (kp up to 200 N m/rad) and the Newton contact solve amplify the rounding
to at most ~1.2e-4 of |error| / (1 + |value|) on the observations (measured over 300 steps x 8 envs with DR, pushes
and 47 falls: gyro / joint velocities 1.1e-4, foot forces 1.2e-4, everything else <= 1e-5), ~1e-4 on the reward
terms and 7e-5 on the reward. The asserts keep an ~8x margin (1e-3). The feet are spheres, whose contact frame
both engines build from the normal, so the task's default pyramidal friction cones agree; capsule-floor contacts,
whose pyramid mujoco_warp orients differently, come with the fall that ends an episode (1e-3..1e-2 there; none with
``friction_cone="elliptic"``: test_fall_resets_only_that_world_like_the_cpu_backend). Termination agrees exactly.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco", reason="MuJoCo backend tests need the mujoco package (sim2real[mujoco])")
pytest.importorskip("gymnasium", reason="the MuJoCo tasks load Gymnasium's model files")
pytest.importorskip("mujoco_warp", reason="mujoco_warp is not installed (pip install 'sim2real[warp]')")
pytest.importorskip("warp", reason="mujoco_warp is not installed (pip install 'sim2real[warp]')")

from sim2real.sim.mujoco import make_env  # noqa: E402
from sim2real.sim.mujoco.env import MujocoDRConfig  # noqa: E402
from sim2real.sim.mujoco.warp import MujocoWarpVecEnv  # noqa: E402
from sim2real.sim.registry import make  # noqa: E402
from sim2real.tasks.humanoid_walk import (  # noqa: E402
    TASK,
    CommandConfig,
    HumanoidWalkConfig,
    HumanoidWalkEnv,
    ObsNoiseConfig,
    TerminationConfig,
    humanoid_dr,
    validate,
)

torch.set_num_threads(1)
TOL = 1e-3
NO_DR = MujocoDRConfig()
NO_FALL = TerminationConfig(min_height=-1e9, max_height=1e9, max_tilt=math.pi)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Gymnasium's deprecated 'settotalmass' compiler attribute
        yield


def _pair(n: int, seed: int = 0, **kw) -> tuple[HumanoidWalkEnv, HumanoidWalkEnv]:
    """The task on both backends, reset with the same seed (same draws), from the same float32 state."""
    cfg = HumanoidWalkConfig(num_envs=n, num_threads=1, **kw)
    w, c = make_env(HumanoidWalkEnv, cfg, backend="warp", device="cpu"), HumanoidWalkEnv(cfg)
    w.reset(seed=seed)
    c.reset(seed=seed)
    c.set_state(*w.get_state())
    return w, c


def sl(env: HumanoidWalkEnv, name: str, group: str = "critic") -> slice:
    return env.spec.obs_groups[group].slice(name)


def _model_field(env: HumanoidWalkEnv, name: str) -> torch.Tensor:
    return torch.as_tensor(getattr(env.wp_model, name).numpy(), dtype=torch.float64)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs() / (1 + b.abs())).max().item()


def test_matches_cpu_backend_step_for_step() -> None:
    """Both groups (sensor noise on: the same draws on Warp's CPU device), reward terms, termination, commands,
    auto-resets with new DR draws and pushes, both backends re-synchronized to the same state before every step."""
    w, c = _pair(8, dr=replace(humanoid_dr(), push_prob=0.2))
    assert isinstance(w, MujocoWarpVecEnv) and w.spec.obs_dims == c.spec.obs_dims == {"policy": 60, "critic": 121}
    gen = torch.Generator().manual_seed(1)
    err = {"obs": 0.0, "terms": 0.0, "reward": 0.0}
    ended = pushed = 0
    feet = 0.0
    for t in range(100):
        state = w.get_state()
        w.set_state(*state)
        c.set_state(*state)
        a = torch.rand(8, 17, generator=gen) * 2 - 1
        ow, rw, tw, trw, iw = w.step(a)
        oc, rc, tc, trc, ic = c.step(a)
        assert torch.equal(tw, tc) and torch.equal(trw, trc), f"termination differs at step {t}"
        assert torch.equal(w.commands, c.commands) and torch.equal(w.steps, c.steps)
        for g in ("policy", "critic"):  # before the resets (final_obs) and after (new states, commands, DR)
            err["obs"] = max(err["obs"], _rel(iw["final_obs"][g], ic["final_obs"][g]), _rel(ow[g], oc[g]))
        err["terms"] = max(err["terms"], _rel(iw["reward_terms"], ic["reward_terms"]))
        err["reward"] = max(err["reward"], (rw - rc).abs().max().item())
        torch.testing.assert_close(iw["tracking_error"], ic["tracking_error"], rtol=TOL, atol=TOL)
        ended += int(tc.sum())
        pushed += int((ic["final_obs"]["critic"][:, sl(c, "push_force")] != 0).any(1).sum())
        feet = max(feet, ic["final_obs"]["critic"][:, sl(c, "foot_contact_force")].abs().max().item())
    assert ended >= 3 and pushed > 0 and feet > 0.5, (ended, pushed, feet)  # resets, pushes, contacts exercised
    assert err["obs"] < TOL and err["terms"] < TOL and err["reward"] < TOL, err  # measured 9e-5, 7e-5, 4e-5


def test_commands_truncation_and_final_obs() -> None:
    cmds = CommandConfig(resample_s=0.1, standing_fraction=0.0)  # every 5 control steps
    env = make(TASK, num_envs=3, episode_steps=7, commands=cmds, termination=NO_FALL, dr=NO_DR, backend="warp",
               device="cpu")  # fmt: skip
    assert type(env).__name__ == "HumanoidWalkEnvWarp"
    cmd = sl(env, "command", "policy")
    obs = env.reset(seed=1)
    first = env.commands.clone()
    assert torch.equal(obs["policy"][:, cmd], first.float()) and first.abs().min() > 0
    for k in range(1, 8):
        obs, reward, terminated, truncated, info = env.step(torch.zeros(3, 17))
        assert obs["policy"].dtype == reward.dtype == torch.float32 and obs["critic"].shape == (3, 121)
        assert info["reward_terms"].shape == (3, 9) and info["tracking_error"].shape == (3, 2)
        torch.testing.assert_close(env.reward_from_terms(info["reward_terms"]), reward, atol=1e-4, rtol=1e-5)
        assert torch.equal(obs["policy"][:, cmd], env.commands.float())
        assert torch.equal(env.commands, first) == (k < 5) and not terminated.any()
        assert bool(truncated.all()) == (k == 7)
    final = info["final_obs"]
    assert info["episode"]["length"].tolist() == [7, 7, 7] and (env.steps == 0).all()
    assert not torch.equal(final["policy"][:, cmd], obs["policy"][:, cmd])  # commands drawn at the reset
    height = obs["critic"][:, sl(env, "base_height")] - env.init_qpos[2]  # a new start state: qpos0 + U(-s, s)
    assert height.abs().max() <= env.reset_noise + 1e-6 and _rel(final["critic"], obs["critic"]) > 0.1
    assert validate(lambda o: torch.zeros(len(o), 17), replace(env.cfg, episode_steps=2), 2)["episode_length"] == 2


@pytest.mark.parametrize("cone", ["pyramidal", "elliptic"])
def test_fall_resets_only_that_world_like_the_cpu_backend(cone: str) -> None:
    """Fallen bodies touch the floor with capsules: pyramidal cones then differ (see the module docstring)."""
    w, c = _pair(3, dr=NO_DR, episode_steps=3, friction_cone=cone)
    qpos = torch.as_tensor(w.init_qpos).repeat(3, 1)
    qpos[0, 2] -= w.reset_noise  # feet on the floor
    qpos[1, 2] = 0.5  # torso too low
    qpos[2, 3:7] = torch.tensor([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0])  # lying on its side
    for env in (w, c):
        env.set_state(qpos, torch.zeros(3, env.nv))
    out = [env.step(torch.zeros(3, 17)) for env in (w, c)]
    (ow, _, tw, trw, iw), (oc, _, tc, _, ic) = out
    assert tw.tolist() == tc.tolist() == [False, True, True] and not trw.any()
    assert iw["episode"]["length"].tolist() == [1, 1] and w.steps.tolist() == [1, 0, 0]
    assert iw["reward_terms"][:, 2].tolist() == [1.0, 0.0, 0.0]  # alive
    assert torch.equal(iw["final_obs"]["critic"][0], ow["critic"][0])  # the live world keeps its observation
    assert iw["final_obs"]["critic"][1, sl(w, "base_height")] < 0.8  # fell: too low, tilted
    assert iw["final_obs"]["critic"][2, sl(w, "projected_gravity")][2] > -math.cos(math.pi / 4)
    assert (ow["critic"][1:, sl(w, "base_height")] > 1.2).all()  # reset to standing
    fallen_tol = TOL if cone == "elliptic" else 1e-2  # measured: elliptic 1.2e-5, pyramidal 1.7e-3
    for g in ("policy", "critic"):  # the standing world, the fallen ones, the new start states
        assert _rel(iw["final_obs"][g][0], ic["final_obs"][g][0]) < TOL and _rel(ow[g], oc[g]) < TOL
        assert _rel(iw["final_obs"][g][1:], ic["final_obs"][g][1:]) < fallen_tol
    feet = ow["critic"][0, sl(w, "foot_contact_force")].reshape(2, 3)  # world 0 stands on its feet
    assert feet[:, 2].sum() == pytest.approx(1.0, abs=0.15) and feet[:, :2].abs().max() < 0.1


def test_dr_factors_in_critic_obs_per_world() -> None:
    w, c = _pair(4, dr=humanoid_dr())
    dr = slice(sl(w, "dr_body_mass").start, 121)
    fw, fc = w.observe()["critic"][:, dr].double(), c.observe()["critic"][:, dr].double()
    torch.testing.assert_close(fw, fc, rtol=1e-6, atol=1e-6)  # the same draws as the CPU backend
    params, nom = w.get_params(), w._nominal
    assert params["body_mass"].shape == (4, w.model.nbody)
    mass = params["body_mass"][:, 1:] / torch.as_tensor(nom["body_mass"][1:])
    gain = params["actuator_gain"] / torch.as_tensor(w.kp)
    torch.testing.assert_close(fw[:, :13], mass, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fw[:, -17:], gain, rtol=1e-6, atol=1e-6)
    assert (fw[0] != fw[1]).any() and (mass - 1).abs().max() > 0.02 and (gain - 1).abs().max() > 0.02
    for f in ("body_subtreemass", "body_invweight0", "dof_invweight0", "actuator_acc0"):  # set_const per world
        ref = torch.as_tensor(np.stack([getattr(m, f) for m in c.models]))
        torch.testing.assert_close(_model_field(w, f).reshape(ref.shape), ref, rtol=1e-4, atol=0)  # measured 1.5e-5
    bias = _model_field(w, "actuator_biasprm")  # (4, nu, 10): per world
    torch.testing.assert_close(bias[:, :, 1], -gain * torch.as_tensor(w.kp), rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(bias[:, :, 2], -gain * torch.as_tensor(w.kd), rtol=1e-6, atol=1e-6)
    qpos, qvel = w.get_state()
    qpos[2, 2] = 0.5  # world 2 falls: new factors for it only
    w.set_state(qpos, qvel)
    obs, _, terminated, _, _ = w.step(torch.zeros(4, 17))
    assert terminated.tolist() == [False, False, True, False]
    new = obs["critic"][:, dr].double()
    assert torch.equal(new[[0, 1, 3]], fw[[0, 1, 3]]) and not torch.allclose(new[2], fw[2])
    mass = w.get_params()["body_mass"][2, 1:] / torch.as_tensor(nom["body_mass"][1:])
    torch.testing.assert_close(new[2, :13], mass, rtol=1e-6, atol=1e-6)


def test_diverged_world_terminates_like_the_cpu_backend() -> None:
    """CPU MuJoCo resets a diverged simulation (warning counters), warp flags |qvel| > 1e10: both terminate it."""
    w, c = _pair(2, dr=NO_DR)
    qpos, qvel = w.get_state()
    qvel[1, 6:] = 1e11
    out = [env.set_state(qpos, qvel) or env.step(torch.zeros(2, 17)) for env in (w, c)]
    (ow, rw, tw, _, iw), (_, rc, tc, _, ic) = out
    assert tw.tolist() == tc.tolist() == [False, True] and torch.equal(iw["reward_terms"][1], ic["reward_terms"][1])
    assert torch.isfinite(ow["critic"]).all() and abs(rw[0] - rc[0]) < TOL
    for _ in range(3):
        obs, _, terminated, _, _ = w.step(torch.zeros(2, 17))
    assert not terminated.any() and torch.isfinite(obs["critic"]).all()  # the reset world runs normally again


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU visible to torch")
def test_cuda_outputs_on_gpu_and_parity() -> None:
    """On the GPU the sensor noise has its own generator: off here, so resets and commands draw the same."""
    kw = dict(num_envs=64, dr=replace(humanoid_dr(), push_prob=0.2), noise=ObsNoiseConfig(enabled=False))
    w, c = make(TASK, backend="warp", device="cuda", **kw), make(TASK, num_threads=1, **kw)
    w.reset(seed=0)
    c.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        state = [x.cpu() for x in w.get_state()]
        w.set_state(*state)
        c.set_state(*state)
        a = torch.rand(64, 17, generator=gen) * 2 - 1
        ow, rw, tw, trw, iw = w.step(a.cuda())
        oc, rc, tc, _, ic = c.step(a)
        assert ow["policy"].is_cuda and rw.is_cuda and tw.is_cuda and iw["reward_terms"].is_cuda
        assert torch.equal(tw.cpu(), tc) and torch.equal(w.commands.cpu(), c.commands)
        for g in ("policy", "critic"):
            assert _rel(iw["final_obs"][g].cpu(), ic["final_obs"][g]) < TOL and _rel(ow[g].cpu(), oc[g]) < TOL
        assert _rel(iw["reward_terms"].cpu(), ic["reward_terms"]) < TOL
