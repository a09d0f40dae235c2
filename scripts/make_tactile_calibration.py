"""Make the default tactile calibration (``sim2real/sim/data/tactile_calibration.npz``) from a model of the sensor.

A GelSight-type sensor lights its gel with three coloured LEDs from the sides; the camera behind it sees each
colour's shading of the gel's surface. Taxim (Si & Yuan, RA-L 2022) and TacSL render an image from a calibration
table: for each bin of the surface slope (magnitude x direction) and colour channel, a quadratic polynomial of the
pixel position gives the intensity change to the no-contact image. A real sensor's table comes from pressing a ball
of known radius into it and fitting those polynomials; this script builds the table from a physical model instead,
so the package ships a plausible sensor without a measured one:

* the gel's normal for slope angle ``theta`` and direction ``phi``: ``n = (-sin theta cos phi, -sin theta sin phi,
  cos theta)``;
* three lights, red, green and blue, at azimuths 90, 210 and 330 degrees and elevation 35 degrees; Lambertian
  shading ``gain * max(n . l_c, 0)``, minus the flat gel's, is the change ``s_c`` at the bin's centre (bin 0 is
  the flat gel: 0, so a gel without contact shows the background exactly);
* each light is brighter on its side and the image darker towards the corners:
  ``I_c(x, y) = s_c (1 + a_c . (x, y) - b (x^2 + y^2))`` with ``a_c = 0.3 (cos az_c, sin az_c)``, ``b = 0.2``,
  i.e. the coefficients ``[x^2, y^2, xy, x, y, 1] = s_c [-b, -b, 0, a_cx, a_cy, 1]``;
* the background: a base colour per channel with the same light falloffs, a little fixed sensor noise, 8-bit.

    python scripts/make_tactile_calibration.py [--mag-bins 61] [--dir-bins 120] [--rows 80] [--cols 60] [--out PATH]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from sim2real.sim.tactile_image import DEFAULT_CALIBRATION, Calibration

AZIMUTH_DEG = (90.0, 210.0, 330.0)  # red, green, blue
ELEVATION_DEG = 35.0
GAIN = 160.0  # intensity per unit of Lambertian shading
SIDE, FALLOFF = 0.3, 0.2
BASE = (118.0, 126.0, 134.0)  # the no-contact gel's colour at the centre


def make(mag_bins: int, dir_bins: int, rows: int, cols: int, seed: int = 0) -> Calibration:
    """The modelled calibration (see the module's docstring)."""
    az = torch.tensor(AZIMUTH_DEG) * math.pi / 180
    el = math.radians(ELEVATION_DEG)
    lights = torch.stack((math.cos(el) * torch.cos(az), math.cos(el) * torch.sin(az), torch.full((3,), math.sin(el))), -1)
    theta = (torch.arange(mag_bins) - 0.5).clamp_min(0) * (math.pi / 2) / (mag_bins - 1)  # bin centres; 0: flat
    phi = -math.pi + (torch.arange(dir_bins) + 0.5) * (2 * math.pi) / dir_bins
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    normal = torch.stack((-torch.sin(t) * torch.cos(p), -torch.sin(t) * torch.sin(p), torch.cos(t)), -1)  # (M, D, 3)
    flat = lights[:, 2].clamp_min(0)  # n = z
    shade = GAIN * ((normal @ lights.T).clamp_min(0) - flat)  # (M, D, 3): s_c per bin
    side = SIDE * torch.stack((torch.cos(az), torch.sin(az)), -1)  # (3, 2)
    shape = torch.stack((torch.full((3,), -FALLOFF), torch.full((3,), -FALLOFF), torch.zeros(3), side[:, 0], side[:, 1],
                         torch.ones(3)), -1)  # fmt: skip  # (3, 6)
    table = shade[..., None] * shape  # (M, D, 3, 6)
    y, x = torch.meshgrid(torch.linspace(-1, 1, rows), torch.linspace(-1, 1, cols), indexing="ij")
    g = torch.Generator().manual_seed(seed)
    channels = []
    for c in range(3):
        light = 1 + 0.5 * (side[c, 0] * x + side[c, 1] * y) - 0.5 * FALLOFF * (x * x + y * y)
        channels.append(BASE[c] * light + 1.5 * torch.randn(rows, cols, generator=g))
    background = torch.stack(channels, -1).round().clamp(0, 255)
    return Calibration(table.float(), background)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mag-bins", type=int, default=61,
                    help="bins of the slope's magnitude: 0 = flat, the others split (0, pi/2]")
    ap.add_argument("--dir-bins", type=int, default=120, help="bins of the slope's direction over [-pi, pi]")
    ap.add_argument("--rows", type=int, default=80, help="background image rows (the pad's y)")
    ap.add_argument("--cols", type=int, default=60, help="background image columns (the pad's x)")
    ap.add_argument("--out", type=Path, default=DEFAULT_CALIBRATION)
    args = ap.parse_args()
    if min(args.mag_bins, args.dir_bins) < 2 or min(args.rows, args.cols) < 5:
        ap.error("need at least 2 bins each and a 5 x 5 background")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    make(args.mag_bins, args.dir_bins, args.rows, args.cols).save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
