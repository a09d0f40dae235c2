"""Tactile RGB images: the background without contact, the shading of a tilted press, augmentation, files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sim2real.sim.sdf import Box, Sphere
from sim2real.sim.tactile import ContactShape, PadGeometry, RigidState
from sim2real.sim.tactile_image import DEFAULT_CALIBRATION, Augmentation, Calibration, TactileCamera, TactileImageConfig

EYE = torch.eye(3)


def _pads(e: int = 1, p: int = 1) -> RigidState:
    return RigidState(torch.zeros(e, p, 3), EYE.expand(e, p, 3, 3).clone())


def _shape(sdf, pos: tuple[float, float, float], rot: torch.Tensor = EYE, e: int = 1) -> ContactShape:  # noqa: ANN001
    return ContactShape(sdf, RigidState(torch.tensor(pos).expand(e, 1, 3).clone(), rot.expand(e, 1, 3, 3).clone()))


def _rot_y(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def test_no_contact_gives_exactly_the_background() -> None:
    cam = TactileCamera()
    away = _shape(Sphere(torch.tensor([0.004])), (0.0, 0.0, 0.0045), e=2)  # 0.5 mm above the gel
    img = cam.render(_pads(2, 2), [away])
    assert img.shape == (2, 2, 3, 80, 60) and torch.equal(img, cam.background.expand_as(img))
    diff = TactileCamera(config=TactileImageConfig(difference=True)).render(_pads(2, 2), [away])
    assert diff.abs().max() == 0


def test_a_tilted_press_shades_the_gel_by_its_slope_bin() -> None:
    cam = TactileCamera(PadGeometry(), TactileImageConfig(difference=True))
    images = {}
    for angle in (0.05, -0.05):
        slab = _shape(Box(torch.tensor([0.05, 0.05, 0.01])), (0.0, 0.0, 0.0), _rot_y(angle))
        slab.state.pos[..., 2] = 0.01 / math.cos(angle) - 0.002  # the whole face pressed, deeper towards +-x
        h = cam.height(_pads(), [slab])[0, 0]
        slope = (h[:, 1:] - h[:, :-1]) / cam.pitch_mm[1]  # along x, mm per mm
        assert torch.allclose(slope[2:-2, 2:-2], torch.tensor(math.sin(angle)), rtol=1e-3)
        images[angle] = cam.render(_pads(), [slab])[0, 0]
        # every inner pixel is in one bin: magnitude atan(sin a), direction 0 (+x) or pi (-x)
        i_mag = math.ceil(math.atan(abs(math.sin(angle))) / (math.pi / 2) * (cam.mag_bins - 1))
        i_dir = min(int(((0.0 if angle > 0 else math.pi) + math.pi) / (2 * math.pi) * cam.dir_bins), cam.dir_bins - 1)
        coef = cam.table[i_mag * cam.dir_bins + i_dir].reshape(3, 6)
        expected = torch.einsum("ck,kyx->cyx", coef, cam.features)
        assert i_mag > 0 and torch.allclose(images[angle][:, 2:-2, 2:-2], expected[:, 2:-2, 2:-2], atol=1e-4)
    assert (images[0.05] - images[-0.05]).abs().max() > 5  # the lights off the x axis tell the two slopes apart


def test_a_ball_press_lights_up_around_the_contact_only() -> None:
    cam = TactileCamera(config=TactileImageConfig(difference=True))
    ball = _shape(Sphere(torch.tensor([0.004])), (0.002, 0.003, 0.004 - 0.0008))
    change = cam.render(_pads(), [ball])[0, 0].abs().sum(0)  # (80, 60)
    ys, xs = torch.nonzero(change > 1, as_tuple=True)
    y_mm = (ys.float() + 0.5) * cam.pitch_mm[0] - 12.5
    x_mm = (xs.float() + 0.5) * cam.pitch_mm[1] - 10.0
    r = torch.sqrt((x_mm - 2) ** 2 + (y_mm - 3) ** 2)  # contact radius sqrt(2 R d - d^2) = 2.4 mm, plus the blur
    assert len(ys) > 50 and r.max() < 2.4 + 2 * 0.34 + 0.5  # 2 pixels of blur, a pixel's half diagonal
    assert abs(x_mm.mean().item() - 2) < 0.3 and abs(y_mm.mean().item() - 3) < 0.3


def test_augmentation() -> None:
    cam = TactileCamera()
    ball = _shape(Sphere(torch.tensor([0.004])), (0.0, 0.0, 0.0032), e=4)
    img = cam.render(_pads(4, 2), [ball])
    g = torch.Generator().manual_seed(0)
    assert torch.equal(cam.augment(img, Augmentation(), g), img)
    noisy = cam.augment(img, Augmentation(noise=4.0), g)
    assert 3.5 < (noisy - img).std().item() < 4.5 and noisy.min() >= 0 and noisy.max() <= 255
    gains = cam.augment(img, Augmentation(brightness=0.2, offset=10.0), g) - img
    assert gains.abs().max() > 5 and len({round(v, 3) for v in gains[:, :, 0, 40, 30].flatten().tolist()}) == 8
    blurred = cam.augment(img, Augmentation(blur=2.0), g)
    assert blurred.shape == img.shape and (blurred.diff(dim=-1).abs().mean() < img.diff(dim=-1).abs().mean())


def test_calibration_files(tmp_path: Path) -> None:
    cal = Calibration.load()
    assert cal.table.shape[2:] == (3, 6) and cal.table[0].abs().max() == 0  # the flat bin changes nothing
    cal.save(tmp_path / "c.npz")
    again = Calibration.load(tmp_path / "c.npz")
    assert torch.equal(again.table, cal.table) and torch.equal(again.background, cal.background)
    with pytest.raises(FileNotFoundError):
        Calibration.load(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a tactile calibration"):
        TactileCamera(config=TactileImageConfig(calibration=str(tmp_path / "bad.npz")))
    with pytest.raises(ValueError, match="\\(mag_bins, dir_bins, 3, 6\\)"):
        Calibration(torch.zeros(2, 3, 3, 5), cal.background)
    with pytest.raises(ValueError, match="at least 5 x 5"):
        TactileImageConfig(rows=4)
    assert DEFAULT_CALIBRATION.is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU visible to torch")
def test_cpu_and_cuda_agree() -> None:
    ball = _shape(Sphere(torch.tensor([0.004])), (0.001, -0.002, 0.0033), e=3)
    cam = TactileCamera()
    cpu = cam.render(_pads(3, 2), [ball])
    to = lambda s: RigidState(s.pos.cuda(), s.rot.cuda())  # noqa: E731
    gpu = cam.render(to(_pads(3, 2)), [ContactShape(Sphere(torch.tensor([0.004]).cuda()), to(ball.state))])
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-3)


def test_compiled_and_eager_agree() -> None:
    """``compile=True`` (the fast path, fused by torch.compile) gives the eager figures."""
    from sim2real.sim.tactile import TactileSensor

    g = torch.Generator().manual_seed(0)
    pads = RigidState(torch.zeros(3, 2, 3), EYE.expand(3, 2, 3, 3).clone(), 0.01 * torch.randn(3, 2, 3, generator=g),
                      torch.randn(3, 2, 3, generator=g))  # fmt: skip
    ball = _shape(Sphere(torch.tensor([0.004])), (0.001, -0.002, 0.0033), e=3)
    ball.state.linvel = 0.02 * torch.randn(3, 1, 3, generator=g)
    eager, fused = TactileSensor(), TactileSensor(compile=True)
    a, b = eager.read(pads, [ball]), fused.read(pads, [ball])
    assert a.depth.max() > 0 and torch.allclose(a.depth, b.depth) and torch.allclose(a.force, b.force, atol=1e-7)
    img_a, img_b = TactileCamera().render(pads, [ball]), TactileCamera(compile=True).render(pads, [ball])
    assert torch.allclose(img_a, img_b, atol=1e-3)


def test_the_shipped_calibration_is_what_its_script_makes() -> None:
    import importlib.util

    from helpers import REPO

    spec = importlib.util.spec_from_file_location("make_cal", REPO / "scripts" / "make_tactile_calibration.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    shipped = Calibration.load()
    made = script.make(*shipped.table.shape[:2], *shipped.background.shape[:2])
    assert torch.equal(made.table, shipped.table) and torch.equal(made.background, shipped.background)
