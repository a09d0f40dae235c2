"""Tactile RGB images as a GelSight-type sensor sees its gel, rendered from the pads' penetration depths (TacSL).

The camera behind the gel sees it lit by coloured lights; where an object presses in, the gel's surface slopes and
the shading changes. Per pad and env, batched in torch (Taxim's polynomial shading, as TacSL uses it):

1. the depth ``d`` of the touching shapes on a ``rows x cols`` pixel grid over the pad's face
   (:func:`~sim2real.sim.tactile.depth_at`; row = the pad's ``y``, column = its ``x``);
2. the gel's height map ``h`` [mm], smoothed by a 5 x 5 binomial kernel (the gel is continuous: it does not
   follow sharp edges);
3. its slope: magnitude ``atan(|grad h|)`` in ``[0, pi/2]`` and direction ``atan2(dh/dy, dh/dx)`` in
   ``[-pi, pi]`` (central differences over the pixel pitch), binned (``mag_bins`` x ``dir_bins``, TacSL: 120 direction
   bins): magnitude bin 0 is the flat gel exactly, bins ``1 .. mag_bins - 1`` split ``(0, pi/2]`` evenly;
4. per pixel and colour channel ``c`` the intensity change ``I_c = [x^2, y^2, xy, x, y, 1] . P_c[bin]`` with
   ``(x, y)`` the pixel's position in ``[-1, 1]`` (the calibration table ``P``: ``(mag_bins, dir_bins, 3, 6)``;
   the flat gel's bin is all zeros);
5. the image ``clip(background + I, 0, 255)``, or the difference ``I`` to the no-contact image.

:class:`Calibration` holds ``P`` and the background; the default one ships with the package
(``sim2real/sim/data/tactile_calibration.npz``, made by ``scripts/make_tactile_calibration.py`` from a model of
three coloured lights: replace it with a real sensor's, measured by pressing a ball of known radius as Taxim does).
:func:`augment` adds training augmentation (colour, noise, blur).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sim2real.core.files import write_bytes_atomic
from sim2real.sim.tactile import (
    ContactShape,
    PadGeometry,
    RigidState,
    check_contact_inputs,
    depth_at,
    maybe_compiled,
)

DEFAULT_CALIBRATION = Path(__file__).resolve().parent / "data" / "tactile_calibration.npz"
_BINOMIAL5 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


@dataclass
class Calibration:
    """A sensor's shading: ``table`` ``(mag_bins, dir_bins, 3, 6)`` and no-contact image ``background`` ``(rows, cols, 3)``.

    The background is in [0, 255]; each table entry holds a colour channel's polynomial (step 4 above).
    """

    table: torch.Tensor
    background: torch.Tensor

    def __post_init__(self) -> None:
        t, b = self.table, self.background
        if t.dim() != 4 or t.shape[2:] != (3, 6) or min(t.shape[:2]) < 1:
            raise ValueError(f"calibration table must be (mag_bins, dir_bins, 3, 6), got {tuple(t.shape)}")
        if b.dim() != 3 or b.shape[2] != 3:
            raise ValueError(f"background must be (rows, cols, 3), got {tuple(b.shape)}")
        if not (bool(torch.isfinite(t).all()) and bool(torch.isfinite(b).all())):
            raise ValueError("calibration has NaN or Inf")

    @classmethod
    def load(cls, path: str | Path = DEFAULT_CALIBRATION) -> Calibration:
        """A calibration file (``.npz`` with ``table`` and ``background``); clear errors when missing or corrupt."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tactile calibration at {path}")
        try:
            with np.load(path) as data:
                return cls(torch.from_numpy(data["table"]).float(), torch.from_numpy(data["background"]).float())
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{path} is not a tactile calibration (.npz with table, background): {err}") from err

    def save(self, path: str | Path) -> None:
        """Write the ``.npz`` atomically (the background rounded to 8-bit, as a camera's)."""
        buf = io.BytesIO()
        background = self.background.round().clamp(0, 255).to(torch.uint8).numpy()
        np.savez_compressed(buf, table=self.table.float().numpy(), background=background)
        write_bytes_atomic(path, buf.getvalue())


@dataclass
class TactileImageConfig:
    """What the camera behind the gel sees (TacSL's policies see 80 x 60 per pad)."""

    rows: int = 80
    """Pixels along the pad's ``y``."""
    cols: int = 60
    """Pixels along the pad's ``x``."""
    difference: bool = False
    """Report the change to the no-contact image (in [-255, 255]) instead of the image."""
    calibration: str = ""
    """A calibration ``.npz`` ('' = the one shipped)."""

    def __post_init__(self) -> None:
        if self.rows < 5 or self.cols < 5:
            raise ValueError(f"a tactile image needs at least 5 x 5 pixels, got {self.rows} x {self.cols}")


@dataclass
class Augmentation:
    """Training augmentation of tactile images, drawn per env and pad (off when all zero)."""

    brightness: float = 0.0
    """Largest relative change of each colour channel's gain (e.g. 0.1 = +-10 %)."""
    offset: float = 0.0
    """Largest added constant per channel [intensity, 0-255]."""
    noise: float = 0.0
    """Standard deviation of per-pixel Gaussian noise [intensity]."""
    blur: float = 0.0
    """Largest Gaussian blur [pixels, sigma]; each image gets a sigma uniform in [0, blur]."""


class TactileCamera:
    """Renders the tactile images of ``P`` pads per env.

    Args:
        pad: the pad's sensing face (the image covers all of it).
        config: resolution, difference images, calibration file.
        compile: fuse the rendering with ``torch.compile`` (as :class:`~sim2real.sim.tactile.TactileSensor`).
    """

    def __init__(self, pad: PadGeometry | None = None, config: TactileImageConfig | None = None,
                 compile: bool = False) -> None:  # fmt: skip
        self.pad = pad or PadGeometry()
        self.config = config or TactileImageConfig()
        self._render = maybe_compiled(_render, compile)
        cal = Calibration.load(self.config.calibration or DEFAULT_CALIBRATION)
        rows, cols = self.config.rows, self.config.cols
        sx, sy = self.pad.size_m
        self.pitch_mm = (1000.0 * sy / rows, 1000.0 * sx / cols)  # (y, x)
        py, px = torch.meshgrid((torch.arange(rows) + 0.5) * sy / rows - sy / 2,
                                (torch.arange(cols) + 0.5) * sx / cols - sx / 2, indexing="ij")  # fmt: skip
        self.pixels = torch.stack((px, py, torch.zeros_like(px)), -1).reshape(-1, 3)  # the pixel centres on the face
        self.table = cal.table.reshape(-1, 18)  # (mag_bins * dir_bins, 3 * 6)
        self.mag_bins, self.dir_bins = cal.table.shape[:2]
        bg = cal.background.permute(2, 0, 1)[None]  # (1, 3, r, c)
        if bg.shape[2:] != (rows, cols):
            bg = F.interpolate(bg, size=(rows, cols), mode="bilinear", align_corners=True)
        self.background = bg[0]  # (3, rows, cols)
        y, x = torch.meshgrid(torch.linspace(-1, 1, rows), torch.linspace(-1, 1, cols), indexing="ij")
        self.features = torch.stack((x * x, y * y, x * y, x, y, torch.ones_like(x)))  # (6, rows, cols)

    def height(self, pads: RigidState, shapes: list[ContactShape]) -> torch.Tensor:
        """The gel's smoothed height map ``(E, P, rows, cols)`` [mm] (how far the shapes press it in)."""
        check_contact_inputs(pads, shapes)
        return _height(self.pixels.to(pads.pos), pads, shapes, self.config.rows, self.config.cols)

    def render(self, pads: RigidState, shapes: list[ContactShape]) -> torch.Tensor:
        """Images ``(E, P, 3, rows, cols)``: in [0, 255], or the change to the background (``difference``).

        Raises:
            ValueError: wrong shapes, NaN/Inf in a pose, or no shape.
        """
        check_contact_inputs(pads, shapes)
        x = pads.pos
        if self.table.device != x.device or self.table.dtype != x.dtype:  # move the constants once
            self.table, self.features, self.background = (t.to(x) for t in (self.table, self.features, self.background))
            self.pixels = self.pixels.to(x)
        return self._render(self.pixels, pads, shapes, self.table, self.features, self.background, self.pitch_mm,
                            self.mag_bins, self.dir_bins, self.config.difference)  # fmt: skip

    def augment(self, images: torch.Tensor, aug: Augmentation, generator: torch.Generator | None = None) -> torch.Tensor:
        """``images`` ``(E, P, 3, rows, cols)`` with colour, noise and blur drawn per image (a new tensor)."""
        return augment(images, aug, generator, clip=not self.config.difference)


def _height(pixels: torch.Tensor, pads: RigidState, shapes: list[ContactShape], rows: int, cols: int) -> torch.Tensor:
    e, p = pads.pos.shape[:2]
    h = 1000.0 * depth_at(pixels, pads, shapes).reshape(e, p, rows, cols)  # [mm]
    return _binomial_blur(_binomial_blur(h, -1), -2)


def _binomial_blur(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The 5-tap binomial ``[1, 4, 6, 4, 1] / 16`` along ``dim``, edges replicated (shifted sums: fuses when compiled)."""
    n = x.shape[dim]
    first, last = x.narrow(dim, 0, 1), x.narrow(dim, n - 1, 1)
    padded = torch.cat((first, first, x, last, last), dim)
    return sum(w * padded.narrow(dim, k, n) for k, w in enumerate(_BINOMIAL5.tolist()))  # type: ignore[return-value]


def _render(pixels: torch.Tensor, pads: RigidState, shapes: list[ContactShape], table: torch.Tensor,
            features: torch.Tensor, background: torch.Tensor, pitch_mm: tuple[float, float], mag_bins: int,
            dir_bins: int, difference: bool) -> torch.Tensor:  # fmt: skip
    """The images of checked inputs (steps 2-5 of the module's docstring); no data-dependent control flow."""
    rows, cols = features.shape[1:]
    h = _height(pixels, pads, shapes, rows, cols)
    e, p = h.shape[:2]
    gy, gx = torch.gradient(h, spacing=pitch_mm, dim=(2, 3))  # dh/dy, dh/dx (central differences)
    mag = torch.atan(torch.sqrt(gx * gx + gy * gy))  # [0, pi/2]
    direction = torch.atan2(gy, gx)  # [-pi, pi]
    i_mag = torch.ceil(mag * ((mag_bins - 1) / (math.pi / 2))).long().clamp(0, mag_bins - 1)  # 0: exactly flat
    i_dir = ((direction + math.pi) * (dir_bins / (2 * math.pi))).long().clamp(0, dir_bins - 1)
    coef = table[i_mag * dir_bins + i_dir].reshape(e, p, rows, cols, 3, 6)
    change = torch.einsum("epyxck,kyx->epcyx", coef, features)  # [x^2, y^2, xy, x, y, 1] . P_c
    return change if difference else (background + change).clamp(0.0, 255.0)


def augment(images: torch.Tensor, aug: Augmentation, generator: torch.Generator | None = None,
            clip: bool = True) -> torch.Tensor:  # fmt: skip
    """Colour gain and offset per channel, Gaussian noise and a Gaussian blur of random width, per image.

    ``images`` ``(..., 3, rows, cols)``; ``clip``: keep the result in [0, 255] (not for difference images).
    """
    lead, (ch, rows, cols) = images.shape[:-3], images.shape[-3:]
    x = images.reshape(-1, ch, rows, cols)
    n = x.shape[0]

    def uniform(*shape: int) -> torch.Tensor:
        return (2 * torch.rand(*shape, generator=generator) - 1).to(x)

    if aug.blur > 0:
        sigma = torch.rand(n, generator=generator).to(x) * aug.blur
        radius = max(1, math.ceil(3 * aug.blur))
        taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        kernel = torch.exp(-0.5 * (taps[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)  # (n, 2r + 1)
        kernel = kernel / kernel.sum(-1, keepdim=True)
        x = _separable_blur(x.reshape(1, n * ch, rows, cols), kernel.repeat_interleave(ch, 0)).reshape(n, ch, rows, cols)
    if aug.brightness > 0:
        x = x * (1 + aug.brightness * uniform(n, ch, 1, 1))
    if aug.offset > 0:
        x = x + aug.offset * uniform(n, ch, 1, 1)
    if aug.noise > 0:
        x = x + aug.noise * torch.randn(x.shape, generator=generator).to(x)
    if clip:
        x = x.clamp(0.0, 255.0)
    return x.reshape(*lead, ch, rows, cols)


def _separable_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Blur ``x`` ``(B, C, H, W)`` along rows and columns, replicating the edges.

    ``kernel``: 1-D, ``(K,)`` for every channel or ``(C, K)`` one per channel.
    """
    c = x.shape[1]
    k = kernel.reshape(-1, kernel.shape[-1])
    k = k.expand(c, -1) if k.shape[0] == 1 else k
    r = k.shape[-1] // 2
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k[:, None, None, :], groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k[:, None, :, None], groups=c)
