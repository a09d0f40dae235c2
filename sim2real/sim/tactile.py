"""TacSL-style tactile sensing of elastomer pads, batched in torch over envs and pads, independent of the engine.

An engine (MuJoCo, PyBullet, ...) hands over, each step, the poses and velocities of the pads and of the shapes
they may touch; :class:`TactileSensor` returns, on a grid of taxels on each pad, the penetration depth and TacSL's
penalty force field (Akinola et al., TacSL, 2024):

* taxels: ``rows x cols`` points on the pad's sensing face (its ``z = 0`` plane, ``+z`` out of the gel towards
  what it touches), ``margin`` inside its edges; row ``i`` runs along the pad's ``y``, column ``j`` along ``x``;
* depth ``d = max(-phi(x), 0)`` and the shape's outward normal ``n`` at each taxel ``x`` from its signed
  distance function (:mod:`sim2real.sim.sdf`);
* the gel's velocity relative to the shape at the taxel ``v = (v_pad + w_pad x r_pad) - (v_obj + w_obj x r_obj)``,
  its penetration rate ``d' = -n . v`` and its tangential slip ``v_t = v - n (n . v)``;
* normal force (Hunt-Crossley: damping scaled by the depth, so the force starts at 0 on first touch)
  ``f_n = d * max(k_n + k_d d', 0)`` along ``n``;
* shear ``f_t = -v_t / |v_t| * min(k_t |v_t|, mu f_n)``: against the slip, capped by the friction cone;
* reported in the pad's frame: ``[pressure, shear_x, shear_y] = [-f . z_pad, f . x_pad, f . y_pad]`` of the total
  force on the gel ``f = f_n n + f_t`` (summed over the shapes).

Every constant may be one number or one per env (domain randomisation: ``TactileConstants.sample``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sim2real.sim.sdf import Sdf


@dataclass
class PadGeometry:
    """The sensing face of a pad and its taxel grid (TacSL's default: 20 x 25 taxels, 3 mm margin)."""

    size_m: tuple[float, float] = (0.020, 0.025)
    """Extent of the sensing face along the pad's ``x`` and ``y`` [m]."""
    rows: int = 25
    """Taxels along ``y``."""
    cols: int = 20
    """Taxels along ``x``."""
    margin_m: float = 0.003
    """Distance from the face's edges to the outermost taxels [m]."""

    def __post_init__(self) -> None:
        sx, sy = self.size_m
        if not (self.rows >= 1 and self.cols >= 1):
            raise ValueError(f"a pad needs at least 1 x 1 taxels, got {self.rows} x {self.cols}")
        if not (sx > 0 and sy > 0 and 0 <= self.margin_m and 2 * self.margin_m < min(sx, sy)):
            raise ValueError(f"pad size {self.size_m} m must be positive and larger than twice the margin "
                             f"{self.margin_m} m")  # fmt: skip

    def grid(self, rows: int | None = None, cols: int | None = None, margin_m: float | None = None) -> torch.Tensor:
        """Points ``(rows * cols, 3)`` on the face in the pad's frame, row-major (row = ``y``, column = ``x``)."""
        rows, cols = rows or self.rows, cols or self.cols
        m = self.margin_m if margin_m is None else margin_m
        hx, hy = self.size_m[0] / 2 - m, self.size_m[1] / 2 - m
        ys = torch.linspace(-hy, hy, rows) if rows > 1 else torch.zeros(1)
        xs = torch.linspace(-hx, hx, cols) if cols > 1 else torch.zeros(1)
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack((x, y, torch.zeros_like(x)), -1).reshape(-1, 3)


@dataclass
class TactileConstants:
    """The penalty field's constants (TacSL's defaults); each a number or a tensor ``(E,)`` (one per env)."""

    k_n: float | torch.Tensor = 1.0
    """Normal stiffness [N/m]."""
    k_d: float | torch.Tensor = 0.0
    """Normal damping [N s/m^2] (TacSL: 0.003, off in its released code)."""
    k_t: float | torch.Tensor = 0.1
    """Tangential (viscous) stiffness [N s/m]."""
    mu: float | torch.Tensor = 2.0
    """Friction coefficient of the shear cap."""

    def __post_init__(self) -> None:
        for name in ("k_n", "k_d", "k_t", "mu"):
            v = torch.as_tensor(getattr(self, name), dtype=torch.float32)
            if not bool(torch.isfinite(v).all()) or bool((v < 0).any()) or v.dim() > 1:
                raise ValueError(f"tactile constant {name} must be finite, >= 0, a number or (E,), got {v.tolist()}")

    @classmethod
    def sample(cls, num_envs: int, ranges: dict[str, tuple[float, float]], generator: torch.Generator | None = None,
               base: TactileConstants | None = None) -> TactileConstants:  # fmt: skip
        """Per-env constants drawn uniformly from ``ranges`` {name: (low, high)}; the others from ``base``."""
        base = base or cls()
        values = {}
        for name in ("k_n", "k_d", "k_t", "mu"):
            if name in ranges:
                lo, hi = ranges[name]
                values[name] = lo + (hi - lo) * torch.rand(num_envs, generator=generator)
            else:
                values[name] = getattr(base, name)
        unknown = set(ranges) - set(values)
        if unknown:
            raise ValueError(f"unknown tactile constants {sorted(unknown)}; have k_n, k_d, k_t, mu")
        return cls(**values)

    def per_env(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each constant as ``(E or 1, 1, 1)`` on ``like``'s device, to broadcast over ``(E, P, N)``."""
        return {k: torch.as_tensor(getattr(self, k), dtype=like.dtype, device=like.device).reshape(-1, 1, 1)
                for k in ("k_n", "k_d", "k_t", "mu")}  # fmt: skip


@dataclass
class RigidState:
    """Poses and velocities of ``(E, K)`` bodies (``K`` = pads, or 1 per shape) in the world frame.

    ``pos`` ``(E, K, 3)``, ``rot`` ``(E, K, 3, 3)`` (``v_world = rot @ v_body``), ``linvel`` and ``angvel``
    ``(E, K, 3)`` (world frame; linear velocity of the frame's origin). Velocities default to 0.
    """

    pos: torch.Tensor
    rot: torch.Tensor
    linvel: torch.Tensor | None = None
    angvel: torch.Tensor | None = None

    def check(self, what: str) -> None:
        """ValueError on wrong shapes or NaN/Inf."""
        e_k = tuple(self.pos.shape[:-1])
        shapes = {"pos": (*e_k, 3), "rot": (*e_k, 3, 3), "linvel": (*e_k, 3), "angvel": (*e_k, 3)}
        if self.pos.dim() != 3 or self.pos.shape[-1] != 3:
            raise ValueError(f"{what}: pos must be (E, K, 3), got {tuple(self.pos.shape)}")
        for name, want in shapes.items():
            v = getattr(self, name)
            if v is None:
                continue
            if tuple(v.shape) != want:
                raise ValueError(f"{what}: {name} must be {want}, got {tuple(v.shape)}")
            if not bool(torch.isfinite(v).all()):
                raise ValueError(f"{what}: {name} has NaN or Inf")


@dataclass
class ContactShape:
    """A shape the pads may touch: its SDF (in its own frame) and its state ``(E, 1)``."""

    sdf: Sdf
    state: RigidState


@dataclass
class TactileReading:
    """What the sensor reports for ``E`` envs, ``P`` pads and a ``rows x cols`` grid."""

    depth: torch.Tensor
    """``(E, P, rows, cols)`` penetration depth [m] (the deepest shape's)."""
    force: torch.Tensor
    """``(E, P, rows, cols, 3)``: pressure (normal force pressing the gel) and shear along the pad's x and y [N]."""
    in_contact: torch.Tensor
    """``(E, P)``: any taxel penetrated."""


class TactileSensor:
    """TacSL's force field on the taxels of ``P`` identical pads per env.

    Args:
        pad: the sensing face and its taxel grid.
        constants: the penalty field's constants (one value or one per env).
        device: where the taxel grid lives (the inputs' device is used for the computation).
        compile: fuse the field's arithmetic with ``torch.compile`` (several times faster on CPU and CUDA; the
            first reading of each input shape compiles, ~10 s). Falls back to eager with a warning where it
            cannot compile (no C++ compiler).
    """

    def __init__(self, pad: PadGeometry | None = None, constants: TactileConstants | None = None,
                 device: str | torch.device = "cpu", compile: bool = False) -> None:  # fmt: skip
        self.pad = pad or PadGeometry()
        self.constants = constants or TactileConstants()
        self.taxels = self.pad.grid().to(device)  # (N, 3) in the pad frame
        self._field = maybe_compiled(_field, compile)

    def read(self, pads: RigidState, shapes: list[ContactShape]) -> TactileReading:
        """The depths and forces on every taxel of every pad.

        Args:
            pads: the pads' states, ``(E, P, ...)``.
            shapes: the shapes in reach, each with its state ``(E, 1, ...)``.

        Raises:
            ValueError: wrong shapes, NaN/Inf in a pose or velocity, or no shape.
        """
        check_contact_inputs(pads, shapes)
        c = self.constants.per_env(pads.pos)
        depth, force = self._field(self.taxels.to(pads.pos), pads, shapes, c["k_n"], c["k_d"], c["k_t"], c["mu"])
        grid = (*pads.pos.shape[:2], self.pad.rows, self.pad.cols)
        return TactileReading(depth.reshape(grid), force.reshape(*grid, 3), (depth > 0).any(-1))

    def depth_at(self, pads: RigidState, shapes: list[ContactShape], points: torch.Tensor) -> torch.Tensor:
        """Penetration depth ``(E, P, M)`` at points ``(M, 3)`` of the pads' frames (an image's pixels)."""
        check_contact_inputs(pads, shapes)
        return depth_at(points.to(pads.pos), pads, shapes)


def depth_at(points: torch.Tensor, pads: RigidState, shapes: list[ContactShape]) -> torch.Tensor:
    """Penetration depth ``(E, P, M)`` of the deepest shape at points ``(M, 3)`` of the pads' frames (checked inputs)."""
    e, p = pads.pos.shape[:2]
    pts = points.unbind(-1)
    depth = pads.pos.new_zeros(e, p, len(points))
    for shape in shapes:
        local, _ = _in_shape_frame(pads, shape.state, pts)
        phi, _ = shape.sdf(*(c.reshape(e, -1) for c in local))
        depth = torch.maximum(depth, (-phi.reshape(e, p, -1)).clamp_min(0.0))
    return depth


def check_contact_inputs(pads: RigidState, shapes: list[ContactShape]) -> None:
    """ValueError unless the pads and shapes have matching shapes and finite values."""
    pads.check("pads")
    if not shapes:
        raise ValueError("the tactile sensor needs at least one contact shape")
    e = pads.pos.shape[0]
    for i, shape in enumerate(shapes):
        shape.state.check(f"shape {i}")
        if tuple(shape.state.pos.shape[:2]) not in ((e, 1), (1, 1)):
            raise ValueError(f"shape {i}: its state must be (E={e}, 1, ...), got {tuple(shape.state.pos.shape)}")


def _field(taxels: torch.Tensor, pads: RigidState, shapes: list[ContactShape], k_n: torch.Tensor, k_d: torch.Tensor,
           k_t: torch.Tensor, mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Depth ``(E, P, N)`` and ``[pressure, shear_x, shear_y]`` ``(E, P, N, 3)`` of checked inputs.

    Component by component (``(E, P, N)`` tensors, no reduction over a 3-axis) and no data-dependent control flow,
    so that it compiles into one vectorised loop.
    """
    e, p = pads.pos.shape[:2]
    pts = taxels.unbind(-1)
    depth = pads.pos.new_zeros(e, p, len(taxels))
    fx = fy = fz = torch.zeros_like(depth)  # the force on the gel, in the pad frame
    for shape in shapes:
        local, rel = _in_shape_frame(pads, shape.state, pts)
        phi, n_local = shape.sdf(*(c.reshape(e, -1) for c in local))
        d = (-phi.reshape(e, p, -1)).clamp_min(0.0)  # penetration depth
        nl = [c.reshape(e, p, -1) for c in n_local]
        n = [sum(rel[..., i, j, None] * nl[i] for i in range(3)) for j in range(3)]  # rel^T n: pad frame
        v = _relative_velocity(pads, shape.state, pts)  # the gel relative to the shape, pad frame
        vn = n[0] * v[0] + n[1] * v[1] + n[2] * v[2]
        f_n = d * (k_n - k_d * vn).clamp_min(0.0)  # Hunt-Crossley, penetration rate d' = -n . v
        vt = [v[i] - n[i] * vn for i in range(3)]  # tangential slip
        speed = torch.sqrt(vt[0] * vt[0] + vt[1] * vt[1] + vt[2] * vt[2])
        cap = torch.minimum(k_t * speed, mu * f_n)  # viscous shear, capped by the friction cone
        shear = -cap / speed.clamp_min(1e-9)
        touch = d > 0
        fx = fx + torch.where(touch, f_n * n[0] + shear * vt[0], 0.0)
        fy = fy + torch.where(touch, f_n * n[1] + shear * vt[1], 0.0)
        fz = fz + torch.where(touch, f_n * n[2] + shear * vt[2], 0.0)
        depth = torch.maximum(depth, d)
    return depth, torch.stack((-fz, fx, fy), -1)  # pressure, shear x, shear y


def maybe_compiled(fn: Callable[..., Any], compile: bool) -> Callable[..., Any]:
    """``torch.compile(fn)`` when ``compile``, falling back to ``fn`` (with a warning) the first time compiling fails."""
    if not compile:
        return fn
    state = {"fn": torch.compile(fn, dynamic=False)}

    def run(*args: Any) -> Any:
        try:
            return state["fn"](*args)
        except Exception as err:  # noqa: BLE001 - a missing compiler shows up as any of several errors
            if state["fn"] is fn:
                raise
            warnings.warn(f"torch.compile failed ({type(err).__name__}: {err}); running {fn.__name__} eagerly",
                          RuntimeWarning, stacklevel=3)  # fmt: skip
            state["fn"] = fn
            return fn(*args)

    return run


def _in_shape_frame(pads: RigidState, s: RigidState,
                    pts: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:  # fmt: skip
    """Pad-frame points (components ``(N,)``) in the shape's frame, components ``(E, P, N)``; ``rel = R_s^T R_pad``."""
    rel = s.rot.transpose(-1, -2) @ pads.rot  # (E, P, 3, 3): pad frame -> shape frame
    t = ((pads.pos - s.pos)[..., None, :] @ s.rot)[..., 0, :]  # (E, P, 3): R_s^T (p_pad - p_s)
    return [sum(rel[..., i, j, None] * pts[j] for j in range(3)) + t[..., i, None] for i in range(3)], rel


def _relative_velocity(pads: RigidState, s: RigidState, pts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Velocity of the gel at pad points (components ``(N,)``) relative to the shape's material there, pad frame.

    ``v_gel - v_obj = (v_p - v_s - w_s x (p_pad - p_s)) + (w_p - w_s) x r`` with ``r = R_pad x``: affine in the
    point ``x``; in the pad frame ``a + b x x`` with ``a = R_pad^T (...)`` and ``b = R_pad^T (w_p - w_s)``.
    Components ``(E, P, N)``.
    """
    e, p = pads.pos.shape[:2]
    zero = pads.pos.new_zeros(e, p, 3)
    v_p = pads.linvel if pads.linvel is not None else zero
    w_p = pads.angvel if pads.angvel is not None else zero
    v_s = s.linvel if s.linvel is not None else zero
    w_s = s.angvel if s.angvel is not None else zero
    a = v_p - v_s - torch.cross(w_s.expand_as(zero), pads.pos - s.pos, dim=-1)  # (E, P, 3), world
    a = (a[..., None, :] @ pads.rot)[..., 0, :]  # R_pad^T a
    b = ((w_p - w_s)[..., None, :] @ pads.rot)[..., 0, :]  # R_pad^T (w_p - w_s)
    ax, ay, az = (a[..., i, None] for i in range(3))
    bx, by, bz = (b[..., i, None] for i in range(3))
    x, y, z = pts
    return [ax + by * z - bz * y, ay + bz * x - bx * z, az + bx * y - by * x]
