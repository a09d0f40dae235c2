"""``sim2real list``, ``sim2real train`` and ``sim2real demo`` (train, export, evaluate, microcontroller)."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from sim2real.cli.common import print_summary

if TYPE_CHECKING:
    from sim2real.policies.runner import TrainConfig
    from sim2real.sim.registry import TaskSpec

#: Settings that follow the run's own ``num_envs``/``device`` (``--num-envs``, ``--device``).
_DERIVED = {"env.num_envs": "num_envs (--num-envs)", "env.device": "device (--device)"}


def cmd_list(_: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from sim2real.sim.registry import list_tasks

    table = Table(title="sim2real tasks")
    for col in ("task", "description"):
        table.add_column(col)
    for entry in list_tasks():
        table.add_row(entry.name, entry.description)
    Console().print(table)
    return 0


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The task's tuned defaults with the command line's flags and ``--set KEY=VALUE`` overrides applied."""
    from sim2real.core.config import apply_overrides, parse_overrides
    from sim2real.sim.registry import get_task

    spec = get_task(args.task)
    cfg = _stage_config(spec, args)
    flags = {
        "seed": args.seed, "num_envs": args.num_envs, "device": args.device, "total_env_steps": args.total_steps,
        "name": args.name, "log_dir": args.log_dir,
    }  # fmt: skip
    cfg = replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    overrides = parse_overrides(args.overrides)
    for key in overrides:
        if key in _DERIVED:
            raise ValueError(f"--set {key}: the env's setting follows the run's; set {_DERIVED[key]} instead")
    return apply_overrides(cfg, overrides)


def _stage_config(spec: TaskSpec, args: argparse.Namespace) -> TrainConfig:
    """The defaults of the stage asked for: the task's run (``teacher``) or its distilled student."""
    stage, teacher = getattr(args, "stage", "teacher"), getattr(args, "teacher", None)
    critic, dagger = getattr(args, "critic", None), getattr(args, "dagger_steps", None)
    if stage == "teacher":
        if teacher or critic or dagger is not None:
            raise ValueError("--teacher, --critic and --dagger-steps belong to --stage student")
        return spec.train_defaults()
    if spec.student_defaults is None:
        raise ValueError(f"task {spec.name!r} has no student stage (tasks with one: peg-insert)")
    if not teacher:
        raise ValueError("--stage student needs --teacher RUN (the teacher's run directory or checkpoint)")
    if not Path(teacher).exists():
        raise FileNotFoundError(f"--teacher {teacher}: no such run directory or checkpoint")
    cfg = spec.student_defaults()
    d = replace(cfg.distill, teacher=str(teacher))
    d = replace(d, critic=critic or d.critic, dagger_env_steps=d.dagger_env_steps if dagger is None else dagger)
    return replace(cfg, distill=d)


def cmd_train(args: argparse.Namespace) -> int:
    from sim2real.core.config import config_to_dict, to_yaml
    from sim2real.policies.runner import RunComplete, Runner

    if args.resume:
        runner = Runner.resume(args.resume, total_env_steps=args.total_steps, quiet=args.quiet)
    else:
        cfg = train_config(args)
        if args.print_config:
            print(to_yaml(config_to_dict(cfg)), end="")
            return 0
        runner = Runner(cfg, quiet=args.quiet)
    try:
        summary = runner.train()
    except RunComplete as done:
        print(done)
        return 0
    print_summary("training summary", summary)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from sim2real.eval.policy import evaluate_policy_file, print_report
    from sim2real.export.onnx import export_onnx
    from sim2real.policies.runner import Runner
    from sim2real.tasks.quadrotor_hover import train_defaults

    t0 = time.time()
    cfg = replace(train_defaults(), seed=args.seed, log_dir=args.log_dir, name="demo")
    runner = Runner(cfg, quiet=args.quiet)
    summary = runner.train()
    print_summary("training summary", summary)
    onnx_path = export_onnx(runner.run_dir)
    print(f"exported {onnx_path}")
    spec, results = evaluate_policy_file(onnx_path, 200, 0)
    print_report(spec, results)
    _demo_microcontroller(onnx_path)
    print(f"demo finished in {time.time() - t0:.0f} s; run directory {runner.run_dir}")
    return 0


def _demo_microcontroller(onnx_path: Path) -> None:
    """The demo's last step: C export (checked on the host) and 10 s of HIL flight on an emulated STM32F405."""
    import shutil

    from sim2real.cli import deploy
    from sim2real.cli.parser import build_parser

    missing = [t for t in ("gcc", "arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        print(f"skipping the microcontroller step: {', '.join(missing)} not installed (make mcu-deps)")
        return
    parser = build_parser()
    deploy.cmd_export(parser.parse_args(["export", "c", str(onnx_path)]))
    print("hardware in the loop: 10 s of flight, every action from the emulated STM32F405 (QEMU netduinoplus2)")
    deploy.cmd_hil(parser.parse_args(["hil", str(onnx_path), "--qemu", "netduinoplus2"]))
    print("(HIL flies one episode: it checks that the device flies exactly as onnxruntime does; the hover "
          "criterion itself is judged on the 200 episodes above)")
