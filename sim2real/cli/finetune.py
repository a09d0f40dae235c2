"""``sim2real finetune``: adapt a pretrained policy on a (simulated) real robot (:mod:`sim2real.policies.finetune`)."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from sim2real.cli.common import print_summary


def cmd_finetune(args: argparse.Namespace) -> int:
    from sim2real.core.config import apply_overrides, config_to_dict, parse_overrides, to_yaml
    from sim2real.export.onnx import export_onnx
    from sim2real.policies.finetune import FinetuneConfig, Finetuner, load_pretrained
    from sim2real.sim.safety import SafetyLimits

    if args.real != "quadrotor-hover":
        raise ValueError(f"--real {args.real!r}: the simulated real systems are: quadrotor-hover")
    if not args.max_real_s > 0:
        raise ValueError(f"--max-real-s must be > 0, got {args.max_real_s}")
    from sim2real.tasks.quadrotor_hover.env import Shift
    from sim2real.tasks.quadrotor_hover.flight import SimulatedRobot

    limits = SafetyLimits.from_yaml(args.safety) if args.safety else SafetyLimits()
    cfg = FinetuneConfig(max_real_s=args.max_real_s, limits=limits, seed=args.seed)
    cfg = apply_overrides(cfg, parse_overrides(args.overrides))
    cfg = replace(cfg, seconds_per_iteration=min(cfg.seconds_per_iteration, cfg.max_real_s))
    if args.print_config:
        print(to_yaml(config_to_dict(cfg)), end="")
        return 0
    pretrained = load_pretrained(args.run)
    if pretrained.cfg.task != args.real:
        raise ValueError(f"the pretrained run is for task {pretrained.cfg.task!r}, the real system is {args.real!r}")
    shift = Shift.from_yaml(args.real_params) if args.real_params else Shift()
    out = Path(args.out) if args.out else Path("runs") / "finetune" / f"{time.strftime('%Y%m%d-%H%M%S')}_s{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    policy = Path(args.policy) if args.policy else export_onnx(pretrained.path, out / "pretrained.onnx")
    robot = SimulatedRobot(shift, seed=args.seed, limits=limits, model=pretrained.cfg.env.model)
    robot.deploy(policy)
    finetuner = Finetuner(cfg, pretrained, robot, lambda ckpt, onnx: export_onnx(ckpt, onnx), out, policy,
                          quiet=args.quiet)  # fmt: skip
    report = finetuner.run()
    report["real_system"] = {"shift": config_to_dict(shift), "violation_steps": int(robot.violation_steps),
                             "min_margin": robot.min_margin}  # fmt: skip
    from sim2real.core.files import write_text_atomic

    write_text_atomic(out / "finetune_report.json", json.dumps(report, indent=2, default=float))
    first = report["iterations"][0]["real_error_m"]
    last = report["iterations"][-1]["real_error_m"]
    print_summary("finetuning", {
        "out": str(out), "real seconds": report["real_s"], "iterations": len(report["iterations"]),
        "deployed policies": report["accepted"], "rollbacks": report["rollbacks"],
        "real error first / last flight [m]": f"{first:.4f} / {last:.4f}",
        "safety violations (steps)": int(robot.violation_steps), "smallest safety margin": robot.min_margin,
        "deployed now": report["deployed"],
    })  # fmt: skip
    return 0
