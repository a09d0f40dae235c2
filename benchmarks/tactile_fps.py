"""Tactile frames per second: TacSL's force field and RGB image of two pads gripping a peg, batched over envs.

Each env holds a cylinder (a peg, 8 mm across) between two pads pressed 0.5 mm into it, with a per-env offset, tilt
and slip velocity. A frame is one pad's reading (a 20 x 25 taxel force field, or an 80 x 60 RGB image), so an env
gives two per step. Both run eagerly and fused by ``torch.compile`` (compile time reported apart), on this CPU and
on CUDA when torch sees a GPU. Printed beside them: the targets on this CPU at 64 envs (50,000 force-field and 2,000
image frames/s) and TacSL's published figures (Akinola et al. 2024: image 1,631 frames/s at 512 envs on an RTX 3090;
Taxim on a CPU 7.28 frames/s).

    python benchmarks/tactile_fps.py [--envs 16 64 256] [--seconds 3] [--devices cpu cuda] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from sim2real.core.files import write_text_atomic
from sim2real.sim.sdf import Cylinder
from sim2real.sim.tactile import ContactShape, RigidState, TactileSensor
from sim2real.sim.tactile_image import TactileCamera

REPO = Path(__file__).resolve().parents[1]
TARGET_64 = {"force_field": 50_000.0, "image": 2_000.0}
TACSL_IMAGE_3090_512 = 1631.0
TAXIM_CPU = 7.28


def scene(envs: int, device: str, seed: int = 0) -> tuple[RigidState, list[ContactShape]]:
    """Two pads facing each other across a peg of radius 4 mm, pressed 0.5 mm in, per-env offsets and motion."""
    g = torch.Generator().manual_seed(seed)
    radius, press = 0.004, 0.0005
    gap = radius - press  # each pad's face from the peg's axis
    # pad 0 at +y looking along -y, pad 1 at -y looking along +y (pad z = out of the gel, towards the peg)
    rot0 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # pad z -> world -y
    rot1 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # pad z -> world +y
    pos = torch.tensor([[0.0, gap, 0.0], [0.0, -gap, 0.0]]).expand(envs, 2, 3).clone()
    pads = RigidState(pos, torch.stack((rot0, rot1)).expand(envs, 2, 3, 3).clone(),
                      0.01 * torch.randn(envs, 2, 3, generator=g), torch.zeros(envs, 2, 3))  # fmt: skip
    tilt = 0.05 * torch.randn(envs, generator=g)  # about x: the peg leans in the pads' plane
    c, s = torch.cos(tilt), torch.sin(tilt)
    o, i = torch.zeros(envs), torch.ones(envs)
    peg_rot = torch.stack((i, o, o, o, c, -s, o, s, c), -1).reshape(envs, 1, 3, 3)
    peg_pos = torch.cat((0.003 * torch.randn(envs, 1, 1, generator=g), torch.zeros(envs, 1, 2)), -1)
    peg = RigidState(peg_pos, peg_rot, 0.02 * torch.randn(envs, 1, 3, generator=g),
                     0.1 * torch.randn(envs, 1, 3, generator=g))  # fmt: skip

    def to(st: RigidState) -> RigidState:
        return RigidState(*(None if t is None else t.to(device) for t in (st.pos, st.rot, st.linvel, st.angvel)))

    return to(pads), [ContactShape(Cylinder(torch.tensor([radius, 0.02], device=device)), to(peg))]


def frames_per_second(fn: Any, args: tuple, frames: int, seconds: float, device: str) -> float:
    """Pad frames per second of ``fn(*args)`` (``frames`` per call), timed over about ``seconds`` after a warm-up."""
    fn(*args)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(*args)
        calls += 1
    sync()
    return calls * frames / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", nargs="+", type=int, default=[16, 64, 256], help="batch sizes (envs; 2 pads each)")
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    ap.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="cuda is skipped when torch sees no GPU")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "tactile_fps.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for device in args.devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda: skipped (torch sees no GPU)")
            continue
        for compiled in (False, True):
            sensor, camera = TactileSensor(compile=compiled), TactileCamera(compile=compiled)
            for envs in args.envs:
                pads, shapes = scene(envs, device)
                t0 = time.perf_counter()
                sensor.read(pads, shapes), camera.render(pads, shapes)  # compiles for this shape
                first_s = time.perf_counter() - t0
                ff = frames_per_second(sensor.read, (pads, shapes), 2 * envs, args.seconds, device)
                img = frames_per_second(camera.render, (pads, shapes), 2 * envs, args.seconds, device)
                rows.append({"device": device, "compiled": compiled, "envs": envs, "force_field_fps": ff,
                             "image_fps": img, "first_call_s": first_s})  # fmt: skip
                print(f"{device:4s} {'compiled' if compiled else 'eager':8s} {envs:4d} envs: force field {ff:10,.0f}"
                      f" frames/s, image {img:8,.0f} frames/s (first call {first_s:.1f} s)", flush=True)  # fmt: skip
    print(f"\n{'device':6s} {'mode':8s} {'envs':>5s} {'force field/s':>14s} {'x target':>9s} {'image/s':>9s} "
          f"{'x target':>9s} {'x Taxim CPU':>12s} {'x TacSL 3090':>13s}")  # fmt: skip
    for r in rows:
        at64 = r["envs"] == 64 and r["device"] == "cpu"
        ff_t = f"{r['force_field_fps'] / TARGET_64['force_field']:9.2f}" if at64 else f"{'':9s}"
        img_t = f"{r['image_fps'] / TARGET_64['image']:9.2f}" if at64 else f"{'':9s}"
        print(f"{r['device']:6s} {'compiled' if r['compiled'] else 'eager':8s} {r['envs']:5d} "
              f"{r['force_field_fps']:14,.0f} {ff_t} {r['image_fps']:9,.0f} {img_t} "
              f"{r['image_fps'] / TAXIM_CPU:12,.0f} {r['image_fps'] / TACSL_IMAGE_3090_512:13.2f}")  # fmt: skip
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": _cpu_name(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}  # fmt: skip
    write_text_atomic(args.out, json.dumps({"machine": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
