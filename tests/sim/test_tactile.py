"""The tactile sensor's force field and the contact shapes' SDFs, against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from sim2real.sim.sdf import Box, Capsule, Cylinder, SdfGrid, Sphere, evaluate, sdf_for
from sim2real.sim.tactile import ContactShape, PadGeometry, RigidState, TactileConstants, TactileSensor

EYE = torch.eye(3)


def _rot_y(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _state(pos: tuple[float, ...], rot: torch.Tensor = EYE, linvel: tuple[float, ...] | None = None,
           angvel: tuple[float, ...] | None = None, e: int = 1, k: int = 1) -> RigidState:  # fmt: skip
    def vec(v: tuple[float, ...] | None) -> torch.Tensor | None:
        return None if v is None else torch.tensor(v, dtype=torch.float32).expand(e, k, 3).clone()

    return RigidState(vec(pos), rot.expand(e, k, 3, 3).clone(), vec(linvel), vec(angvel))  # type: ignore[arg-type]


def _slab(depth: float, linvel: tuple[float, ...] | None = None, e: int = 1) -> ContactShape:
    """A wide box whose bottom face is ``depth`` below the pad's face (pressed flat into the gel)."""
    return ContactShape(Box(torch.tensor([0.05, 0.05, 0.01])), _state((0.0, 0.0, 0.01 - depth), linvel=linvel, e=e))


def test_a_flat_press_gives_uniform_normal_forces_of_k_n_times_depth() -> None:
    sensor = TactileSensor(constants=TactileConstants(k_n=300.0))
    r = sensor.read(_state((0.0, 0.0, 0.0), k=2), [_slab(0.001)])
    assert r.depth.shape == (1, 2, 25, 20) and r.force.shape == (1, 2, 25, 20, 3)
    assert torch.allclose(r.depth, torch.full_like(r.depth, 0.001), atol=1e-7)
    assert torch.allclose(r.force[..., 0], torch.full_like(r.depth, 0.3), atol=1e-5)  # 300 N/m * 1 mm
    assert r.force[..., 1:].abs().max() == 0 and bool(r.in_contact.all())


def test_no_contact_gives_exactly_zero() -> None:
    r = TactileSensor().read(_state((0.0, 0.0, 0.0)), [_slab(-0.0005, linvel=(0.1, 0.0, -0.2))])  # 0.5 mm above
    assert r.depth.abs().max() == 0 and r.force.abs().max() == 0 and not bool(r.in_contact.any())


def test_sliding_gives_shear_against_the_slip_capped_by_the_friction_cone() -> None:
    c = TactileConstants(k_n=100.0, k_t=0.1, mu=0.5)
    sensor = TactileSensor(constants=c)
    pad = _state((0.0, 0.0, 0.0))
    slow = sensor.read(pad, [_slab(0.001, linvel=(-0.2, 0.0, 0.0))])  # the object slides along -x: the gel slips +x
    f_n = 100.0 * 0.001
    assert torch.allclose(slow.force[..., 1], torch.full_like(slow.depth, -0.1 * 0.2), atol=1e-6)  # k_t |v_t| < mu f_n
    assert slow.force[..., 2].abs().max() < 1e-7 and torch.allclose(slow.force[..., 0], torch.full_like(slow.depth, f_n))
    fast = sensor.read(pad, [_slab(0.001, linvel=(0.0, 3.0, 0.0))])  # the gel slips -y: shear +y, at the cap
    assert torch.allclose(fast.force[..., 2], torch.full_like(fast.depth, 0.5 * f_n), atol=1e-6)
    moving_pad = sensor.read(_state((0.0, 0.0, 0.0), linvel=(0.0, 3.0, 0.0)), [_slab(0.001)])  # the same slip
    assert torch.allclose(moving_pad.force[..., 2], -fast.force[..., 2], atol=1e-6)


def test_a_tilted_press_gives_the_expected_depth_gradient() -> None:
    angle, depth0 = 0.02, 0.001  # a slab tilted about y: the depth grows linearly along the pad's x
    slab = ContactShape(Box(torch.tensor([0.05, 0.05, 0.01])), _state((0.0, 0.0, 0.0), _rot_y(angle)))
    slab.state.pos[..., 2] = 0.01 / math.cos(angle) - depth0
    sensor = TactileSensor(constants=TactileConstants(k_n=1.0))
    r = sensor.read(_state((0.0, 0.0, 0.0)), [slab])
    x = sensor.taxels[:, 0].reshape(25, 20)
    expected = ((depth0 + math.tan(angle) * x) * math.cos(angle)).clamp_min(0.0)  # distance to the tilted face
    assert torch.allclose(r.depth[0, 0], expected, atol=2e-7)
    slope = (r.depth[0, 0, :, -1] - r.depth[0, 0, :, 0]) / (x[0, -1] - x[0, 0])
    assert torch.allclose(slope, torch.full_like(slope, math.sin(angle)), rtol=1e-3)
    shear_x = r.force[0, 0, ..., 1] / r.force[0, 0, ..., 0].clamp_min(1e-12)  # the tilted normal pushes along -x
    assert torch.allclose(shear_x[r.depth[0, 0] > 0], torch.tensor(-math.tan(angle)), rtol=1e-3)


def test_a_rotating_pad_slips_at_each_taxel_by_w_cross_r() -> None:
    sensor = TactileSensor(PadGeometry(rows=3, cols=3), TactileConstants(k_n=100.0, k_t=1.0, mu=100.0))
    r = sensor.read(_state((0.0, 0.0, 0.0), angvel=(0.0, 0.0, 1.0)), [_slab(0.001)])
    v = torch.cross(torch.tensor([0.0, 0.0, 1.0]).expand(9, 3), sensor.taxels, dim=-1)  # gel velocity at the taxels
    assert torch.allclose(r.force[0, 0, ..., 1:].reshape(9, 2), -v[:, :2], atol=1e-7)  # k_t = 1: shear = -v_t


def test_per_env_constants_and_a_sphere_press() -> None:
    c = TactileConstants.sample(3, {"k_n": (150.0, 350.0)}, torch.Generator().manual_seed(0))
    sensor = TactileSensor(PadGeometry(rows=5, cols=5, size_m=(0.02, 0.02)), c)
    radius, depth = 0.01, 0.002
    ball = ContactShape(Sphere(torch.tensor([radius])), _state((0.0, 0.0, radius - depth), e=3))
    r = sensor.read(_state((0.0, 0.0, 0.0), e=3), [ball])
    rho = sensor.taxels[:, :2].norm(dim=-1).reshape(5, 5)
    expected = (radius - torch.sqrt(rho**2 + (radius - depth) ** 2)).clamp_min(0.0)  # along the sphere's normal
    assert torch.allclose(r.depth, expected.expand(3, 1, 5, 5), atol=1e-7)
    centre = r.force[:, 0, 2, 2, 0]
    assert torch.allclose(centre, torch.as_tensor(c.k_n) * depth) and len(set(centre.tolist())) == 3
    with pytest.raises(ValueError, match="unknown tactile constants"):
        TactileConstants.sample(2, {"stiffness": (1.0, 2.0)})


def test_bad_input_is_a_clear_error() -> None:
    sensor = TactileSensor()
    pad = _state((0.0, 0.0, 0.0))
    bad = _state((0.0, 0.0, 0.0))
    bad.rot[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="pads: rot has NaN"):
        sensor.read(bad, [_slab(0.001)])
    with pytest.raises(ValueError, match="shape 0: pos must be"):
        sensor.read(pad, [ContactShape(Sphere(torch.tensor([0.01])), RigidState(torch.zeros(1, 3), EYE))])
    with pytest.raises(ValueError, match="at least one contact shape"):
        sensor.read(pad, [])
    with pytest.raises(ValueError, match="no analytic SDF for a 'mesh'"):
        sdf_for("mesh", torch.tensor([1.0]))
    with pytest.raises(ValueError, match="positive finite"):
        sdf_for("box", torch.tensor([0.01, math.nan, 0.01]))
    with pytest.raises(ValueError, match="larger than twice the margin"):
        PadGeometry(size_m=(0.005, 0.02))
    with pytest.raises(ValueError, match="k_n must be finite"):
        TactileConstants(k_n=-1.0)


@pytest.mark.parametrize(
    ("sdf", "point", "phi", "normal"),
    [
        (Sphere(torch.tensor([0.5])), (0.0, 2.0, 0.0), 1.5, (0.0, 1.0, 0.0)),
        (Box(torch.tensor([1.0, 2.0, 3.0])), (2.0, 0.0, 0.0), 1.0, (1.0, 0.0, 0.0)),
        (Box(torch.tensor([1.0, 2.0, 3.0])), (2.0, 3.0, 0.0), math.sqrt(2.0), (1 / math.sqrt(2), 1 / math.sqrt(2), 0.0)),
        (Box(torch.tensor([1.0, 2.0, 3.0])), (0.0, -1.5, 0.0), -0.5, (0.0, -1.0, 0.0)),
        (Capsule(torch.tensor([0.5, 1.0])), (0.0, 0.0, 2.0), 0.5, (0.0, 0.0, 1.0)),
        (Capsule(torch.tensor([0.5, 1.0])), (0.2, 0.0, 0.3), -0.3, (1.0, 0.0, 0.0)),
        (Cylinder(torch.tensor([0.5, 1.0])), (0.0, 1.5, 0.5), 1.0, (0.0, 1.0, 0.0)),
        (Cylinder(torch.tensor([0.5, 1.0])), (0.1, 0.0, -0.9), -0.1, (0.0, 0.0, -1.0)),
        (Cylinder(torch.tensor([0.5, 1.0])), (1.5, 0.0, 2.0), math.sqrt(2.0), (1 / math.sqrt(2), 0.0, 1 / math.sqrt(2))),
    ],
)  # fmt: skip
def test_primitive_sdfs(sdf, point, phi, normal) -> None:  # noqa: ANN001
    got_phi, got_n = evaluate(sdf, torch.tensor([[point]]))
    assert got_phi.item() == pytest.approx(phi, abs=1e-6) and got_n[0, 0].tolist() == pytest.approx(normal, abs=1e-6)


def _cube_mesh(half: float) -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.tensor([[x, y, z] for x in (-half, half) for y in (-half, half) for z in (-half, half)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]  # outward
    faces = [(a, b, c) for a, b, c, d in quads] + [(a, c, d) for a, b, c, d in quads]
    return v, torch.tensor(faces)


def test_a_mesh_sdf_grid_matches_the_analytic_box() -> None:
    v, f = _cube_mesh(0.01)
    grid = SdfGrid.from_mesh(v, f, resolution=41, padding=0.25)
    pts = (torch.rand(1, 500, 3, generator=torch.Generator().manual_seed(1)) - 0.5) * 0.028
    phi, n = evaluate(grid, pts)
    ref_phi, ref_n = evaluate(Box(torch.tensor([0.01, 0.01, 0.01])), pts)
    assert (phi - ref_phi).abs().max() < 6e-4  # the grid spacing is 0.75 mm
    near_faces = (ref_phi.abs() < 0.002) & ((pts.abs() < 0.008).sum(-1) == 2)  # away from edges
    assert ((n * ref_n).sum(-1)[near_faces] > 0.95).all()
    with pytest.raises(ValueError, match="vertices \\(V, 3\\)"):
        SdfGrid.from_mesh(torch.zeros(4, 2), f)


def test_point_triangle_distance_against_dense_sampling() -> None:
    from sim2real.sim.sdf import _triangle_distance

    g = torch.Generator().manual_seed(3)
    tri = torch.tensor([[[0.2, 0.1, 0.5], [1.3, -0.4, 0.2], [0.1, 0.9, -0.7]]], dtype=torch.float64)
    p = torch.randn(500, 3, generator=g, dtype=torch.float64)
    u = torch.rand(200_000, 2, generator=g, dtype=torch.float64)
    u[u.sum(1) > 1] = 1 - u[u.sum(1) > 1]  # uniform on the triangle
    t = tri[0]
    dense = torch.cdist(p, t[0] + u[:, :1] * (t[1] - t[0]) + u[:, 1:] * (t[2] - t[0])).min(1).values
    d = _triangle_distance(p, tri)
    assert (d <= dense + 1e-9).all() and (dense - d).max() < 0.01  # exact below the samples' spacing


@pytest.mark.parametrize(
    ("kind", "size", "pos", "euler"),
    [("sphere", (0.005,), (0.002, -0.001, 0.0059), (0, 0, 0)),
     ("cylinder", (0.006, 0.005), (0.001, 0.002, 0.0065), (8, -5, 0)),
     ("capsule", (0.004, 0.006), (-0.002, 0.001, 0.0051), (90, 0, 20))],
)  # fmt: skip
def test_depths_match_mujocos_tactile_sensor(kind: str, size: tuple[float, ...], pos: tuple[float, ...],
                                             euler: tuple[float, ...]) -> None:  # fmt: skip
    """MuJoCo's built-in ``tactile`` sensor (per-taxel depth = -SDF of the touching geom) on the same contact."""
    mujoco = pytest.importorskip("mujoco")
    np = pytest.importorskip("numpy")
    hx, hy, hz = 0.010, 0.0125, 0.002
    xml = f"""<mujoco><option gravity="0 0 0"/>
      <asset><mesh name="plate" builtin="plate" params="8 10" scale="{hx} {hy} {hz}"/></asset>
      <worldbody>
        <body name="pad" pos="0.1 -0.05 0.3" euler="10 -20 30">
          <geom type="box" size="{hx} {hy} {hz}"/>
          <geom name="taxels" type="mesh" mesh="plate" contype="0" conaffinity="0" euler="180 0 0"/>
          <body name="obj" pos="{pos[0]} {pos[1]} {pos[2]}" euler="{euler[0]} {euler[1]} {euler[2]}">
            <joint type="slide" axis="0 0 1"/><geom name="obj" type="{kind}" size="{" ".join(map(str, size))}"/>
          </body>
        </body>
      </worldbody>
      <sensor><tactile name="tac" geom="taxels" mesh="plate"/></sensor></mujoco>"""  # taxels on the +z face
    m = mujoco.MjModel.from_xml_string(xml)
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    sid = m.sensor("tac").id
    mesh, geom, nv = m.sensor_objid[sid], m.sensor_refid[sid], m.mesh_vertnum[m.sensor_objid[sid]]
    rot = d.geom_xmat[geom].reshape(3, 3)
    taxels = d.geom_xpos[geom] + m.mesh_vert[m.mesh_vertadr[mesh] : m.mesh_vertadr[mesh] + nv] @ rot.T  # world
    theirs = d.sensordata[m.sensor_adr[sid] : m.sensor_adr[sid] + nv]  # the depth block
    pad_pos, pad_rot = d.xpos[m.body("pad").id], d.xmat[m.body("pad").id].reshape(3, 3)
    obj = m.geom("obj").id

    def t(a: object) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=torch.float64)

    pads = RigidState(t(pad_pos).reshape(1, 1, 3), t(pad_rot).reshape(1, 1, 3, 3))
    shape = ContactShape(sdf_for(kind, t(size)), RigidState(t(d.geom_xpos[obj]).reshape(1, 1, 3),
                                                            t(d.geom_xmat[obj]).reshape(1, 1, 3, 3)))  # fmt: skip
    ours = TactileSensor().depth_at(pads, [shape], t((taxels - pad_pos) @ pad_rot))[0, 0]
    assert (t(theirs) > 0).sum() >= 4 and torch.allclose(ours, t(theirs), atol=1e-9)
