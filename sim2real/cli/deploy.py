"""Handlers of the deployment commands of ``sim2real``: ``export onnx|c|firmware``, ``hil``, ``launch``.

The parser (options, help) is in :mod:`sim2real.cli.parser`; errors propagate to :func:`sim2real.cli.main.main`
(``error: ...``, exit 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sim2real.cli.common import resolve_policy


def cmd_export(args: argparse.Namespace) -> int:
    """``sim2real export onnx|c|firmware|ros2-control``."""
    if args.format == "c":
        return _export_c(args)
    if args.format == "firmware":
        return _export_firmware(args)
    if args.format == "ros2-control":
        from sim2real.export.ros2_control import export_ros2_control

        if args.update_rate < 1:
            raise ValueError(f"--update-rate must be >= 1 Hz, got {args.update_rate}")
        path = export_ros2_control(resolve_policy(args.source), args.out, args.controller, args.update_rate)
        print(f"wrote {path}")
        return 0
    from sim2real.core.policy_file import read_metadata
    from sim2real.export.onnx import export_onnx

    path = export_onnx(args.source, Path(args.out) if args.out else None, opset=args.opset, atol=args.atol)
    meta = read_metadata(path)
    diff = meta.parity_max_abs_diff if meta.parity_max_abs_diff is not None else float("nan")
    print(f"wrote {path} (obs_dim {meta.obs_dim}, act_dim {meta.act_dim}, parity max|diff| {diff:.2e})")
    return 0


def _export_c(args: argparse.Namespace) -> int:
    import shutil

    import numpy as np

    from sim2real.core.policy_file import OnnxPolicy
    from sim2real.mcu.c_codegen import generate_c
    from sim2real.mcu.c_host import HostPolicy

    if args.check_samples < 0:
        raise ValueError(f"--check-samples must be >= 0, got {args.check_samples}")
    onnx_path = resolve_policy(args.source)
    out = Path(args.out) if args.out else onnx_path.parent / f"c_{args.target}{'_int8' if args.int8 else ''}"
    ex = generate_c(onnx_path, out, target=args.target, int8=args.int8, fma=args.fma)
    man = ex.manifest
    print(f"wrote {ex.header} and {ex.source}")
    print(f"  {man['obs_dim']} -> {man['act_dim']}, layers {man['layers']}, {man['macs']} multiply-adds, "
          f"{man['parameter_bytes']} parameter bytes, model hash {man['model_hash']}, fma {man['fma']}")
    if man["int8_error"]:
        e = man["int8_error"]
        print(f"  int8 accuracy loss vs float32 over {e['samples']} observations: max {e['max_abs']:.2e}, "
              f"mean {e['mean_abs']:.2e} (action units, range [-1, 1])")
    if args.check_samples and shutil.which("gcc"):
        host = HostPolicy(out, man["obs_dim"], man["act_dim"], ["-DPOLICY_USE_FMA"] if man["fma"] else None)
        x = ex.model.normalizer_samples(args.check_samples, seed=123)
        ref = ex.model.forward(x) if args.int8 else OnnxPolicy(onnx_path)(x)
        what = "numpy int8 reference" if args.int8 else "onnxruntime"
        print(f"  host build check: max |C - {what}| = {float(np.abs(host(x) - ref).max()):.2e} "
              f"over {args.check_samples} observations")
    elif args.check_samples:
        print("  host build check skipped: no gcc on PATH")
    return 0


def _export_firmware(args: argparse.Namespace) -> int:
    from sim2real.mcu.build import build_firmware
    from sim2real.mcu.c_codegen import generate_c

    onnx_path = resolve_policy(args.source)
    out = Path(args.out) if args.out else onnx_path.parent / f"firmware_{args.board}{'_int8' if args.int8 else ''}"
    ex = generate_c(onnx_path, out / "c", target="cortex-m4", int8=args.int8)
    fw = build_firmware(out / "c", args.board, out, mode=args.mode)
    print(f"wrote {fw.elf} and {fw.bin} ({args.mode} firmware for {args.board}, model hash {ex.manifest['model_hash']})")
    print(f"  image:  flash {fw.sizes.flash} B (text {fw.sizes.text}, data {fw.sizes.data}), "
          f"RAM {fw.sizes.ram} B (bss {fw.sizes.bss}, 4 KB stack included)")
    print(f"  policy: flash {fw.policy_sizes.flash} B, RAM {fw.policy_sizes.ram} B; {ex.manifest['macs']} multiply-adds")
    if args.verify:
        from sim2real.mcu.qemu import run_selftest

        test = build_firmware(out / "c", args.board, out / "selftest", mode="selftest")
        rc = run_selftest(test.elf, args.board)
        print(f"  QEMU self-test on {args.board}: " + ("PASS (golden pair reproduced)" if rc == 0 else f"FAIL (exit {rc})"))
        return 0 if rc == 0 else 1
    return 0


def cmd_hil(args: argparse.Namespace) -> int:
    import contextlib
    import tempfile

    from sim2real.core.files import write_text_atomic
    from sim2real.mcu.hil import HILConfig, run_hil
    from sim2real.mcu.serial_link import SerialLink
    from sim2real.tasks.quadrotor_hover.evaluation import plot_trajectories

    onnx_path = resolve_policy(args.source)
    cfg = HILConfig(duration_s=args.duration, start=args.start, seed=args.seed, safe_action=args.safe_action,
                    compact=not args.full_frames)
    with contextlib.ExitStack() as stack:
        url = args.port
        if args.qemu:
            from sim2real.mcu.build import build_firmware
            from sim2real.mcu.c_codegen import generate_c
            from sim2real.mcu.qemu import QemuSerial

            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sim2real_hil_")))
            generate_c(onnx_path, tmp / "c", target="cortex-m4")
            fw = build_firmware(tmp / "c", args.qemu, tmp / "fw")
            url = stack.enter_context(QemuSerial(fw.elf, args.qemu)).url
            print(f"QEMU {args.qemu} running the firmware on {url} (flash {fw.sizes.flash} B, RAM {fw.sizes.ram} B)")
        link = stack.enter_context(SerialLink(url, timeout=args.timeout, retries=args.retries, baudrate=args.baudrate))
        link.wait_ready()
        result = run_hil(link, onnx_path, cfg)
        if args.qemu:
            link.quit()
    out = Path(args.out) if args.out else onnx_path.parent / "hil"
    out.mkdir(parents=True, exist_ok=True)
    data = {**result.to_json(), "policy": str(onnx_path), "port": args.port or f"qemu:{args.qemu}", "config": vars(cfg)}
    write_text_atomic(out / "hil.json", json.dumps(data, indent=2))
    plot_trajectories({f"HIL {args.start}": result.traj}, out / "hil_trajectory.png")
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        m, r = result.metrics, result.rtt_ms
        print(f"HIL {result.ticks} ticks ({args.duration:g} s) on {result.device['board']}: left box "
              f"{'yes' if m['left_box_fraction'] else 'no'}, mean |p| over last 2 s {m['pos_error_last2s_m']:.3f} m, "
              f"fallbacks {result.fallbacks}")
        print(f"  same flight as onnxruntime in the simulator: max position deviation {result.reference_deviation_m:.2e} m")
        print(f"  device vs onnxruntime max |diff| {result.max_abs_diff_vs_onnx:.2e}; device "
              f"{result.device_ticks_mean:.0f} ticks/inference at {result.device_tick_hz / 1e6:g} MHz; round trip "
              f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms; counters {result.counters}")
        print(f"  frames: {result.full_frames} full, {result.compact_frames} compact, {result.resyncs} resyncs; "
              f"{result.bytes_sent_per_tick:.0f} bytes sent per tick; wall {result.wall_s:.1f} s")
        print("hover criterion on this episode (stays in the box, error < 0.10 m, no fallback): "
              + ("PASS" if result.passed else "FAIL") + f"; wrote {out / 'hil.json'}, {out / 'hil_trajectory.png'}")
    return 0 if result.passed else 1


def cmd_launch(args: argparse.Namespace) -> int:
    import logging

    from sim2real.ros_nodes.launch.parser import find_launch_file, load_launch, parse_launch_arguments
    from sim2real.ros_nodes.launch.runner import LaunchRunner, format_plan, plan_processes

    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="[launch] %(message)s")
    if args.duration is not None and not args.duration > 0:
        raise ValueError(f"--duration must be > 0 seconds, got {args.duration}")
    if not args.grace >= 0:
        raise ValueError(f"--grace must be >= 0 seconds, got {args.grace}")
    desc = load_launch(find_launch_file(args.file), parse_launch_arguments(args.launch_args))
    processes = plan_processes(desc)
    if args.print_only:
        print(format_plan(desc, processes))
        return 0
    runner = LaunchRunner(processes, grace_s=args.grace, exit_on_failure=args.exit_on_failure, duration_s=args.duration)
    return runner.run().exit_code
