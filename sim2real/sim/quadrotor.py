"""Batched rigid-body quadrotor with direct motor-RPM control (Crazyflie defaults).

Conventions (identical to Learning to Fly, so policies and firmware are interchangeable):

* **World frame**: right-handed, z up, gravity ``(0, 0, -g)``.
* **Body frame**: FLU (x forward, y left, z up); rotors push along body +z.
* **Attitude**: unit quaternion ``q = (w, x, y, z)`` (Hamilton), rotating body vectors into the world
  frame: ``v_world = R(q) v_body``.
* **Velocities**: linear velocity ``v`` in the world frame, angular velocity ``omega`` in the body frame.
* **Rotor order** (X configuration): 0 front-right ``(+x, -y)``, 1 back-right ``(-x, -y)``,
  2 back-left ``(-x, +y)``, 3 front-left ``(+x, +y)``; yaw-torque directions ``(-1, +1, -1, +1)``.
* **Motor speed** is kept normalised, ``r = RPM / max_rpm`` in ``[0, 1]``; the policy's action
  ``a in [-1, 1]`` maps linearly to the set-point ``r_sp = (a + 1) / 2``.

Dynamics (per env, all batched)::

    f_i   = c0 + c1 r_i + c2 r_i^2                            thrust of rotor i along body z  [N]
    tau   = sum_i p_i x (0, 0, f_i) + (0, 0, sum_i k_q dir_i f_i) + tau_dist           [N m, body]
    dp/dt = v
    dv/dt = R(q) (0, 0, sum_i f_i) / m + (0, 0, -g) + F_dist / m                          [world]
    dq/dt = 1/2 q (x) (0, omega)
    domega/dt = J^-1 (tau - omega x J omega)                                             [body]
    dr/dt = (r_sp - r) / T,  T = T_rise if r_sp > r else T_fall                 first-order motor

integrated with classic RK4 at ``dt`` (default 0.01 s = 100 Hz, set-point held over the step), followed
by quaternion re-normalisation and clipping of ``r`` to ``[0, 1]``.

State is a packed tensor ``(N, 17)`` = position 3, quaternion 4, velocity 3, angular velocity 3, motor
speeds 4 (:data:`POS`, :data:`QUAT`, :data:`VEL`, :data:`OMEGA`, :data:`RPM`); physical parameters are a packed tensor ``(N, 10)``
(see :data:`PARAM_NAMES`). Both can be read and written per env, and :func:`rk4_step` steps any given
state with any given motor commands, which is what system identification and the world model use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

GRAVITY = 9.81

# Slices of the packed state ``(N, 17)``: position 3 | quaternion 4 | velocity 3 | angular velocity 3 | motors 4.
POS = slice(0, 3)
QUAT = slice(3, 7)
VEL = slice(7, 10)
OMEGA = slice(10, 13)
RPM = slice(13, 17)  # normalised motor speed r = RPM / max_rpm
TWIST = slice(VEL.start, OMEGA.stop)  # velocity and angular velocity, adjacent
STATE_DIM = RPM.stop

#: Columns of the packed per-env parameter tensor ``(N, 10)``.
PARAM_NAMES: tuple[str, ...] = (
    "mass",  # kg
    "ixx",  # kg m^2
    "iyy",
    "izz",
    "thrust_c0",  # N        thrust f = c0 + c1 r + c2 r^2, r in [0, 1]
    "thrust_c1",  # N
    "thrust_c2",  # N
    "torque_coeff",  # m      yaw torque = k_q * f * dir
    "motor_tau_rise",  # s
    "motor_tau_fall",  # s
)
PARAM_INDEX = {name: i for i, name in enumerate(PARAM_NAMES)}
PARAM_GROUPS: dict[str, slice] = {"mass": slice(0, 1), "inertia": slice(1, 4), "thrust": slice(4, 7),
                                  "torque_coeff": slice(7, 8), "motor_tau": slice(8, 10)}  # fmt: skip
"""The physical quantities a factor scales as a whole (domain randomisation, shifts, the world model), in column
order: a factor on the thrust scales the whole polynomial, one on the motors both time constants."""


@dataclass
class QuadrotorModel:
    """Nominal physical model of one quadrotor (SI units)."""

    name: str
    mass: float
    inertia: tuple[float, float, float]
    thrust_coeffs: tuple[float, float, float]
    """``(c0, c1, c2)``: thrust per rotor in N as a polynomial of the normalised motor speed."""
    torque_coeff: float
    motor_tau_rise: float
    motor_tau_fall: float
    max_rpm: float = 21702.0
    rotor_positions: tuple[tuple[float, float, float], ...] = (
        (0.028, -0.028, 0.0),
        (-0.028, -0.028, 0.0),
        (-0.028, 0.028, 0.0),
        (0.028, 0.028, 0.0),
    )
    rotor_dirs: tuple[float, float, float, float] = (-1.0, 1.0, -1.0, 1.0)
    gravity: float = GRAVITY
    arm_length: float = field(default=0.0396)

    def param_vector(self) -> list[float]:
        """The model as one row of the packed parameter tensor (order of :data:`PARAM_NAMES`)."""
        return [
            self.mass,
            *self.inertia,
            *self.thrust_coeffs,
            self.torque_coeff,
            self.motor_tau_rise,
            self.motor_tau_fall,
        ]

    def hover_speed(self) -> float:
        """Normalised motor speed r at which four rotors carry the weight: c0 + c1 r + c2 r^2 = m g / 4."""
        c0, c1, c2 = self.thrust_coeffs
        need = self.mass * self.gravity / 4.0 - c0
        if c2 == 0.0:
            return need / c1
        return (-c1 + (c1 * c1 + 4.0 * c2 * need) ** 0.5) / (2.0 * c2)

    def hover_action(self) -> float:
        """Normalised action in [-1, 1] that holds hover."""
        return 2.0 * self.hover_speed() - 1.0


#: Crazyflie 2.x as in the Learning-to-Fly paper: f = 3.16e-10 RPM^2, RPM in [0, 21702].
CRAZYFLIE_PAPER = QuadrotorModel(
    name="crazyflie-paper",
    mass=0.027,
    inertia=(3.85e-6, 3.85e-6, 5.9675e-6),
    thrust_coeffs=(0.0, 0.0, 3.16e-10 * 21702.0**2),
    torque_coeff=0.005964552,
    motor_tau_rise=0.15,
    motor_tau_fall=0.15,
)

#: Newer RLtools L2F Crazyflie (take-off weight with decks, asymmetric motor lag).
CRAZYFLIE_NEWER = QuadrotorModel(
    name="crazyflie-newer",
    mass=0.0306,
    inertia=(9.4166e-6, 9.6441e-6, 1.7460e-5),
    thrust_coeffs=(0.00352526, 0.01437313, 0.09223048),
    torque_coeff=4.665e-3,
    motor_tau_rise=0.0555,
    motor_tau_fall=0.2494,
)

MODELS: dict[str, QuadrotorModel] = {m.name: m for m in (CRAZYFLIE_PAPER, CRAZYFLIE_NEWER)}


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from unit quaternions.

    Args:
        q: ``(..., 4)`` quaternions ``(w, x, y, z)``.

    Returns:
        ``(..., 3, 3)`` matrices R with ``v_world = R @ v_body``.
    """
    w, x, y, z = q.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    rows = (
        1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
        2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
        2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
    )  # fmt: skip
    return torch.stack(rows, -1).reshape(*q.shape[:-1], 3, 3)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a (x) b`` of quaternions ``(..., 4)`` ``(w, x, y, z)``: the rotation ``b``, then ``a``."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack((aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw), -1)  # fmt: skip


def rotmat_to_quat(rot: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``(..., 4)`` ``(w, x, y, z)`` with ``w >= 0`` from rotation matrices ``(..., 3, 3)``.

    Shepperd's method: the largest of ``4 w^2 = 1 + tr R`` and ``4 x^2 = 1 + R_xx - R_yy - R_zz`` (and y, z) is
    taken from the diagonal, the other components from the off-diagonal sums and differences; the inverse of
    :func:`quat_to_rotmat`.
    """
    r = rot
    m00, m11, m22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    cand = torch.stack((1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22), -1)
    k = cand.argmax(-1, keepdim=True)
    s = torch.sqrt(cand.gather(-1, k).clamp_min(1e-12)) * 2  # 4 * (the largest component)
    d21, d02, d10 = r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]
    s01, s02, s12 = r[..., 0, 1] + r[..., 1, 0], r[..., 0, 2] + r[..., 2, 0], r[..., 1, 2] + r[..., 2, 1]
    s = s[..., 0]
    rows = (
        torch.stack((s / 4, d21 / s, d02 / s, d10 / s), -1),  # w largest
        torch.stack((d21 / s, s / 4, s01 / s, s02 / s), -1),  # x largest
        torch.stack((d02 / s, s01 / s, s / 4, s12 / s), -1),  # y largest
        torch.stack((d10 / s, s02 / s, s12 / s, s / 4), -1),  # z largest
    )
    q = torch.stack(rows, -2).gather(-2, k[..., None].expand(*k.shape[:-1], 1, 4))[..., 0, :]
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


class QuadrotorDynamics:
    """The continuous-time model and its RK4 integrator, for a batch of quadrotors.

    Rotor geometry is shared by the batch; everything in :data:`PARAM_NAMES` is per env.
    """

    def __init__(self, model: QuadrotorModel, device: torch.device | str = "cpu") -> None:
        self.model = model
        self.device = torch.device(device)
        pos = torch.tensor(model.rotor_positions, dtype=torch.float32, device=self.device)  # (4, 3)
        dirs = torch.tensor(model.rotor_dirs, dtype=torch.float32, device=self.device)  # (4,)
        # Torque about body x/y from rotor i thrust f_i along z: p_i x (0,0,f_i) = (p_iy f_i, -p_ix f_i, 0).
        self.roll_arm = pos[:, 1]  # (4,)
        self.pitch_arm = -pos[:, 0]  # (4,)
        self.yaw_dirs = dirs
        self.gravity = model.gravity

    def derivative(
        self, s: torch.Tensor, r_sp: torch.Tensor, p: torch.Tensor, f_dist: torch.Tensor, t_dist: torch.Tensor
    ) -> torch.Tensor:
        """Time derivative of the packed state.

        Args:
            s: state ``(N, 17)``.
            r_sp: motor speed set-points in [0, 1], ``(N, 4)``.
            p: parameters ``(N, 10)``.
            f_dist: disturbance force in the world frame, ``(N, 3)`` [N].
            t_dist: disturbance torque in the body frame, ``(N, 3)`` [N m].

        Returns:
            ``(N, 17)`` derivative.
        """
        q = s[:, QUAT]
        omega = s[:, OMEGA]
        r = s[:, RPM]
        mass, inertia = p[:, 0:1], p[:, 1:4]
        f = p[:, 4:5] + p[:, 5:6] * r + p[:, 6:7] * r * r  # (N, 4) rotor thrusts
        thrust = f.sum(-1, keepdim=True)  # (N, 1)
        torque = torch.stack(
            (f @ self.roll_arm, f @ self.pitch_arm, p[:, 7] * (f @ self.yaw_dirs)), -1
        ) + t_dist  # (N, 3) body
        w, x, y, z = q.unbind(-1)
        # Body z axis in the world frame = third column of R(q).
        z_axis = torch.stack((2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)), -1)
        acc = z_axis * (thrust / mass) + f_dist / mass
        acc = acc - torch.tensor([0.0, 0.0, self.gravity], device=s.device)
        ox, oy, oz = omega.unbind(-1)
        # q_dot = 1/2 q (x) (0, omega)
        q_dot = 0.5 * torch.stack(
            (-x * ox - y * oy - z * oz, w * ox + y * oz - z * oy, w * oy - x * oz + z * ox, w * oz + x * oy - y * ox),
            -1,
        )
        j_omega = inertia * omega
        omega_dot = (torque - torch.linalg.cross(omega, j_omega)) / inertia
        tau = torch.where(r_sp > r, p[:, 8:9], p[:, 9:10])
        r_dot = (r_sp - r) / tau
        return torch.cat((s[:, VEL], q_dot, acc, omega_dot, r_dot), -1)

    def rk4_step(
        self,
        s: torch.Tensor,
        r_sp: torch.Tensor,
        p: torch.Tensor,
        f_dist: torch.Tensor,
        t_dist: torch.Tensor,
        dt: float,
    ) -> torch.Tensor:
        """One RK4 step of length ``dt`` with the set-point held; returns the next state ``(N, 17)``.

        ``s_next = s + dt/6 (k1 + 2 k2 + 2 k3 + k4)``, then ``q <- q / |q|`` and ``r <- clip(r, 0, 1)``.
        """
        d = self.derivative
        k1 = d(s, r_sp, p, f_dist, t_dist)
        k2 = d(s + 0.5 * dt * k1, r_sp, p, f_dist, t_dist)
        k3 = d(s + 0.5 * dt * k2, r_sp, p, f_dist, t_dist)
        k4 = d(s + dt * k3, r_sp, p, f_dist, t_dist)
        s = s + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        q = s[:, QUAT]
        q = q / q.norm(dim=-1, keepdim=True)
        return torch.cat((s[:, POS], q, s[:, TWIST], s[:, RPM].clamp(0.0, 1.0)), -1)


def random_quaternions(n: int, max_angle: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Quaternions ``(n, 4)`` of a uniformly random axis and an angle uniform in ``[0, max_angle]`` rad."""
    axis = torch.randn(n, 3, generator=generator, device=device)
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    angle = torch.rand(n, 1, generator=generator, device=device) * max_angle
    return torch.cat((torch.cos(angle / 2), axis * torch.sin(angle / 2)), -1)


def tilt_angle(q: torch.Tensor) -> torch.Tensor:
    """Angle ``(...)`` in rad between body z and world z: ``acos(R_zz)``, ``R_zz = 1 - 2 (x^2 + y^2)``."""
    rzz = 1 - 2 * (q[..., 1] ** 2 + q[..., 2] ** 2)
    return torch.acos(rzz.clamp(-1.0, 1.0))
