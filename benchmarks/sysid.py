"""The shifted quadrotors of ``config/shifts/``: how the pretrained policy flies them, and what system identification finds.

For each shift (heavier with weaker motors, slower motors, a steady sideways wind, all three):

* the policy of ``tests/data/quadrotor_hover.onnx`` (trained on the nominal model) flies 100 ``nominal`` starts
  for 5 s on the shifted quadrotor (the wind added to each episode's random disturbance): the figures of
  ``sim2real eval`` (left the box, mean error over the last 2 s), against the same episodes on the nominal one;
* 30 s of flight with set-point changes every 2 s (``tasks/quadrotor_hover/flight.py``), then the physics of the
  world model fitted to it (``policies/world_model.py``): fitted factors against the truth, the held-out 50-step
  prediction error of the fitted model against the simulator's.

    python benchmarks/sysid.py [--episodes 100] [--seconds 30] [--seed 0]

Writes ``benchmarks/results/sysid.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from sim2real.core.files import write_text_atomic
from sim2real.core.policy_file import OnnxPolicy
from sim2real.policies.world_model import WorldModelConfig, fit
from sim2real.sim.quadrotor import MODELS
from sim2real.tasks.quadrotor_hover.env import HoverConfig, Shift
from sim2real.tasks.quadrotor_hover.evaluation import hover_metrics, rollout_hover
from sim2real.tasks.quadrotor_hover.flight import fly

REPO = Path(__file__).resolve().parents[1]
SHIFTS = ("heavy_weak", "slow_motors", "wind", "all")


def evaluate(policy: OnnxPolicy, shift: Shift, episodes: int, seed: int) -> dict[str, float]:
    # the shifted physics, and the wind on top of each episode's random disturbance
    m = hover_metrics(rollout_hover(policy, "nominal", episodes, seed, HoverConfig(shift=shift)))
    return {"left_box": m["left_box_fraction"], "error_m": m["pos_error_last2s_m"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    policy = OnnxPolicy(REPO / "tests" / "data" / "quadrotor_hover.onnx")
    nominal = MODELS["crazyflie-paper"]
    weight = nominal.mass * nominal.gravity
    results = {"nominal": evaluate(policy, Shift(), args.episodes, args.seed), "shifts": {}}
    print(f"nominal quadrotor: left the box {results['nominal']['left_box']:.1%}, error {results['nominal']['error_m']:.3f} m")
    header = (f"{'shift':12s} {'left box':>8s} {'error m':>8s} | fitted vs true: {'mass':>13s} {'thrust':>13s} "
              f"{'motor tau':>13s} {'wind N':>15s} | 50-step m fitted / sim   fit s")  # fmt: skip
    print(header)
    for name in SHIFTS:
        shift = Shift.from_yaml(REPO / "config" / "shifts" / f"{name}.yaml")
        flown = evaluate(policy, shift, args.episodes, args.seed)
        flight = fly(policy, args.seconds, shift, seed=args.seed + 1)
        t0 = time.perf_counter()
        _, report = fit([flight], nominal, WorldModelConfig())
        fit_s = time.perf_counter() - t0
        p, err = report.parameters, report.prediction_error
        row = {"shift": {"mass": shift.mass, "thrust": shift.thrust, "motor_tau": shift.motor_tau, "wind": shift.wind},
               "pretrained": flown, "fitted": {k: p[k] for k in ("mass", "thrust", "motor_tau", "torque_coeff",
                                                                 "force_x", "force_y", "force_z")},
               "true_wind_n": [w * weight for w in shift.wind], "prediction_error": err, "fit_s": round(fit_s, 1)}  # fmt: skip
        results["shifts"][name] = row
        print(f"{name:12s} {flown['left_box']:8.1%} {flown['error_m']:8.3f} | "
              f"{p['mass']['mean']:.3f} vs {shift.mass:.2f}  {p['thrust']['mean']:.3f} vs {shift.thrust:.2f}  "
              f"{p['motor_tau']['mean']:.3f} vs {shift.motor_tau:.2f}  {p['force_x']['mean'] * 1e3:6.1f} vs "
              f"{shift.wind[0] * weight * 1e3:5.1f} mN | {err['fitted']['50_step_m']:.4f} / {err['prior']['50_step_m']:.3f}"
              f"   {fit_s:5.1f}")  # fmt: skip
    out = REPO / "benchmarks" / "results" / "sysid.json"
    write_text_atomic(out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
