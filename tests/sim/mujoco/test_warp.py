"""mujoco_warp backend (``backend="warp"``): parity with the CPU backend, VecEnv contract, DR, pushes, errors.

Without a GPU the real code path runs on Warp's CPU device (``device="cpu"``: the same mujoco_warp kernels,
LLVM-compiled; graphs replayed on CPU). Tests that need CUDA (CUDA graphs, GPU throughput) are skipped without it.

Tolerances. The warp physics is float32, the CPU backend's float64. From the same state, one control step without
contacts agrees to ~1e-6 relative (float32 rounding through the substeps). Contacts add float32 residuals of the
stiff contact solve and, with the Gymnasium models' pyramidal friction cones, a different contact tangent frame for
capsule-plane contacts (mujoco_warp builds it from the normal, MuJoCo from the capsule axis), which rotates the
friction pyramid: Ant's qvel then differs by up to ~1 m/s after one substep, so Ant (and Humanoid, whose PGS solver
mujoco_warp lacks) are compared with elliptic cones (rotation invariant). We check one-step agreement along a
trajectory (both backends re-synchronized to the same state before every step) as |error| / (1 + |value|), with a
~4x margin over the measured maxima (HalfCheetah 6.7e-4, Ant 1.7e-3, Humanoid 1.3e-3; rewards <= 3e-5), and a free
run only over the first 10 steps (the gait is chaotic: errors grow ~10x per 10 steps).
"""

from __future__ import annotations

import sys
import time
import warnings

import pytest
import torch

mujoco = pytest.importorskip("mujoco", reason="MuJoCo backend tests need the mujoco package (sim2real[mujoco])")
pytest.importorskip("gymnasium", reason="the MuJoCo tasks load Gymnasium's model files")

from sim2real.sim.mujoco import make_env  # noqa: E402
from sim2real.sim.mujoco.env import MujocoDRConfig  # noqa: E402
from sim2real.sim.registry import make  # noqa: E402
from sim2real.tasks.gym_mujoco import AntEnv, HalfCheetahEnv, HumanoidEnv  # noqa: E402

try:
    import mujoco_warp  # noqa: F401
    import warp  # noqa: F401

    HAVE_WARP = True
except ImportError:
    HAVE_WARP = False

needs_warp = pytest.mark.skipif(not HAVE_WARP, reason="mujoco_warp is not installed (pip install 'sim2real[warp]')")
needs_cuda = pytest.mark.skipif(
    not (HAVE_WARP and torch.cuda.is_available()),
    reason="needs mujoco_warp and a CUDA GPU visible to torch (CUDA graphs, GPU throughput)",
)
UNIT = dict(mass_scale=(1, 1), friction_scale=(1, 1), damping_scale=(1, 1), gain_scale=(1, 1))


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Gymnasium's deprecated 'settotalmass' compiler attribute
        yield


class AntElliptic(AntEnv):
    """Ant-v5 with elliptic friction cones (test model: contact forces independent of the tangent frame)."""

    task_name = "test-ant-elliptic"

    def _edit_model(self, model) -> None:
        model.opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC


class HumanoidNewton(HumanoidEnv):
    """Humanoid-v5 with the Newton solver and elliptic cones (test model: mujoco_warp has no PGS solver)."""

    task_name = "test-humanoid-newton"

    def _edit_model(self, model) -> None:
        model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
        model.opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC


def _pair(cls, n: int, seed: int = 0, **kw):
    """The same task on both backends from the same (float32-representable) start state."""
    w = make_env(cls, num_envs=n, backend="warp", device="cpu", **kw)
    c = cls(num_envs=n, num_threads=1, **kw)
    w.reset(seed=seed)
    c.reset(seed=seed)
    c.set_state(*w.get_state())
    return w, c


def _actions(env, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(env.num_envs, env.spec.action_dim, generator=gen) * 2 - 1


def _one_step_errors(w, c, steps: int, seed: int = 1) -> tuple[float, float, float]:
    """Max |obs error| / (1 + |obs|), |reward error| and max |contact obs| over ``steps`` steps, re-synced."""
    gen = torch.Generator().manual_seed(seed)
    obs_err = rew_err = contact = 0.0
    for t in range(steps):
        state = w.get_state()
        w.set_state(*state)
        c.set_state(*state)
        a = _actions(w, gen)
        _, rw, tw, _, iw = w.step(a)
        _, rc, tc, _, ic = c.step(a)
        fw, fc = iw["final_obs"]["policy"], ic["final_obs"]["policy"]
        assert torch.equal(tw, tc), f"terminated differs at step {t}"
        obs_err = max(obs_err, ((fw - fc).abs() / (1 + fc.abs())).max().item())
        rew_err = max(rew_err, (rw - rc).abs().max().item())
        contact = max(contact, fc[:, w.nq - 2 + w.nv :].abs().max().item() if isinstance(w, AntEnv) else 0.0)
    return obs_err, rew_err, contact


def _model_field(env, name: str) -> torch.Tensor:
    return torch.as_tensor(getattr(env.wp_model, name).numpy(), dtype=torch.float64)


# ----------------------------------------------------------------------------------------------- clear errors
def test_missing_mujoco_warp_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "mujoco_warp", None)  # import mujoco_warp -> ImportError
    with pytest.raises(ImportError, match="pip install mujoco-warp"):
        make("mujoco-halfcheetah", num_envs=2, backend="warp")


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        make("mujoco-halfcheetah", num_envs=2, backend="gpu")
    assert type(make("mujoco-halfcheetah", num_envs=1)) is HalfCheetahEnv  # default: the CPU backend


@needs_warp
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when no CUDA GPU is present")
def test_cuda_requested_without_gpu():
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        make("mujoco-halfcheetah", num_envs=2, backend="warp", device="cuda")


@needs_warp
def test_unsupported_tasks_name_the_task():
    with pytest.raises(NotImplementedError, match="mujoco-humanoid.*mjSOL_PGS"):  # Humanoid-v5 uses PGS
        make("mujoco-humanoid", num_envs=2, backend="warp", device="cpu")
    from sim2real.sim.mujoco.warp import MujocoWarpVecEnv

    class NoBatchObs(HalfCheetahEnv):
        task_name = "test-no-batch-obs"
        _measure_batch = MujocoWarpVecEnv._measure_batch

    with pytest.raises(NotImplementedError, match="test-no-batch-obs"):
        make_env(NoBatchObs, num_envs=2, backend="warp", device="cpu")


# ----------------------------------------------------------------------------------------------- warp on CPU
@needs_warp
def test_halfcheetah_matches_cpu_backend_step_for_step():
    w, c = _pair(HalfCheetahEnv, 4)
    assert w.use_graphs and w.batch.qpos.shape == (4, w.nq) and w.spec.obs_dims == c.spec.obs_dims
    assert torch.equal(w.reset(seed=0)["policy"], c.reset(seed=0)["policy"])  # same generator draws
    c.set_state(*w.get_state())
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):  # free run: measured max errors over 10 steps, 5 seeds: obs 9e-3, reward 1e-4
        a = _actions(w, gen)
        ow, rw, tw, trw, iw = w.step(a)
        oc, rc, tc, trc, ic = c.step(a)
        assert ow["policy"].dtype == torch.float32 and rw.shape == (4,) and not tw.any() and not trw.any()
        torch.testing.assert_close(iw["final_obs"]["policy"], ic["final_obs"]["policy"], rtol=0, atol=3e-2)
        torch.testing.assert_close(rw, rc, rtol=0, atol=1e-3)
    obs_err, rew_err, _ = _one_step_errors(w, c, 40)
    assert obs_err < 3e-3 and rew_err < 1e-3, (obs_err, rew_err)  # measured 6.7e-4, 1.8e-5


@needs_warp
def test_ant_contacts_and_reward_match_cpu_backend():
    w, c = _pair(AntElliptic, 4)
    obs_err, rew_err, contact = _one_step_errors(w, c, 30)
    assert contact > 0.5, "no contact forces seen: the cfrc_ext part of the observation was not exercised"
    assert obs_err < 7e-3 and rew_err < 1e-3, (obs_err, rew_err)  # measured 1.7e-3, 7e-6


@needs_warp
def test_humanoid_observation_matches_cpu_backend():
    """cinert | cvel | qfrc_actuator | cfrc_ext rows and the centre-of-mass velocity (Newton solver: no PGS)."""
    w, c = _pair(HumanoidNewton, 2)
    obs_err, rew_err, _ = _one_step_errors(w, c, 15)
    assert obs_err < 5e-3 and rew_err < 1e-3, (obs_err, rew_err)  # measured 1.3e-3, 3e-5


@needs_warp
def test_graph_replay_equals_eager_launches():
    w, _ = _pair(HalfCheetahEnv, 3)
    eager = make_env(HalfCheetahEnv, num_envs=3, backend="warp", device="cpu")
    eager.use_graphs = False
    eager.reset(seed=0)
    eager.set_state(*w.get_state())
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        a = _actions(w, gen)
        assert torch.equal(w.step(a)[0]["policy"], eager.step(a)[0]["policy"])


@needs_warp
def test_truncation_auto_reset_and_final_obs():
    w = make("mujoco-halfcheetah", num_envs=3, episode_steps=5, backend="warp", device="cpu")
    c = make("mujoco-halfcheetah", num_envs=3, episode_steps=5)
    w.reset(seed=0)
    c.reset(seed=0)
    for k in range(1, 6):
        obs, _, terminated, truncated, info = w.step(torch.zeros(3, 6))
        assert not terminated.any() and bool(truncated.all()) == (k == 5)
        c.step(torch.zeros(3, 6))
    assert torch.equal(info["episode"]["length"], torch.full((3,), 5)) and (w.steps == 0).all()
    assert not torch.equal(info["final_obs"]["policy"], obs["policy"])
    assert torch.equal(obs["policy"], c.observe()["policy"])  # the same new start states as the CPU backend


@needs_warp
def test_termination_resets_only_the_ended_worlds():
    env = make("mujoco-hopper", num_envs=4, backend="warp", device="cpu")
    obs0 = env.reset(seed=0)
    assert set(obs0) == {"policy", "critic"} and obs0["policy"].shape == (4, 11)
    a = torch.ones(4, 3)
    a[:2] = 0.0  # envs 0, 1 stand longer than 2, 3 (full torque falls over fast)
    for _ in range(200):
        obs, reward, terminated, truncated, info = env.step(a)
        if bool(terminated.any()):
            break
    assert bool(terminated.any()) and not bool(truncated.any())
    done, live = terminated.nonzero().flatten(), (~terminated).nonzero().flatten()
    final = info["final_obs"]["policy"]
    assert not torch.allclose(final[done], obs["policy"][done])
    assert torch.equal(final[live], obs["policy"][live]) and (env.steps[done] == 0).all()
    assert (env.steps[live] > 0).all() and torch.isfinite(info["episode"]["return"]).all()
    assert (obs["policy"][done, 0] - 1.25).abs().max() <= 5e-3 + 1e-6  # Hopper-v5 start distribution


@needs_warp
def test_pushes_are_applied_through_xfrc_applied():
    pushes = MujocoDRConfig(enabled=True, push_prob=1.0, **UNIT)
    w, c = _pair(HalfCheetahEnv, 2, dr=pushes)  # same seed: the same push draws on both backends
    free, _ = _pair(HalfCheetahEnv, 2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        a = _actions(w, gen)
        ow, oc, of = w.step(a)[0]["policy"], c.step(a)[0]["policy"], free.step(a)[0]["policy"]
    assert w.batch.xfrc_applied[:, w.root_body, :3].abs().sum() > 0
    torch.testing.assert_close(ow, oc, rtol=1e-3, atol=1e-3)
    assert not torch.allclose(ow, of, atol=1e-2)


@needs_warp
def test_domain_randomization_per_world():
    dr = MujocoDRConfig(enabled=True)
    w, c = _pair(AntEnv, 2, dr=dr)
    pw, pc = w.get_params(), c.get_params()
    for k in pc:  # the same draws as the CPU backend, one set per world
        torch.testing.assert_close(pw[k], pc[k], rtol=1e-6, atol=1e-6)
    assert not torch.equal(pw["body_mass"][0], pw["body_mass"][1])
    subtree = _model_field(w, "body_subtreemass")  # derived constants recomputed per world (set_const)
    for i in range(2):
        torch.testing.assert_close(subtree[i], torch.as_tensor(c.models[i].body_subtreemass), rtol=1e-5, atol=1e-5)
    nominal, _ = _pair(AntEnv, 2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):  # in the air (no contacts yet): masses, damping and gains act as on the CPU backend
        a = _actions(w, gen)
        ow, oc, on = w.step(a)[0]["policy"], c.step(a)[0]["policy"], nominal.step(a)[0]["policy"]
        torch.testing.assert_close(ow, oc, rtol=1e-3, atol=1e-3)
    assert not torch.allclose(ow, on, atol=1e-3)


# ----------------------------------------------------------------------------------------------- CUDA only
@needs_cuda
def test_cuda_graph_state_on_gpu_and_parity():
    w = make("mujoco-halfcheetah", num_envs=64, backend="warp", device="cuda")
    c = make("mujoco-halfcheetah", num_envs=64, num_threads=1)
    w.reset(seed=0)
    c.reset(seed=0)
    c.set_state(*(x.cpu() for x in w.get_state()))
    assert w.use_graphs and w.batch.qpos.is_cuda and w.batch.qpos.data_ptr() == w.wp_data.qpos.ptr
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        a = _actions(w, gen)
        ow, rw, tw, trw, _ = w.step(a.cuda())
        oc, rc, _, _, _ = c.step(a)
        assert ow["policy"].is_cuda and rw.is_cuda and tw.is_cuda and trw.is_cuda
        torch.testing.assert_close(ow["policy"].cpu(), oc["policy"], rtol=1e-3, atol=1e-3)


@needs_cuda
def test_cuda_throughput():
    env = make("mujoco-halfcheetah", num_envs=4096, backend="warp", device="cuda")
    env.reset(seed=0)
    a = torch.zeros(4096, 6, device="cuda")
    for _ in range(5):
        env.step(a)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(50):
        env.step(a)
    torch.cuda.synchronize()
    rate = 50 * 4096 / (time.perf_counter() - t0)
    assert rate > 1e5, f"{rate:.0f} env steps/s"  # the 2-core CPU backend does ~4e4
