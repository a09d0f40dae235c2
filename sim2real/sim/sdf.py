"""Signed distance functions of contact shapes, batched in torch: what the tactile sensor presses against.

Each shape is described in its own frame (centred, axis-aligned; cylinders and capsules along ``z``) and answers,
for points ``p`` in that frame, the signed distance ``phi`` (negative inside) and the unit outward normal ``n``
(the gradient of ``phi``). Sizes may differ per env (randomised geometry): every size tensor is ``(E, k)`` or
``(k,)``. Primitives are analytic; meshes go through a precomputed :class:`SdfGrid` (trilinear interpolation).

Shapes: :class:`Sphere`, :class:`Box`, :class:`Capsule`, :class:`Cylinder`, :class:`SdfGrid`
(``SdfGrid.from_mesh(vertices, faces)``). :func:`sdf_for` turns a MuJoCo-style geom description into one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

_EPS = 1e-12


Components = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class Sdf(Protocol):
    """A signed distance function in the shape's own frame, on coordinates given component by component.

    Components (not ``(..., 3)`` tensors) keep every operation elementwise, so that a compiled sensor fuses the
    whole query into one vectorised loop.
    """

    def __call__(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, Components]:
        """Coordinates ``(E, N)`` each -> ``phi`` ``(E, N)`` [m], negative inside, and the unit outward normal."""
        ...


def evaluate(sdf: Sdf, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``sdf`` at points ``p`` ``(E, N, 3)`` -> ``phi`` ``(E, N)`` and ``n`` ``(E, N, 3)``."""
    phi, n = sdf(p[..., 0], p[..., 1], p[..., 2])
    return phi, torch.stack(n, -1)


def _size(size: torch.Tensor, like: torch.Tensor, i: int) -> torch.Tensor:
    """Entry ``i`` of a ``(k,)`` or ``(E, k)`` size as ``(E or 1, 1)``, on ``like``'s device and dtype."""
    size = torch.as_tensor(size, dtype=like.dtype, device=like.device)
    return size[..., i].reshape(-1, 1)


def _unit(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, fallback: tuple[float, float, float]) -> Components:
    """``v / |v|``; ``fallback`` where ``|v|`` is 0 (a point exactly on the centre or the axis)."""
    norm = torch.sqrt(x * x + y * y + z * z)
    inv = 1.0 / norm.clamp_min(_EPS)
    ok = norm > _EPS
    return tuple(torch.where(ok, c * inv, f) for c, f in zip((x, y, z), fallback))  # type: ignore[return-value]


def _sign(v: torch.Tensor) -> torch.Tensor:
    return torch.where(v >= 0, 1.0, -1.0).to(v.dtype)


@dataclass
class Sphere:
    """A sphere of radius ``radius`` (``(1,)`` or ``(E, 1)``)."""

    radius: torch.Tensor

    def __call__(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, Components]:
        phi = torch.sqrt(x * x + y * y + z * z) - _size(self.radius, x, 0)  # |p| - r
        return phi, _unit(x, y, z, (0.0, 0.0, 1.0))  # n = p / |p|


@dataclass
class Box:
    """An axis-aligned box of half extents ``half`` (``(3,)`` or ``(E, 3)``)."""

    half: torch.Tensor

    def __call__(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, Components]:
        qx, qy, qz = x.abs() - _size(self.half, x, 0), y.abs() - _size(self.half, x, 1), z.abs() - _size(self.half, x, 2)
        ox, oy, oz = qx.clamp_min(0.0), qy.clamp_min(0.0), qz.clamp_min(0.0)  # per-axis distance outside the slabs
        dist_out = torch.sqrt(ox * ox + oy * oy + oz * oz)  # |max(q, 0)|: the distance from outside
        q_max = torch.maximum(qx, torch.maximum(qy, qz))  # inside: the nearest face is that of the largest q
        phi = dist_out + q_max.clamp_max(0.0)
        outside, inv = dist_out > _EPS, 1.0 / dist_out.clamp_min(_EPS)
        in_x = (qx >= qy) & (qx >= qz)
        in_y = ~in_x & (qy >= qz)
        in_z = ~in_x & ~in_y
        n = tuple(_sign(c) * torch.where(outside, o * inv, inside.to(c.dtype))
                  for c, o, inside in ((x, ox, in_x), (y, oy, in_y), (z, oz, in_z)))  # fmt: skip
        return phi, n  # type: ignore[return-value]


@dataclass
class Capsule:
    """A capsule along ``z``: radius and half length of its segment, ``(2,)`` or ``(E, 2)`` = ``(radius, half)``."""

    size: torch.Tensor

    def __call__(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, Components]:
        half = _size(self.size, x, 1)
        dz = z - torch.maximum(torch.minimum(z, half), -half)  # from the nearest point of the segment
        phi = torch.sqrt(x * x + y * y + dz * dz) - _size(self.size, x, 0)
        return phi, _unit(x, y, dz, (1.0, 0.0, 0.0))


@dataclass
class Cylinder:
    """A cylinder along ``z``: ``(radius, half height)``, ``(2,)`` or ``(E, 2)``."""

    size: torch.Tensor

    def __call__(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, Components]:
        rho = torch.sqrt(x * x + y * y)
        rx, ry, _ = _unit(x, y, torch.zeros_like(z), (1.0, 0.0, 0.0))  # the radial direction
        d_r, d_z = rho - _size(self.size, x, 0), z.abs() - _size(self.size, x, 1)  # a 2-D box in (rho, |z|)
        out_r, out_z = d_r.clamp_min(0.0), d_z.clamp_min(0.0)
        dist_out = torch.sqrt(out_r * out_r + out_z * out_z)
        phi = dist_out + torch.maximum(d_r, d_z).clamp_max(0.0)
        outside, inv = dist_out > _EPS, 1.0 / dist_out.clamp_min(_EPS)
        radial = d_r > d_z  # inside: the nearer of the side and the cap
        sz = _sign(z)
        nx = torch.where(outside, out_r * inv * rx, torch.where(radial, rx, 0.0))
        ny = torch.where(outside, out_r * inv * ry, torch.where(radial, ry, 0.0))
        nz = torch.where(outside, out_z * inv * sz, torch.where(radial, 0.0, sz))
        return phi, (nx, ny, nz)


@dataclass
class SdfGrid:
    """Signed distances sampled on a regular grid over ``[lo, hi]`` (a mesh's), trilinearly interpolated.

    ``values`` ``(D, H, W)`` indexed ``[z, y, x]``; ``lo``/``hi`` ``(3,)`` the grid's corners (x, y, z). Points
    outside the grid get the distance to the grid's box added to the value at the nearest grid point (an upper
    bound: tactile contacts happen inside, where the values are exact to the interpolation).
    """

    values: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor

    def __post_init__(self) -> None:
        if self.values.dim() != 3 or min(self.values.shape) < 2:
            raise ValueError(f"SdfGrid values must be (D, H, W) with every side >= 2, got {tuple(self.values.shape)}")
        if not bool(torch.isfinite(self.values).all()):
            raise ValueError("SdfGrid values must be finite")
        if not bool((self.hi > self.lo).all()):
            raise ValueError(f"SdfGrid needs hi > lo, got lo={self.lo.tolist()}, hi={self.hi.tolist()}")
        spacing = (self.hi - self.lo) / (torch.tensor(self.values.shape[::-1], dtype=self.lo.dtype) - 1)  # (x, y, z)
        gz, gy, gx = torch.gradient(self.values, spacing=(float(spacing[2]), float(spacing[1]), float(spacing[0])))
        self._field = torch.stack((self.values, gx, gy, gz))[None]  # (1, 4, D, H, W): phi and its gradient

    def __call__(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, Components]:
        p = torch.stack(torch.broadcast_tensors(x, y, z), -1)
        lo, hi = self.lo.to(p), self.hi.to(p)
        inside = torch.maximum(torch.minimum(p, hi), lo)
        grid = (2 * (inside - lo) / (hi - lo) - 1).reshape(1, 1, 1, -1, 3)  # grid_sample wants (x, y, z) in [-1, 1]
        field = F.grid_sample(self._field.to(p), grid, mode="bilinear", align_corners=True)  # (1, 4, 1, 1, E * N)
        field = field.reshape(4, *p.shape[:-1])
        phi = field[0] + (p - inside).norm(dim=-1)
        return phi, _unit(field[1], field[2], field[3], (0.0, 0.0, 1.0))

    @classmethod
    def from_mesh(cls, vertices: torch.Tensor, faces: torch.Tensor, resolution: int = 32,
                  padding: float = 0.1) -> SdfGrid:  # fmt: skip
        """The signed distance grid of a closed triangle mesh (``vertices`` ``(V, 3)``, ``faces`` ``(F, 3)``).

        Distances are exact to the triangles (brute force, chunked); the sign comes from the generalised winding
        number (inside: ~1), so small holes are tolerated. ``padding``: margin around the bounds, relative.
        """
        vertices = torch.as_tensor(vertices, dtype=torch.float64)
        faces = torch.as_tensor(faces, dtype=torch.long)
        if vertices.dim() != 2 or vertices.shape[1] != 3 or faces.dim() != 2 or faces.shape[1] != 3 or not len(faces):
            raise ValueError(f"a mesh needs vertices (V, 3) and faces (F, 3), got {tuple(vertices.shape)}, "
                             f"{tuple(faces.shape)}")  # fmt: skip
        if int(faces.min()) < 0 or int(faces.max()) >= len(vertices) or not bool(torch.isfinite(vertices).all()):
            raise ValueError("mesh faces index missing vertices, or vertices are not finite")
        lo, hi = vertices.min(0).values, vertices.max(0).values
        pad = padding * (hi - lo).max()
        lo, hi = lo - pad, hi + pad
        axes = [torch.linspace(float(lo[i]), float(hi[i]), resolution, dtype=torch.float64) for i in range(3)]
        z, y, x = torch.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
        pts = torch.stack((x, y, z), -1).reshape(-1, 3)
        tri = vertices[faces]  # (F, 3, 3)
        dist = torch.cat([_triangle_distance(c, tri) for c in pts.split(2048)])
        wind = torch.cat([_winding_number(c, tri) for c in pts.split(2048)])
        values = torch.where(wind > 0.5, -dist, dist).reshape(resolution, resolution, resolution)
        return cls(values.float(), lo.float(), hi.float())


def _triangle_distance(p: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Unsigned distance of points ``(N, 3)`` to the nearest of triangles ``(F, 3, 3)`` -> ``(N,)``.

    The closest point on each triangle by its barycentric regions (Ericson, Real-Time Collision Detection §5.1.5).
    """
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]  # (F, 3)
    ab, ac, ap = b - a, c - a, p[:, None] - a  # (F, 3), (F, 3), (N, F, 3)
    d1, d2 = (ap * ab).sum(-1), (ap * ac).sum(-1)
    bp, cp = p[:, None] - b, p[:, None] - c
    d3, d4 = (bp * ab).sum(-1), (bp * ac).sum(-1)
    d5, d6 = (cp * ab).sum(-1), (cp * ac).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    denom = (va + vb + vc).clamp_min(_EPS)
    v, w = vb / denom, vc / denom
    closest = a + v[..., None] * ab + w[..., None] * ac  # inside the face
    t_ab = (d1 / (d1 - d3).clamp_min(_EPS)).clamp(0, 1)
    t_ac = (d2 / (d2 - d6).clamp_min(_EPS)).clamp(0, 1)
    t_bc = ((d4 - d3) / ((d4 - d3) + (d5 - d6)).clamp_min(_EPS)).clamp(0, 1)
    edge_ab, edge_ac, edge_bc = a + t_ab[..., None] * ab, a + t_ac[..., None] * ac, b + t_bc[..., None] * (c - b)
    regions = [  # (condition, closest point), first match wins, as in the reference's early returns
        ((d1 <= 0) & (d2 <= 0), a.expand_as(closest)),
        ((d3 >= 0) & (d4 <= d3), b.expand_as(closest)),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), edge_ab),
        ((d6 >= 0) & (d5 <= d6), c.expand_as(closest)),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), edge_ac),
        ((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), edge_bc),
    ]
    for cond, point in reversed(regions):
        closest = torch.where(cond[..., None], point, closest)
    return (p[:, None] - closest).norm(dim=-1).min(dim=1).values


def _winding_number(p: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Generalised winding number of a closed mesh at points ``(N, 3)``: ~1 inside, ~0 outside.

    Sum of the triangles' solid angles (Van Oosterom & Strackee) over 4 pi.
    """
    a, b, c = (tri[None, :, k] - p[:, None] for k in range(3))  # (N, F, 3)
    la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
    det = (a * torch.cross(b, c, dim=-1)).sum(-1)
    div = la * lb * lc + (a * b).sum(-1) * lc + (a * c).sum(-1) * lb + (b * c).sum(-1) * la
    return (2 * torch.atan2(det, div)).sum(-1) / (4 * math.pi)


def sdf_for(kind: str, size: torch.Tensor) -> Sdf:
    """The SDF of a primitive by MuJoCo's geom type name and size convention.

    ``sphere`` (radius), ``box`` (half extents), ``capsule`` and ``cylinder`` (radius, half length). Meshes have no
    size: build their :class:`SdfGrid` with ``SdfGrid.from_mesh``.
    """
    size = torch.as_tensor(size, dtype=torch.float32)
    need = {"sphere": 1, "box": 3, "capsule": 2, "cylinder": 2}
    if kind not in need:
        raise ValueError(f"no analytic SDF for a {kind!r} (have: {', '.join(need)}; a mesh: SdfGrid.from_mesh)")
    if size.shape[-1] < need[kind] or not bool(torch.isfinite(size).all()) or not bool((size > 0).all()):
        raise ValueError(f"a {kind} needs {need[kind]} positive finite size(s), got {size.tolist()}")
    size = size[..., : need[kind]]
    return {"sphere": Sphere, "box": Box, "capsule": Capsule, "cylinder": Cylinder}[kind](size)
