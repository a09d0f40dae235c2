"""``sim2real`` command line: list tasks, train, export, evaluate, launch the ROS 2 nodes, and the one-command demo.

Every failure the user can cause (bad arguments, unknown task, missing/corrupt files, unwritable
directories, NaN policies) ends with one ``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

EXAMPLES = """examples:
  sim2real list
  sim2real train quadrotor-hover --seed 1 --num-envs 32
  sim2real train quadrotor-hover --set sac.batch_size=512 --set env.reward.termination_penalty=50
  sim2real train quadrotor-hover --resume runs/quadrotor-hover/20261121-101500_sac_s0
  sim2real export onnx runs/quadrotor-hover/20261121-101500_sac_s0
  sim2real export c runs/quadrotor-hover/20261121-101500_sac_s0 --target cortex-m4
  sim2real export firmware runs/quadrotor-hover/20261121-101500_sac_s0 --board netduinoplus2 --verify
  sim2real hil runs/quadrotor-hover/20261121-101500_sac_s0 --qemu netduinoplus2
  sim2real hil runs/quadrotor-hover/20261121-101500_sac_s0 --port /dev/ttyACM0
  sim2real eval runs/quadrotor-hover/20261121-101500_sac_s0 --episodes 200
  sim2real launch launch/quadrotor_sim.launch.xml policy:=runs/quadrotor-hover/20261121-101500_sac_s0/exported/policy.onnx
  sim2real launch quadrotor_sim.launch.xml policy:=policy.onnx namespace:=cf2 --print
  sim2real demo
"""

LAUNCH_EXAMPLES = """examples:
  sim2real launch launch/quadrotor_sim.launch.xml policy:=policy.onnx                # until Ctrl-C
  sim2real launch quadrotor_sim.launch.xml policy:=policy.onnx --print               # show, start nothing
  sim2real launch quadrotor_sim.launch.xml policy:=policy.onnx seed:=3 --duration 30 # scripted run
  sim2real launch quadrotor_robot.launch.xml policy:=policy.onnx odom_topic:=/mocap/cf1/odom --exit-on-failure
"""


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sim2real",
        description="Train control policies in batched simulators, export them (ONNX, C, firmware), evaluate them "
        "in simulation and hardware-in-the-loop.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="list the registered tasks", description="List the registered tasks.")

    t = sub.add_parser(
        "train",
        help="train a policy with SAC",
        description="Train SAC on a task. Runs are written to LOG_DIR/<task>/<time>_<name>_s<seed>/ "
        "(checkpoint.pt, config.yaml, TensorBoard events, summary.json, learning_curve.png).",
    )
    t.add_argument("task", help="task name (see `sim2real list`)")
    t.add_argument("--seed", type=int, default=None, help="random seed (default 0); same seed = same run")
    t.add_argument("--num-envs", type=int, default=None, help="parallel simulated envs (default: the task's tuned value)")
    t.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default cpu)")
    t.add_argument("--total-steps", type=int, default=None, help="env steps summed over envs (default: task's value)")
    t.add_argument("--name", default=None, help="run name used in the run directory (default sac)")
    t.add_argument("--log-dir", default=None, help="root of the run directories (default runs)")
    t.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue the run in RUN_DIR from its checkpoint")
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any setting by dotted key, repeatable: e.g. sac.batch_size=512, updates_per_step=2, "
        "env.reward.position=40 (see --print-config for every key)",
    )
    t.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    t.add_argument("--quiet", action="store_true", help="no progress bar; print the summary only")

    e = sub.add_parser(
        "eval",
        help="evaluate an exported policy in the simulator",
        description="Run the ONNX policy (onnxruntime) in the simulator. quadrotor-hover: N episodes of 5 s with "
        "per-episode disturbances from the `nominal` and `hard` start distributions, figures plus eval.json and "
        "trajectories.png. Any other task: N whole episodes in the env rebuilt from the policy's metadata, "
        "return/length statistics (and the task's validation figures) in eval.json. A run directory is exported "
        "first if it has no exported/policy.onnx.",
    )
    e.add_argument("source", help="run directory or policy.onnx")
    e.add_argument("--episodes", type=int, default=200, help="episodes per start distribution (default 200)")
    e.add_argument("--seed", type=int, default=0, help="seed of the evaluation episodes (default 0)")
    e.add_argument(
        "--starts", nargs="+", default=["nominal", "hard"], choices=["nominal", "hard"], help="start distributions"
    )
    e.add_argument("--out", default=None, help="directory for eval.json and trajectories.png (default: beside the policy)")
    e.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")

    x = sub.add_parser("export", help="export a trained policy", description="Export a trained policy.")
    xs = x.add_subparsers(dest="format", required=True, metavar="FORMAT")
    o = xs.add_parser(
        "onnx",
        help="deterministic actor with normaliser and metadata -> policy.onnx",
        description="Write <run>/exported/policy.onnx: input `obs` [batch, obs_dim], output `actions` [batch, act_dim], "
        "metadata JSON (observation layout, action mapping, control rate, run id) in metadata_props. "
        "Refuses to write a model whose onnxruntime outputs disagree with PyTorch.",
    )
    o.add_argument("source", help="run directory or checkpoint.pt")
    o.add_argument("--out", default=None, help="output .onnx path (default <run>/exported/policy.onnx)")
    o.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    o.add_argument("--atol", type=float, default=1e-5, help="max |torch - onnxruntime| accepted (default 1e-5)")

    c = xs.add_parser(
        "c",
        help="policy -> dependency-free C99 (policy.h/policy.c) for microcontrollers",
        description="Generate policy.h/policy.c from policy.onnx: weights as const arrays (flash), no malloc, no "
        "libm, static scratch buffers, one entry point policy_eval(const float *obs, float *actions) with the "
        "normaliser and action clipping inside, and a golden input/output pair plus the model hash in the header. "
        "When gcc is available the code is compiled for the host and checked against onnxruntime.",
    )
    c.add_argument("source", help="run directory (exported to ONNX first if needed) or policy.onnx")
    c.add_argument("--target", choices=["cortex-m4", "cortex-m7", "host"], default="cortex-m4",
                   help="instruction set the kernel is tuned for: fused multiply-add on cortex-m7 only (default cortex-m4)")
    c.add_argument("--out", default=None, help="output directory (default: <policy dir>/c_<target>[_int8])")
    c.add_argument("--int8", action="store_true",
                   help="int8 weights with one float scale per output row; reports the accuracy loss")
    c.add_argument("--fma", action=argparse.BooleanOptionalAction, default=None,
                   help="force fused multiply-add on or off (default: the target's choice)")
    c.add_argument("--check-samples", type=int, default=1000,
                   help="random observations for the host check against onnxruntime (0 skips it; default 1000)")

    f = xs.add_parser(
        "firmware",
        help="policy -> C -> firmware image for a QEMU board / microcontroller (arm-none-eabi-gcc)",
        description="Generate the C policy (cortex-m4 kernel) and build the firmware around it: startup code, "
        "linker script, UART protocol (framed observation in / action out, ping, info, reset; CRC-16) and a main "
        "loop that sleeps (wfi) while idle. Writes firmware.elf/.bin/.map and prints flash and RAM sizes. "
        "--verify also builds the self-test image and runs it in QEMU (exit status = golden-pair result).",
    )
    f.add_argument("source", help="run directory (exported to ONNX first if needed) or policy.onnx")
    f.add_argument("--board", required=True, choices=["netduinoplus2", "mps2-an386"],
                   help="netduinoplus2 = STM32F405 (Crazyflie 2.x MCU); mps2-an386 = ARM Cortex-M4F board")
    f.add_argument("--mode", choices=["serial", "selftest", "bench"], default="serial",
                   help="serial: protocol loop (default); selftest: golden check as exit status; bench: timing")
    f.add_argument("--int8", action="store_true", help="int8 weights (see `export c --int8`)")
    f.add_argument("--out", default=None, help="output directory (default: <policy dir>/firmware_<board>)")
    f.add_argument("--verify", action="store_true", help="also run the golden self-test in QEMU (qemu-system-arm)")

    h = sub.add_parser(
        "hil",
        help="hardware-in-the-loop: simulate on the host, compute every action on the microcontroller",
        description="Fly the quadrotor simulator on the host for --duration seconds while the device behind the "
        "serial link computes every action (a real board on /dev/tty*, or QEMU via --qemu). Checks that the "
        "device runs this policy (dimensions, model hash), compares each action with onnxruntime, falls back to "
        "--safe-action when the device stays silent after the retries, and reports the hover figures, round-trip "
        "times and link counters (hil.json, hil_trajectory.png). Exit status 0 = hover criterion met, 1 = not.",
    )
    h.add_argument("source", help="run directory or policy.onnx the device was flashed with")
    where = h.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="pyserial port or URL: /dev/ttyACM0, socket://127.0.0.1:4321, ...")
    where.add_argument("--qemu", metavar="BOARD", choices=["netduinoplus2", "mps2-an386"],
                       help="build the firmware for BOARD and run it in QEMU (netduinoplus2 = STM32F405)")
    h.add_argument("--duration", type=float, default=10.0, help="simulated flight in seconds (default 10)")
    h.add_argument("--start", choices=["nominal", "hard"], default="nominal", help="start distribution")
    h.add_argument("--seed", type=int, default=0, help="seed of the episode (default 0)")
    h.add_argument("--baudrate", type=int, default=1_000_000, help="for real serial ports (default 1000000)")
    h.add_argument("--timeout", type=float, default=0.5, help="seconds to wait for each reply (default 0.5)")
    h.add_argument("--retries", type=int, default=2, help="attempts after a timeout or transient NAK (default 2)")
    h.add_argument("--safe-action", type=float, default=-1.0,
                   help="action of every motor when the device fails a tick (default -1 = idle)")
    h.add_argument("--full-frames", action="store_true",
                   help="send the whole observation every tick (591-byte OBS frames for the quadrotor) instead of "
                   "compact OBS_STATE frames (79 bytes: the state only; the device keeps the 32-action history "
                   "itself after one full frame per episode); for comparison or firmware of protocol version 1")
    h.add_argument("--out", default=None, help="directory for hil.json and hil_trajectory.png (default: beside the policy)")
    h.add_argument("--json", action="store_true", help="print the result as JSON")

    la = sub.add_parser(
        "launch",
        help="run a ROS 2 XML launch file's sim2real nodes without ROS (dds backend)",
        description="Run the nodes of a ROS 2 XML launch file (the subset valid on Humble and Jazzy: arg, let, group, "
        "push_ros_namespace, node with param/remap/env, if/unless; $(var) $(env) $(find-pkg-share) "
        "$(find-pkg-prefix) $(dirname) $(filename) $(anon) $(not|and|or)) as ros2 launch would: one process per "
        "node with --ros-args (name, namespace, parameter files and values, remaps) and SIM2REAL_ROS_BACKEND=dds. "
        "Output lines are prefixed with [name]. Ctrl-C (or SIGTERM) sends SIGINT to every node, SIGTERM after "
        "--grace seconds, then SIGKILL; each node's exit status is reported. Exit status 0 when every node "
        "stopped cleanly, 1 otherwise, 2 on a launch file or argument error.",
        epilog=LAUNCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    la.add_argument("file", metavar="FILE",
                    help="launch file path, or a file name in $(find-pkg-share sim2real)/launch")
    la.add_argument("launch_args", nargs="*", metavar="NAME:=VALUE",
                    help="launch arguments declared by the file's <arg> tags (undeclared names are an error)")
    la.add_argument("--print", dest="print_only", action="store_true",
                    help="print the resolved arguments and processes (command lines, parameters) and start nothing")
    la.add_argument("--exit-on-failure", action="store_true",
                    help="stop every node when one exits with a non-zero status (default: report it, keep the others)")
    la.add_argument("--duration", type=float, default=None, metavar="S",
                    help="stop the launch after S seconds (scripted runs, tests); default: until Ctrl-C or no node left")
    la.add_argument("--grace", type=float, default=5.0, metavar="S",
                    help="seconds between SIGINT and SIGTERM, and between SIGTERM and SIGKILL, on shutdown (default 5)")
    la.add_argument("--verbose", action="store_true", help="debug log lines (where the package files were found)")

    d = sub.add_parser(
        "demo",
        help="train the default quadrotor task, export, evaluate, print the result",
        description="The main job in one command: train quadrotor-hover with its defaults, export ONNX, evaluate "
        "200 nominal + 200 hard episodes and print the figures against the acceptance criterion; then export the "
        "policy to C and fly 10 s hardware-in-the-loop on an emulated STM32F405 (when the ARM toolchain and QEMU "
        "are installed: make mcu-deps).",
    )
    d.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    d.add_argument("--log-dir", default="runs", help="root of the run directories (default runs)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


# ----------------------------------------------------------------------------------------------- commands
def cmd_list(_: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from sim2real.sim.core import list_tasks

    table = Table(title="sim2real tasks")
    for col in ("task", "description"):
        table.add_column(col)
    for entry in list_tasks():
        table.add_row(entry.name, entry.description)
    Console().print(table)
    return 0


def _train_config(args: argparse.Namespace):
    from sim2real.policies.runner import TrainConfig, apply_overrides
    from sim2real.sim.core import get_task

    entry = get_task(args.task)
    cfg = entry.train_defaults() if entry.train_defaults else TrainConfig(task=args.task)
    flags = {
        "seed": args.seed, "num_envs": args.num_envs, "device": args.device, "total_env_steps": args.total_steps,
        "name": args.name, "log_dir": args.log_dir,
    }  # fmt: skip
    cfg = replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    return apply_overrides(cfg, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from sim2real.policies.runner import Runner, config_to_dict

    if args.resume:
        runner = Runner.resume(args.resume, total_env_steps=args.total_steps, quiet=args.quiet)
    else:
        cfg = _train_config(args)
        if args.print_config:
            import yaml

            print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
            return 0
        runner = Runner(cfg, quiet=args.quiet)
    summary = runner.train()
    _print_summary("training summary", summary)
    return 0


def _resolve_policy(source: str) -> Path:
    """A ``policy.onnx`` path for a run directory (exporting it if needed) or an ``.onnx`` file."""
    from sim2real.firmware_export.onnx_export import export_onnx

    path = Path(source)
    if path.is_dir():
        onnx_path = path / "exported" / "policy.onnx"
        if not onnx_path.exists():
            onnx_path = export_onnx(path)
        return onnx_path
    if not path.exists():
        raise FileNotFoundError(f"no such run directory or policy file: {path}")
    if path.suffix != ".onnx":
        raise ValueError(f"expected a run directory or a .onnx file, got {path}")
    return path


def evaluate_policy_file(onnx_path: Path, episodes: int, seed: int, starts: tuple[str, ...], out: Path | None) -> dict:
    """Evaluate an exported hover policy; writes ``eval.json`` and ``trajectories.png`` into ``out``."""
    from sim2real.eval import evaluate_hover, hover_base_config, plot_trajectories, write_results
    from sim2real.firmware_export.onnx_export import OnnxPolicy

    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    policy = OnnxPolicy(onnx_path)
    base = hover_base_config(policy.metadata, policy.obs_dim, str(onnx_path))
    t0 = time.time()
    results, trajs = evaluate_hover(policy, episodes, seed, starts, base=base)
    results["meta"] = {"policy": str(onnx_path), "episodes": episodes, "seed": seed, "eval_time_s": round(time.time() - t0, 2)}
    out = out or onnx_path.parent
    out.mkdir(parents=True, exist_ok=True)
    write_results(results, out / "eval.json")
    plot_trajectories(trajs, out / "trajectories.png")
    results["meta"]["files"] = [str(out / "eval.json"), str(out / "trajectories.png")]
    return results


def cmd_eval(args: argparse.Namespace) -> int:
    onnx_path = _resolve_policy(args.source)
    from sim2real.firmware_export.onnx_export import read_metadata

    meta = read_metadata(onnx_path)
    if meta["task"] != "quadrotor-hover":  # any other task: episode returns (and its validation figures)
        return _eval_returns(onnx_path, meta, args)
    results = evaluate_policy_file(onnx_path, args.episodes, args.seed, tuple(args.starts), Path(args.out) if args.out else None)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_eval(results)
    return 0


def _eval_returns(onnx_path: Path, meta: dict, args: argparse.Namespace) -> int:
    from sim2real.eval_returns import evaluate_returns
    from sim2real.firmware_export.onnx_export import OnnxPolicy
    from sim2real.utils import write_text_atomic

    policy = OnnxPolicy(onnx_path)
    res = evaluate_returns(policy, meta["task"], meta.get("env_config"), args.episodes, args.seed)
    res["policy"] = str(onnx_path)
    out = Path(args.out) if args.out else onnx_path.parent
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "eval.json", json.dumps(res, indent=2))
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{res['task']}: {res['episodes']} episodes, return {res['return_mean']:.1f} ± {res['return_std']:.1f} "
              f"[{res['return_min']:.1f}, {res['return_max']:.1f}], length {res['length_mean']:.0f} steps")
        for k, v in res.get("validation", {}).items():
            print(f"  {k}: {v:.4g}")
        print(f"wrote {out / 'eval.json'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from sim2real.firmware_export.onnx_export import export_onnx, read_metadata

    if args.format in ("c", "firmware"):
        from sim2real.cli_deploy import cmd_export_c, cmd_export_firmware

        return (cmd_export_c if args.format == "c" else cmd_export_firmware)(args)

    path = export_onnx(args.source, Path(args.out) if args.out else None, opset=args.opset, atol=args.atol)
    meta = read_metadata(path)
    print(f"wrote {path} (obs_dim {meta['obs_dim']}, act_dim {meta['act_dim']}, "
          f"parity max|diff| {meta.get('parity_max_abs_diff', float('nan')):.2e})")  # fmt: skip
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from sim2real.firmware_export.onnx_export import export_onnx
    from sim2real.policies.runner import Runner, quadrotor_hover_defaults

    t0 = time.time()
    cfg = replace(quadrotor_hover_defaults(), seed=args.seed, log_dir=args.log_dir, name="demo")
    runner = Runner(cfg, quiet=args.quiet)
    summary = runner.train()
    _print_summary("training summary", summary)
    onnx_path = export_onnx(runner.run_dir)
    print(f"exported {onnx_path}")
    results = evaluate_policy_file(onnx_path, 200, 0, ("nominal", "hard"), None)
    _print_eval(results)
    _demo_microcontroller(onnx_path)
    print(f"demo finished in {time.time() - t0:.0f} s; run directory {runner.run_dir}")
    return 0


def _demo_microcontroller(onnx_path: Path) -> None:
    """The demo's last step: C export (checked on the host) and 10 s of HIL flight on an emulated STM32F405."""
    import shutil

    from sim2real import cli_deploy

    missing = [t for t in ("gcc", "arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        print(f"skipping the microcontroller step: {', '.join(missing)} not installed (make mcu-deps)")
        return
    parser = _build_parser()
    cli_deploy.cmd_export_c(parser.parse_args(["export", "c", str(onnx_path)]))
    print("hardware in the loop: 10 s of flight, every action from the emulated STM32F405 (QEMU netduinoplus2)")
    cli_deploy.cmd_hil(parser.parse_args(["hil", str(onnx_path), "--qemu", "netduinoplus2"]))
    print("(HIL flies one episode: it checks that the device flies exactly as onnxruntime does; the hover "
          "criterion itself is judged on the 200 episodes above)")


# ----------------------------------------------------------------------------------------------- output
def _print_summary(title: str, summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for k, v in summary.items():
        table.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    Console().print(table)


def _print_eval(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from sim2real.eval import CRITERION

    starts = [k for k in ("nominal", "hard") if k in results]
    table = Table(title=f"evaluation: {results['meta']['episodes']} episodes x 5 s per start, onnxruntime")
    table.add_column("figure")
    for s in starts:
        table.add_column(s, justify="right")
    rows = [
        ("left the ±0.6 m box", "left_box_fraction", "{:.1%}"),
        ("mean |p| over last 2 s [m]", "pos_error_last2s_m", "{:.3f}"),
        ("p90 |p| over last 2 s [m]", "pos_error_last2s_p90_m", "{:.3f}"),
        ("mean tilt over last 2 s [deg]", "tilt_last2s_deg", "{:.2f}"),
        ("action jitter |a_t - a_t-1|", "action_jitter", "{:.4f}"),
        ("settled < 0.10 m", "settled_fraction", "{:.1%}"),
    ]
    for label, key, fmt in rows:
        table.add_row(label, *(fmt.format(results[s][key]) for s in starts))
    console = Console()
    console.print(table)
    if "nominal" in results:
        ok = results["nominal_pass"]["passed"]
        console.print(
            f"criterion (nominal: <= {CRITERION['left_box_fraction']:.0%} leave, error < "
            f"{CRITERION['pos_error_last2s_m']} m): " + ("[bold green]PASS[/]" if ok else "[bold red]FAIL[/]")
        )
    console.print(f"wrote {', '.join(results['meta']['files'])}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sim2real`` console script; returns the exit status."""
    args = _build_parser().parse_args(argv)
    from sim2real import cli_deploy

    handlers = {"list": cmd_list, "train": cmd_train, "eval": cmd_eval, "export": cmd_export,
                "hil": cli_deploy.cmd_hil, "launch": cli_deploy.cmd_launch, "demo": cmd_demo}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (KeyError, ValueError, TypeError, OSError, RuntimeError) as e:  # CheckpointError is a ValueError
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
