"""Cost of one policy inference on an emulated Cortex-M4F: our C generator (float32, FMA, int8) vs emlearn.

Every variant is linked into the same ``bench`` firmware (:mod:`sim2real.mcu.build`) and run in
QEMU with ``-icount shift=0``, where one guest instruction takes one nanosecond of virtual time, so the
firmware's SysTick reading gives instructions per ``policy_eval`` call (TCG instruction counting). The
firmware also reports whether it reproduced the golden pair. Printed per variant: instructions per
inference, instructions per multiply-add, flash of the policy object and of the whole image, static RAM, and
max |action - onnxruntime| of a host build over 1000 observations. The lower bound is the network's
multiply-adds (one instruction each, if loads and the loop were free).

emlearn (``pip install emlearn``) gets the same network (normaliser applied by the same wrapper code, hidden
ReLU layers, tanh output) through ``emlearn.net.Wrapper``; it needs newlib's libm for ``tanhf``.

    python benchmarks/mcu_inference.py [--policy tests/data/quadrotor_hover.onnx] [--boards mps2-an386 netduinoplus2]

Writes ``benchmarks/results/mcu_inference.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sim2real.core.files import write_text_atomic
from sim2real.core.policy_file import OnnxPolicy
from sim2real.mcu.build import build_firmware
from sim2real.mcu.c_codegen import generate_c, hexf
from sim2real.mcu.c_host import HostPolicy
from sim2real.mcu.qemu import run_bench

ROOT = Path(__file__).resolve().parents[1]
CLOSED_LOOP = ("sim2real f32", "sim2real int8")  # variants also flown in the simulator (host build of the C)


def emlearn_policy(c_dir: Path, model) -> Path:
    """Replace ``c_dir/policy.c`` (ours) by a wrapper around emlearn's net with the same header contract."""
    import emlearn
    import emlearn.net

    acts = [lay.activation for lay in model.layers]
    if acts[-1] != "none" or model.out_activation != "tanh" or any(a != "relu" for a in acts[:-1]):
        raise SystemExit("the emlearn comparison expects ReLU hidden layers and a tanh output")
    # emlearn's own code generator for a loadable EmlNet (Wrapper would also compile a host copy in ./tmp)
    code = emlearn.net.c_generate_net_loadable(["relu"] * (len(acts) - 1) + ["tanh"],
                                               [lay.weight.T for lay in model.layers],
                                               [lay.bias for lay in model.layers], prefix="emlnet")
    (c_dir / "emlearn_net.h").write_text(code)
    for name in ("eml_net.h", "eml_common.h", "eml_net_common.h", "eml_log.h"):
        src = Path(emlearn.includedir) / name
        if src.exists():
            shutil.copy(src, c_dir / name)
    ours = (c_dir / "policy.c").read_text()
    golden = ours[ours.index("const float policy_golden_obs"):ours.index("\nint policy_eval")]
    lo, hi = model.obs_clip
    arr = lambda n, v: f"static const float {n}[{len(v)}] = {{{', '.join(hexf(x) for x in v)}}};\n"  # noqa: E731
    code = f"""/* emlearn {emlearn.__version__} network behind the sim2real policy contract (benchmark only). */
#include "policy.h"
#include "emlearn_net.h"
{arr("norm_mean", model.mean)}{arr("norm_scale", model.scale)}
static float xin[POLICY_OBS_DIM];
{golden}
int policy_eval(const float *obs, float *actions)
{{
    for (int i = 0; i < POLICY_OBS_DIM; ++i) {{
        float v = (obs[i] - norm_mean[i]) * norm_scale[i];
        xin[i] = v < {hexf(lo)} ? {hexf(lo)} : v > {hexf(hi)} ? {hexf(hi)} : v;
    }}
    return emlnet_regress(xin, POLICY_OBS_DIM, actions, POLICY_ACT_DIM) == 0 ? 0 : 2;
}}
"""
    (c_dir / "policy.c").write_text(code)
    return c_dir


def host_error(c_dir: Path, model, reference: np.ndarray, x: np.ndarray, flags: list[str]) -> float:
    host = HostPolicy(c_dir, model.obs_dim, model.act_dim, flags + ["-I", str(c_dir), "-Wno-error"])
    return float(np.abs(host(x) - reference).max())


def closed_loop(c_dir: Path, model, policy_path: str, episodes: int) -> dict[str, float]:
    """Hover figures (the hover task's ``evaluate_hover``, nominal starts) with the host build of the C code."""
    import torch

    from sim2real.sim.registry import policy_env_config
    from sim2real.tasks.quadrotor_hover.evaluation import evaluate_hover

    host = HostPolicy(c_dir, model.obs_dim, model.act_dim)
    _, base = policy_env_config(OnnxPolicy(policy_path).metadata, policy_path)
    res, _ = evaluate_hover(lambda obs: torch.from_numpy(host(obs.numpy())), episodes, 0, ("nominal", "hard"), base)
    return {"nominal_left_box": res["nominal"]["left_box_fraction"], "nominal_error_m": res["nominal"]["pos_error_last2s_m"],
            "hard_left_box": res["hard"]["left_box_fraction"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", default=str(ROOT / "tests" / "data" / "quadrotor_hover.onnx"), help="policy.onnx")
    p.add_argument("--boards", nargs="+", default=["mps2-an386", "netduinoplus2"], help="QEMU boards")
    p.add_argument("--episodes", type=int, default=200, help="closed-loop hover episodes per start (f32 and int8)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mcu_inference.json"))
    args = p.parse_args()
    onnx = OnnxPolicy(args.policy)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mcu_bench_") as tmp_s:
        tmp = Path(tmp_s)
        variants = {
            "sim2real f32": dict(int8=False, fma=False),
            "sim2real f32 fma": dict(int8=False, fma=True),
            "sim2real int8": dict(int8=True, fma=False),
            "emlearn f32": dict(int8=False, fma=False, emlearn=True),
        }
        for name, v in variants.items():
            c_dir = tmp / name.replace(" ", "_")
            ex = generate_c(args.policy, c_dir, target="cortex-m4", int8=v["int8"], fma=v["fma"])
            model = ex.model
            x = model.normalizer_samples(1000, seed=11)
            ref = onnx(x)
            libs: tuple[str, ...] = ()
            if v.get("emlearn"):
                emlearn_policy(c_dir, model)
                libs = ("m", "c", "nosys")
            flags = ["-DPOLICY_USE_FMA"] if v["fma"] else []
            err = host_error(c_dir, model, ref, x, flags)
            hover = closed_loop(c_dir, model, args.policy, args.episodes) if name in CLOSED_LOOP else None
            for board in args.boards:
                t0 = time.time()
                fw = build_firmware(c_dir, board, tmp / f"{c_dir.name}_{board}", mode="bench", libs=libs,
                                    include_dirs=(c_dir,))
                res = run_bench(fw.elf, board)
                rows.append({
                    "variant": name, "board": board, "instructions": round(res.instructions_per_inference),
                    "instructions_per_mac": res.instructions_per_inference / model.macs, "macs": model.macs,
                    "policy_flash_bytes": fw.policy_sizes.flash, "image_flash_bytes": fw.sizes.flash,
                    "image_ram_bytes": fw.sizes.ram, "golden_ok": res.golden_status == 0,
                    "max_abs_diff_vs_onnxruntime": err, "us_at_168mhz_1ipc": res.instructions_per_inference / 168.0,
                    "int8_error": ex.manifest["int8_error"], "hover": hover, "seconds": round(time.time() - t0, 2),
                })  # fmt: skip
                print(f"{name:18s} {board:14s} {rows[-1]['instructions']:>8d} insns", file=sys.stderr)
    base = {r["board"]: r["instructions"] for r in rows if r["variant"] == "emlearn f32"}
    print(f"\npolicy {args.policy}: {rows[0]['macs']} multiply-adds (lower bound: 1 instruction each)\n")
    head = f"{'variant':18s} {'board':14s} {'insns/inf':>10s} {'insns/MAC':>9s} {'vs emlearn':>10s} " \
           f"{'policy flash':>12s} {'image flash':>11s} {'RAM':>6s} {'golden':>6s} {'max|Δ| ort':>10s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = base.get(r["board"], float("nan")) / r["instructions"]
        print(f"{r['variant']:18s} {r['board']:14s} {r['instructions']:>10d} {r['instructions_per_mac']:>9.2f} "
              f"{ratio:>9.2f}x {r['policy_flash_bytes']:>12d} {r['image_flash_bytes']:>11d} {r['image_ram_bytes']:>6d} "
              f"{'ok' if r['golden_ok'] else 'FAIL':>6s} {r['max_abs_diff_vs_onnxruntime']:>10.2e}")
    print("\nclosed loop in the simulator (host build of the same C; nominal/hard starts, "
          f"{args.episodes} episodes each):")
    for r in rows:
        if r["hover"] and r["board"] == args.boards[0]:
            h = r["hover"]
            print(f"  {r['variant']:14s} nominal: {h['nominal_left_box']:.1%} left the box, error "
                  f"{h['nominal_error_m']:.3f} m; hard: {h['hard_left_box']:.1%} left")
    result = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "policy": args.policy,
              "qemu": "qemu-system-arm -icount shift=0 (1 instruction = 1 ns)", "rows": rows}  # fmt: skip
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
