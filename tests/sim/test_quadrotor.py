"""Physics sanity of the batched quadrotor model (sim2real.sim.quadrotor).

Conventions under test (module docstring): FLU body, z-up world, rotors FR (+x,-y), BR (-x,-y), BL (-x,+y),
FL (+x,+y), yaw-torque directions (-1, +1, -1, +1), state (N, 17) = pos | quat wxyz | vel world | omega body | r.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from sim2real.sim.quadrotor import (
    CRAZYFLIE_NEWER,
    CRAZYFLIE_PAPER,
    PARAM_INDEX,
    PARAM_NAMES,
    STATE_DIM,
    QuadrotorDynamics,
    QuadrotorModel,
    quat_to_rotmat,
    random_quaternions,
    tilt_angle,
)

MODELS = [CRAZYFLIE_PAPER, CRAZYFLIE_NEWER]
ZERO3 = torch.zeros(1, 3)


def make_state(
    n: int = 1,
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0),
    quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0),
    vel: tuple[float, float, float] = (0.0, 0.0, 0.0),
    omega: tuple[float, float, float] = (0.0, 0.0, 0.0),
    r: float | tuple[float, float, float, float] = 0.0,
) -> torch.Tensor:
    rr = (r,) * 4 if isinstance(r, float) else r
    row = torch.tensor([*pos, *quat, *vel, *omega, *rr], dtype=torch.float32)
    assert row.shape == (STATE_DIM,)
    return row.repeat(n, 1)


def params_of(model: QuadrotorModel, n: int = 1) -> torch.Tensor:
    p = torch.tensor([model.param_vector()], dtype=torch.float32).repeat(n, 1)
    assert p.shape == (n, len(PARAM_NAMES))
    return p


def integrate(
    dyn: QuadrotorDynamics, s: torch.Tensor, r_sp: torch.Tensor, p: torch.Tensor, dt: float, steps: int
) -> torch.Tensor:
    n = s.shape[0]
    f, t = torch.zeros(n, 3), torch.zeros(n, 3)
    for _ in range(steps):
        s = dyn.rk4_step(s, r_sp, p, f, t, dt)
    return s


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of (..., 4) wxyz quaternions (independent reference implementation)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        -1,
    )


def axis_angle_quat(axis: tuple[float, float, float], angle: float) -> tuple[float, float, float, float]:
    a = torch.tensor(axis, dtype=torch.float64)
    a = a / a.norm()
    s = math.sin(angle / 2)
    return (math.cos(angle / 2), float(a[0]) * s, float(a[1]) * s, float(a[2]) * s)


# ----------------------------------------------------------------------------------------------- hover & fall
@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_hover_speed_holds_altitude_for_one_second(model: QuadrotorModel) -> None:
    dyn = QuadrotorDynamics(model)
    r_h = model.hover_speed()
    assert 0.0 < r_h < 1.0
    c0, c1, c2 = model.thrust_coeffs
    assert 4 * (c0 + c1 * r_h + c2 * r_h**2) == pytest.approx(model.mass * model.gravity, rel=1e-12)
    assert model.hover_action() == pytest.approx(2 * r_h - 1)
    s0 = make_state(pos=(0.1, -0.2, 1.0), r=r_h)
    r_sp = torch.full((1, 4), r_h)
    s = integrate(dyn, s0, r_sp, params_of(model), 0.01, 100)
    assert abs(float(s[0, 2] - s0[0, 2])) < 1e-4
    assert float(s[0, 7:10].abs().max()) < 1e-3
    torch.testing.assert_close(s[0, 0:2], s0[0, 0:2], atol=1e-6, rtol=0)
    torch.testing.assert_close(s[0, 3:7], s0[0, 3:7], atol=1e-6, rtol=0)  # stays level, no yaw
    assert float(s[0, 10:13].abs().max()) < 1e-4
    torch.testing.assert_close(s[0, 13:17], r_sp[0], atol=1e-6, rtol=0)

    # The check is sensitive: 2 % less motor speed sinks clearly within the same second.
    s_low = integrate(dyn, make_state(pos=(0.0, 0.0, 1.0), r=0.98 * r_h), r_sp * 0.98, params_of(model), 0.01, 100)
    assert float(s_low[0, 2]) < 1.0 - 0.05


def test_free_fall_with_motors_off_follows_parabola() -> None:
    model = CRAZYFLIE_PAPER  # c0 = c1 = 0: r = 0 is exactly zero thrust
    dyn = QuadrotorDynamics(model)
    s = make_state(pos=(0.0, 0.0, 10.0), vel=(0.5, -0.25, 0.0), r=0.0)
    r_sp, p, dt = torch.zeros(1, 4), params_of(model), 0.01
    f = torch.zeros(1, 3)
    for k in range(1, 101):
        s = dyn.rk4_step(s, r_sp, p, f, f, dt)
        t = k * dt
        # RK4 is exact for this quadratic; tolerance is float32 round-off only.
        assert float(s[0, 2]) == pytest.approx(10.0 - 0.5 * model.gravity * t * t, abs=2e-5)
        assert float(s[0, 9]) == pytest.approx(-model.gravity * t, abs=2e-5)
    assert float(s[0, 0]) == pytest.approx(0.5, abs=1e-5)
    assert float(s[0, 1]) == pytest.approx(-0.25, abs=1e-5)
    assert float(s[0, 13:17].abs().max()) == 0.0


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_motor_first_order_lag_uses_rise_and_fall_constants(model: QuadrotorModel) -> None:
    dyn = QuadrotorDynamics(model)
    p = params_of(model, 2)
    p[:, PARAM_INDEX["motor_tau_rise"]] = 0.05
    p[:, PARAM_INDEX["motor_tau_fall"]] = 0.2
    # env 0 spins down 1 -> 0 (tau_fall), env 1 spins up 0 -> 1 (tau_rise)
    s = torch.cat((make_state(r=1.0), make_state(r=0.0)))
    s[:, 2] = 100.0
    r_sp = torch.tensor([[0.0] * 4, [1.0] * 4])
    f, dt = torch.zeros(2, 3), 0.01
    for k in range(1, 51):
        s = dyn.rk4_step(s, r_sp, p, f, f, dt)
        t = k * dt
        torch.testing.assert_close(s[0, 13:17], torch.full((4,), math.exp(-t / 0.2)), atol=2e-6, rtol=0)
        torch.testing.assert_close(s[1, 13:17], torch.full((4,), 1 - math.exp(-t / 0.05)), atol=2e-5, rtol=0)


def test_motor_speed_clipped_to_unit_interval() -> None:
    dyn = QuadrotorDynamics(CRAZYFLIE_NEWER)
    s = make_state(n=2, r=(0.0, 0.3, 0.7, 1.0))
    s[:, 2] = 100.0
    r_sp = torch.tensor([[3.0, 3.0, 3.0, 3.0], [-2.0, -2.0, -2.0, -2.0]])  # far outside [0, 1]
    p, f = params_of(CRAZYFLIE_NEWER, 2), torch.zeros(2, 3)
    reached = torch.zeros(2, dtype=torch.bool)
    for _ in range(100):
        s = dyn.rk4_step(s, r_sp, p, f, f, 0.02)
        r = s[:, 13:17]
        assert float(r.min()) >= 0.0 and float(r.max()) <= 1.0
        reached |= torch.stack(((r[0] == 1.0).all(), (r[1] == 0.0).all()))
    assert bool(reached.all())


# ----------------------------------------------------------------------------------------------- torque signs
def _omega_dot(model: QuadrotorModel, r: tuple[float, float, float, float]) -> torch.Tensor:
    dyn = QuadrotorDynamics(model)
    s = make_state(r=r)
    return dyn.derivative(s, s[:, 13:17], params_of(model), ZERO3, ZERO3)[0, 10:13]


def _after(model: QuadrotorModel, r: tuple[float, float, float, float], t: float = 0.05) -> torch.Tensor:
    """Rotation matrix after holding motor speeds ``r`` for ``t`` seconds from rest, level."""
    dyn = QuadrotorDynamics(model)
    s = make_state(pos=(0.0, 0.0, 10.0), r=r)
    s = integrate(dyn, s, s[:, 13:17].clone(), params_of(model), 0.005, round(t / 0.005))
    return quat_to_rotmat(s[:, 3:7])[0]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_roll_sign_right_rotors_faster_lifts_right_side(model: QuadrotorModel) -> None:
    h, d = model.hover_speed(), 0.05
    c0, c1, c2 = model.thrust_coeffs
    df = (c1 * (h + d) + c2 * (h + d) ** 2) - (c1 * h + c2 * h**2)
    od = _omega_dot(model, (h + d, h + d, h, h))  # rotors 0 (+x,-y) and 1 (-x,-y): the right side
    # p x (0,0,f) = (p_y f, -p_x f, 0): the right side (p_y < 0) gives negative torque about body x.
    assert float(od[0]) == pytest.approx(2 * df * -0.028 / model.inertia[0], rel=1e-4)
    assert abs(float(od[1])) < 1e-3 * abs(float(od[0]))
    assert abs(float(od[2])) < 1e-3 * abs(float(od[0]))  # rotors 0 and 1 have opposite yaw dirs
    R = _after(model, (h + d, h + d, h, h))
    assert float(R[2, 1]) < -1e-3  # body +y (left) points down in the world: right side went up
    od_left = _omega_dot(model, (h, h, h + d, h + d))
    torch.testing.assert_close(od_left, -od, rtol=1e-4, atol=1e-3)
    assert float(_after(model, (h, h, h + d, h + d))[2, 1]) > 1e-3


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_pitch_sign_front_rotors_faster_lifts_nose(model: QuadrotorModel) -> None:
    h, d = model.hover_speed(), 0.05
    od = _omega_dot(model, (h + d, h, h, h + d))  # rotors 0 (+x,-y) and 3 (+x,+y): the front
    assert float(od[1]) < 0.0  # -p_x f about body y, p_x > 0: nose up is a negative pitch rate
    assert abs(float(od[0])) < 1e-3 * abs(float(od[1]))
    assert abs(float(od[2])) < 1e-3 * abs(float(od[1]))
    R = _after(model, (h + d, h, h, h + d))
    assert float(R[2, 0]) > 1e-3  # body +x (nose) points up in the world
    od_back = _omega_dot(model, (h, h + d, h + d, h))
    torch.testing.assert_close(od_back, -od, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_yaw_sign_follows_rotor_dirs(model: QuadrotorModel) -> None:
    h, d = model.hover_speed(), 0.05
    c0, c1, c2 = model.thrust_coeffs
    df = (c1 * (h + d) + c2 * (h + d) ** 2) - (c1 * h + c2 * h**2)
    od = _omega_dot(model, (h, h + d, h, h + d))  # rotors 1 and 3 have dir +1 (diagonal pair)
    assert float(od[2]) == pytest.approx(2 * df * model.torque_coeff / model.inertia[2], rel=1e-4)
    assert float(od[2]) > 0.0
    assert abs(float(od[0])) < 1e-3 * float(od[2]) and abs(float(od[1])) < 1e-3 * float(od[2])
    R = _after(model, (h, h + d, h, h + d))
    assert float(R[1, 0]) > 1e-4  # nose turned toward world +y: counter-clockwise seen from above
    assert float(R[2, 2]) > 1.0 - 1e-6  # pure yaw: stays level
    od_neg = _omega_dot(model, (h + d, h, h + d, h))
    assert float(od_neg[2]) == pytest.approx(-float(od[2]), rel=1e-4)


@pytest.mark.parametrize(
    ("axis", "expected_dir"),
    [((0.0, 1.0, 0.0), (1.0, 0.0)), ((1.0, 0.0, 0.0), (0.0, -1.0)), ((0.0, -1.0, 0.0), (-1.0, 0.0))],
    ids=["nose-down->+x", "roll-right->-y", "nose-up->-x"],
)
def test_tilted_thrust_accelerates_horizontally(
    axis: tuple[float, float, float], expected_dir: tuple[float, float]
) -> None:
    model = CRAZYFLIE_PAPER
    dyn = QuadrotorDynamics(model)
    theta = 0.3
    s = make_state(quat=axis_angle_quat(axis, theta), r=model.hover_speed())
    acc = dyn.derivative(s, s[:, 13:17], params_of(model), ZERO3, ZERO3)[0, 7:10]
    g = model.gravity
    ex, ey = expected_dir
    assert float(acc[0]) == pytest.approx(ex * g * math.sin(theta), rel=1e-4, abs=1e-5)
    assert float(acc[1]) == pytest.approx(ey * g * math.sin(theta), rel=1e-4, abs=1e-5)
    assert float(acc[2]) == pytest.approx(g * math.cos(theta) - g, rel=1e-4)


def test_disturbance_force_and_torque_enter_linearly() -> None:
    model = CRAZYFLIE_NEWER
    dyn = QuadrotorDynamics(model)
    h = model.hover_speed()
    s = make_state(quat=axis_angle_quat((1.0, 1.0, 0.0), 0.4), r=h)
    p = params_of(model)
    f = torch.tensor([[0.01, -0.02, 0.03]])
    tq = torch.tensor([[1e-5, -2e-5, 3e-5]])
    d0 = dyn.derivative(s, s[:, 13:17], p, ZERO3, ZERO3)
    d1 = dyn.derivative(s, s[:, 13:17], p, f, tq)
    torch.testing.assert_close(d1[0, 7:10] - d0[0, 7:10], f[0] / model.mass, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(d1[0, 10:13] - d0[0, 10:13], tq[0] / torch.tensor(model.inertia), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------- integrator
def test_rk4_is_fourth_order_on_tumbling_trajectory() -> None:
    model = CRAZYFLIE_NEWER  # asymmetric motor lag: both time constants in play
    dyn = QuadrotorDynamics(model)
    p = params_of(model)
    p[0, 1:4] = torch.tensor([9e-6, 1.2e-5, 1.8e-5])  # asymmetric inertia: gyroscopic coupling
    s0 = make_state(omega=(3.0, -2.0, 5.0), r=(0.2, 0.8, 0.5, 0.4))
    r_sp = torch.tensor([[0.9, 0.1, 0.7, 0.3]])  # two motors spin up, two spin down
    horizon = 0.16

    def run(dt: float) -> torch.Tensor:
        return integrate(dyn, s0.clone(), r_sp, p, dt, round(horizon / dt))

    ref = run(0.04 / 128)
    assert float(ref[0, 10:13].norm()) > 10.0  # really tumbling
    errors = [float((run(dt) - ref).norm()) for dt in (0.04, 0.02, 0.01)]
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    for ratio in ratios:
        # 4th order: 2^4 = 16 per halving (3rd order would give 8, 2nd order 4).
        assert 11.0 < ratio < 24.0, (errors, ratios)


def test_torque_free_rotation_conserves_energy_and_world_angular_momentum() -> None:
    model = dataclasses.replace(CRAZYFLIE_PAPER, gravity=0.0)  # c0 = c1 = 0: zero thrust at r = 0
    dyn = QuadrotorDynamics(model)
    p = params_of(model)
    inertia = torch.tensor([1.0e-5, 2.0e-5, 3.5e-5])
    p[0, 1:4] = inertia
    # Spin close to the intermediate axis: a strongly non-trivial (flipping) motion.
    s = make_state(pos=(0.0, 0.0, 1.0), omega=(0.5, 15.0, 0.5), r=0.0)
    r_sp = torch.zeros(1, 4)

    def invariants(st: torch.Tensor) -> tuple[float, torch.Tensor]:
        w = st[0, 10:13].double()
        energy = float(0.5 * (inertia.double() * w * w).sum())
        ang_mom = quat_to_rotmat(st[:, 3:7].double())[0] @ (inertia.double() * w)
        return energy, ang_mom

    e0, l0 = invariants(s)
    omega_y_min = 15.0
    f = torch.zeros(1, 3)
    for _ in range(1000):
        s = dyn.rk4_step(s, r_sp, p, f, f, 0.001)
        omega_y_min = min(omega_y_min, float(s[0, 11]))
        e, l_w = invariants(s)
        assert e == pytest.approx(e0, rel=2e-5)
        assert float((l_w - l0).norm() / l0.norm()) < 2e-5
        assert float(s[0, 3:7].norm()) == pytest.approx(1.0, abs=1e-6)
    assert omega_y_min < -10.0  # the intermediate axis flipped: body-frame omega changed completely
    torch.testing.assert_close(s[0, 0:3], torch.tensor([0.0, 0.0, 1.0]))  # no force, no gravity


def test_quaternion_stays_unit_and_motors_bounded_on_random_trajectories() -> None:
    model = CRAZYFLIE_NEWER
    dyn = QuadrotorDynamics(model)
    gen = torch.Generator().manual_seed(3)
    n = 16
    s = torch.zeros(n, STATE_DIM)
    s[:, 3:7] = random_quaternions(n, math.pi, gen, torch.device("cpu"))
    s[:, 10:13] = 20 * torch.rand(n, 3, generator=gen) - 10
    s[:, 13:17] = torch.rand(n, 4, generator=gen)
    p = params_of(model, n)
    f = 0.01 * torch.randn(n, 3, generator=gen)
    t = 1e-5 * torch.randn(n, 3, generator=gen)
    for _ in range(200):
        r_sp = torch.rand(n, 4, generator=gen)
        s = dyn.rk4_step(s, r_sp, p, f, t, 0.01)
        torch.testing.assert_close(s[:, 3:7].norm(dim=-1), torch.ones(n), atol=1e-6, rtol=0)
        assert float(s[:, 13:17].min()) >= 0.0 and float(s[:, 13:17].max()) <= 1.0
        assert bool(torch.isfinite(s).all())


# ----------------------------------------------------------------------------------------------- rotations
def test_quat_to_rotmat_orthonormal_and_matches_quaternion_rotation() -> None:
    gen = torch.Generator().manual_seed(0)
    q = random_quaternions(64, math.pi, gen, torch.device("cpu")).double()
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(64, dtype=torch.float64), atol=1e-6, rtol=0)
    q = q / q.norm(dim=-1, keepdim=True)  # exactly unit in float64
    R = quat_to_rotmat(q)
    eye = torch.eye(3, dtype=torch.float64).expand(64, 3, 3)
    torch.testing.assert_close(R @ R.transpose(-1, -2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(64, dtype=torch.float64), atol=1e-12, rtol=0)
    v = torch.randn(64, 3, generator=gen).double()
    qv = torch.cat((torch.zeros(64, 1, dtype=torch.float64), v), -1)
    q_conj = q * torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64)
    rotated = quat_mul(quat_mul(q, qv), q_conj)
    torch.testing.assert_close(rotated[:, 0], torch.zeros(64, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close((R @ v.unsqueeze(-1)).squeeze(-1), rotated[:, 1:], atol=1e-12, rtol=0)
    # q and -q are the same rotation
    torch.testing.assert_close(quat_to_rotmat(-q), R)
    # a known case: +90 deg about z maps body x to world y
    Rz = quat_to_rotmat(torch.tensor(axis_angle_quat((0.0, 0.0, 1.0), math.pi / 2), dtype=torch.float64))
    torch.testing.assert_close(
        Rz @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
        torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64),
        atol=1e-12,
        rtol=0,
    )


def test_tilt_angle_and_random_quaternion_max_angle() -> None:
    gen = torch.Generator().manual_seed(1)
    q = random_quaternions(500, math.radians(30.0), gen, torch.device("cpu"))
    tilt = tilt_angle(q)
    assert float(tilt.max()) <= math.radians(30.0) + 1e-5
    R = quat_to_rotmat(q)
    torch.testing.assert_close(torch.cos(tilt), R[:, 2, 2], atol=1e-5, rtol=0)
    assert float(tilt_angle(torch.tensor([1.0, 0.0, 0.0, 0.0]))) == 0.0
    assert float(tilt_angle(torch.tensor(axis_angle_quat((1.0, 0.0, 0.0), 0.5)))) == pytest.approx(0.5, abs=1e-6)
