"""The quadrotor in PyBullet: the same motion as the torch integrator open loop, and a torch-trained policy hovers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import TRAINED_POLICY

pytest.importorskip("pybullet", reason="the [pybullet] extra is not installed")

from sim2real.cli.main import main  # noqa: E402
from sim2real.eval.policy import evaluate_policy_file  # noqa: E402
from sim2real.sim.pybullet_quadrotor import PyBulletConfig, PyBulletQuadrotors  # noqa: E402
from sim2real.sim.quadrotor import (  # noqa: E402
    CRAZYFLIE_PAPER,
    OMEGA,
    POS,
    QUAT,
    RPM,
    STATE_DIM,
    VEL,
    QuadrotorDynamics,
    quat_to_rotmat,
)
from sim2real.tasks.quadrotor_hover.env import HoverConfig, QuadrotorHoverEnv  # noqa: E402

M = CRAZYFLIE_PAPER


def _open_loop(cfg: PyBulletConfig, n: int = 6, steps: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """1 s of the same start (moving, spinning, per-env mass and inertia) and RPM sequence in both engines."""
    g = torch.Generator().manual_seed(0)
    s = torch.zeros(n, STATE_DIM)
    s[:, QUAT.start], s[:, RPM] = 1.0, M.hover_speed()
    s[:, VEL], s[:, OMEGA] = 0.2 * torch.randn(n, 3, generator=g), 0.5 * torch.randn(n, 3, generator=g)
    p = torch.tensor(M.param_vector()).repeat(n, 1)
    p[:, 0:4] *= 1 + 0.2 * torch.rand(n, 1, generator=g)  # heavier, with the inertia scaled alike
    f_dist, t_dist = 0.01 * torch.randn(n, 3, generator=g), 1e-6 * torch.randn(n, 3, generator=g)
    dyn, pb = QuadrotorDynamics(M), PyBulletQuadrotors(M, n, 0.01, cfg)
    a = b = s
    try:
        for _ in range(steps):
            r_sp = (M.hover_speed() + 0.03 * torch.randn(n, 4, generator=g)).clamp(0, 1)
            a, b = dyn.rk4_step(a, r_sp, p, f_dist, t_dist, 0.01), pb(b, r_sp, p, f_dist, t_dist, 0.01)
    finally:
        pb.close()
    return a, b


def test_open_loop_motion_agrees_with_the_torch_integrator_within_centimetres_over_a_second() -> None:
    torch_s, bullet_s = _open_loop(PyBulletConfig(substeps=4))
    assert float(torch_s[:, POS].norm(dim=-1).max()) > 0.5  # the quadrotors really moved
    err = {
        "position": (torch_s[:, POS] - bullet_s[:, POS]).norm(dim=-1).max(),  # measured 11.6 mm
        "velocity": (torch_s[:, VEL] - bullet_s[:, VEL]).norm(dim=-1).max(),  # 1.8 mm/s
        "attitude": (quat_to_rotmat(torch_s[:, QUAT]) - quat_to_rotmat(bullet_s[:, QUAT])).abs().max(),  # 0.022
        "body rate": (torch_s[:, OMEGA] - bullet_s[:, OMEGA]).norm(dim=-1).max(),  # 0.031 rad/s
        "motors": (torch_s[:, RPM] - bullet_s[:, RPM]).abs().max(),  # the same exact motor ODE
    }
    tol = {"position": 0.025, "velocity": 0.02, "attitude": 0.05, "body rate": 0.06, "motors": 1e-5}
    assert all(float(err[k]) < tol[k] for k in tol), {k: float(v) for k, v in err.items()}


def test_more_substeps_converge_to_the_torch_integrator() -> None:
    """Semi-implicit Euler is first order: ten substeps are closer to RK4 than one."""
    gaps = [float((t[:, POS] - b[:, POS]).norm(dim=-1).max()) for t, b in
            (_open_loop(PyBulletConfig(substeps=k), steps=50) for k in (1, 10))]  # fmt: skip
    assert gaps[1] < 0.3 * gaps[0], gaps


def test_worker_processes_step_exactly_as_one_client() -> None:
    _, local = _open_loop(PyBulletConfig(), n=5, steps=10)
    _, split = _open_loop(PyBulletConfig(workers=2), n=5, steps=10)
    assert torch.equal(local, split)


def test_the_hover_env_runs_in_pybullet_and_a_torch_trained_policy_hovers(tmp_path: Path) -> None:
    _, res = evaluate_policy_file(TRAINED_POLICY, 200, 0, tmp_path, ("nominal",), engine="pybullet")
    nominal = res["nominal"]
    assert res["meta"]["engine"] == "pybullet" and nominal["episodes"] == 200
    assert nominal["left_box_fraction"] <= 0.01 and nominal["pos_error_last2s_m"] < 0.10, nominal


def test_bad_engines_are_clear_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="unknown engine 'bullet'.*torch, pybullet"):
        HoverConfig(engine="bullet")
    env = QuadrotorHoverEnv(HoverConfig(num_envs=2, engine="pybullet"))
    try:
        with pytest.raises(ValueError, match="steps dt=0.01"):
            env._physics(env.state, env.state[:, RPM], env.params, env.f_dist, env.t_dist, 0.02)
    finally:
        env.close()
    student = Path(TRAINED_POLICY).parent / "peg_insert_student.onnx"
    assert main(["eval", str(student), "--sim", "pybullet", "--episodes", "1"]) == 2
    assert "runs in one engine only" in capsys.readouterr().err
    assert main(["eval", str(TRAINED_POLICY), "--sim", "mujoco", "--episodes", "1"]) == 2
    assert "unknown engine 'mujoco'" in capsys.readouterr().err


def test_drag_slows_and_the_ground_pushes_up_only_when_switched_on() -> None:
    s = torch.zeros(1, STATE_DIM)
    s[:, QUAT.start], s[:, RPM], s[:, VEL] = 1.0, M.hover_speed(), torch.tensor([[1.0, 0.0, 0.0]])
    p, zero = torch.tensor([M.param_vector()]), torch.zeros(1, 3)
    r_sp = s[:, RPM].clone()

    def after(cfg: PyBulletConfig) -> torch.Tensor:
        pb = PyBulletQuadrotors(M, 1, 0.01, cfg)
        try:
            x = s
            for _ in range(20):
                x = pb(x, r_sp, p, zero, zero, 0.01)
            return x
        finally:
            pb.close()

    plain, drag = after(PyBulletConfig()), after(PyBulletConfig(drag=True))
    ground = after(PyBulletConfig(ground_effect=True, ground_z=-0.03))
    assert float(drag[0, VEL.start]) < float(plain[0, VEL.start]) - 1e-3  # -k (sum omega_i) v opposes the motion
    assert float(ground[0, VEL.stop - 1]) > float(plain[0, VEL.stop - 1]) + 1e-3  # more thrust 3 cm above the ground
    assert abs(float(plain[0, VEL.start]) - 1.0) < 1e-3  # no damping otherwise
