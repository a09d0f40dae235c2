"""Generate dependency-free C99 for an exported policy: ``policy.h`` + ``policy.c`` for microcontrollers.

``int policy_eval(const float *obs, float *actions)`` runs the whole policy of ``policy.onnx``: input check,
normaliser, dense layers, output slice, tanh, action clipping. The generated code

* keeps weights as ``static const`` arrays (flash), written as C99 hex floats, so they are bit-exact;
* uses no malloc and no libc/libm: a rational tanh replaces ``tanhf`` (max abs error 3.4e-7, below the
  float32 spacing at 1) and the NaN/Inf check tests the exponent bits;
* computes in two static scratch buffers sized at generation time (not reentrant: one caller at a time);
* has a Cortex-M4F-oriented dense kernel: four output rows per pass over the input, weights stored
  interleaved by row quads so one pass streams them with consecutive loads (``VLDM``), each input loaded
  once per four multiply-adds; with ``-O3 -funroll-loops`` GCC unrolls the inner loop;
* multiply-adds as ``acc + w * x`` by default: under ``-std=c11`` GCC keeps ``-ffp-contract=off``, so the
  MCU build is bit-identical to a host build, and on the M4 ``VMUL + VADD`` take 2 cycles against 3 for
  ``VFMA`` (ARM DDI0439). ``POLICY_USE_FMA`` (the ``cortex-m7`` default) switches to ``__builtin_fmaf``;
* optionally stores int8 weights with one float scale per output row (4x less weight flash).

The header carries the model hash, a metadata summary and a golden input/output pair (outputs from
onnxruntime) that the firmware self-test reproduces.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import sim2real
from sim2real.core.files import write_text_atomic
from sim2real.core.policy_file import inference_session
from sim2real.mcu.mlp_ir import MLPModel, mlp_from_onnx

_M = "-std=c11 -O3 -funroll-loops -mthumb -mfloat-abi=hard"
TARGETS = {
    "host": {"fma": False, "cflags": "-std=c11 -O2"},
    "cortex-m4": {"fma": False, "cflags": f"{_M} -mcpu=cortex-m4 -mfpu=fpv4-sp-d16"},
    "cortex-m7": {"fma": True, "cflags": f"{_M} -mcpu=cortex-m7 -mfpu=fpv5-d16"},
}
#: Tolerance the firmware self-test applies to the golden pair (onnxruntime vs the C code).
GOLDEN_ATOL = 1e-5

# Rational tanh: tanh(x) ~ x P(x^2) / Q(x^2) on |x| <= 8 (clamped outside), P and Q of degree 4 with positive
# coefficients (no poles), fitted by Lawson-weighted least squares on the max abs error (scripts/fit_tanh.py).
# Max abs error in float32 3.4e-7 over [-12, 12] (tests/mcu/test_c_codegen.py measures it).
TANH_CLAMP = 8.0
TANH_P = (0.9999999699765314, 0.13438201073212072, 0.0035641681663841373, 2.1773456563668297e-05, 1.5062134481431146e-08)
TANH_Q = (1.0, 0.46771521847782666, 0.02613606084086657, 0.00033991995812203884, 8.453787211774987e-07)


class CodegenError(ValueError):
    """The policy cannot be turned into C (unsupported graph, bad arguments, failed self-check)."""


@dataclass
class CExport:
    """What :func:`generate_c` wrote: ``header``/``source`` paths, the model and the summary in ``manifest``."""

    header: Path
    source: Path
    manifest_path: Path
    model: MLPModel
    manifest: dict[str, Any]


def hexf(x: float) -> str:
    """A float32 as an exact C99 hex-float literal (``0x1.8p+1f``)."""
    return float(np.float32(x)).hex() + "f"


def _array(name: str, values: np.ndarray, ctype: str = "float", per_line: int = 6) -> str:
    """``static const <ctype> name[n] = {...};`` with exact literals."""
    flat = np.asarray(values).ravel()
    lits = [hexf(v) for v in flat] if ctype == "float" else [str(int(v)) for v in flat]
    per_line = per_line if ctype == "float" else 24
    rows = [", ".join(lits[i : i + per_line]) for i in range(0, len(lits), per_line)]
    body = ",\n    ".join(rows)
    return f"static const {ctype} {name}[{len(flat)}] = {{\n    {body}\n}};\n"


def pack_rows4(w: np.ndarray) -> np.ndarray:
    """Weights ``(out, in)`` in kernel order: row quads interleaved (``w[r..r+3, j]`` adjacent), then the rest.

    Block ``k`` (rows ``4k..4k+3``) is stored as ``[w[4k, 0], w[4k+1, 0], w[4k+2, 0], w[4k+3, 0], w[4k, 1], ...]``;
    the ``out % 4`` remaining rows follow row-major. Same length as ``w.ravel()``.
    """
    n_out, n_in = w.shape
    quads = n_out // 4 * 4
    head = w[:quads].reshape(n_out // 4, 4, n_in).transpose(0, 2, 1).ravel()
    return np.concatenate((head, w[quads:].ravel()))


_KERNEL = r"""
#ifdef POLICY_USE_FMA
#define POLICY_MAC(acc, w, x) __builtin_fmaf((w), (x), (acc))
#else
#define POLICY_MAC(acc, w, x) ((acc) + (w) * (x))
#endif

enum { ACT_NONE = 0, ACT_RELU = 1, ACT_TANH = 2 };

/* tanh(x) ~ x P(x^2) / Q(x^2) for |x| <= TANH_CLAMP; +-tanh(TANH_CLAMP) beyond (|error| <= 3.4e-7). */
static float tanh_fast(float x)
{
    if (x > TANH_CLAMP) x = TANH_CLAMP;
    if (x < -TANH_CLAMP) x = -TANH_CLAMP;
    const float x2 = x * x;
    const float p = TANH_P0 + x2 * (TANH_P1 + x2 * (TANH_P2 + x2 * (TANH_P3 + x2 * TANH_P4)));
    const float q = TANH_Q0 + x2 * (TANH_Q1 + x2 * (TANH_Q2 + x2 * (TANH_Q3 + x2 * TANH_Q4)));
    return x * p / q;
}

static float activate(float v, int act)
{
    if (act == ACT_RELU) return v > 0.0f ? v : 0.0f;
    if (act == ACT_TANH) return tanh_fast(v);
    return v;
}

/* IEEE-754 single: exponent bits all ones <=> NaN or +-Inf (no libm isfinite needed). */
static int is_finite_f32(float v)
{
    union { float f; unsigned int u; } bits;
    bits.f = v;
    return (bits.u & 0x7f800000u) != 0x7f800000u;
}
"""

_DENSE_F32 = r"""
#if defined(__ARM_ARCH_7EM__) && defined(__ARM_FP) && (__ARM_FP & 4) && !defined(POLICY_PORTABLE_C)
#define POLICY_ASM_KERNEL 1
/* Cortex-M4F/M7: a[k] += w[8i + k] x[2i] then a[k] += w[8i + 4 + k] x[2i + 1], k = 0..3, i < pairs.
 * Per input pair one VLDM loads x[2i], x[2i+1] and one the 8 interleaved weights (2.5 instructions per
 * multiply-add instead of GCC's 3.5). Same operations in the same order as the C loop below (VMUL, then
 * VADD, each rounded; VFMA with POLICY_USE_FMA), so the results are bit-identical to the portable path. */
static void mac4_pairs(const float *w, const float *x, int pairs, float *acc)
{
    __asm__ volatile(
        "vldmia %[acc], {s0-s3}\n\t"
        "1:\n\t"
        "vldmia %[x]!, {s4-s5}\n\t"
        "vldmia %[w]!, {s8-s15}\n\t"
#ifdef POLICY_USE_FMA
        "vfma.f32 s0, s8, s4\n\t"
        "vfma.f32 s1, s9, s4\n\t"
        "vfma.f32 s2, s10, s4\n\t"
        "vfma.f32 s3, s11, s4\n\t"
        "vfma.f32 s0, s12, s5\n\t"
        "vfma.f32 s1, s13, s5\n\t"
        "vfma.f32 s2, s14, s5\n\t"
        "vfma.f32 s3, s15, s5\n\t"
#else
        "vmul.f32 s8, s8, s4\n\t"
        "vmul.f32 s9, s9, s4\n\t"
        "vmul.f32 s10, s10, s4\n\t"
        "vmul.f32 s11, s11, s4\n\t"
        "vadd.f32 s0, s0, s8\n\t"
        "vadd.f32 s1, s1, s9\n\t"
        "vadd.f32 s2, s2, s10\n\t"
        "vadd.f32 s3, s3, s11\n\t"
        "vmul.f32 s12, s12, s5\n\t"
        "vmul.f32 s13, s13, s5\n\t"
        "vmul.f32 s14, s14, s5\n\t"
        "vmul.f32 s15, s15, s5\n\t"
        "vadd.f32 s0, s0, s12\n\t"
        "vadd.f32 s1, s1, s13\n\t"
        "vadd.f32 s2, s2, s14\n\t"
        "vadd.f32 s3, s3, s15\n\t"
#endif
        "subs %[pairs], %[pairs], #1\n\t"
        "bne 1b\n\t"
        "vstmia %[acc], {s0-s3}\n\t"
        : [w] "+r"(w), [x] "+r"(x), [pairs] "+r"(pairs)
        : [acc] "r"(acc)
        : "s0", "s1", "s2", "s3", "s4", "s5", "s8", "s9", "s10", "s11", "s12", "s13", "s14", "s15", "cc", "memory");
}
#endif

/* y = act(W x + b), W packed by pack_rows4: rows r..r+3 interleaved, so one pass over x feeds four
 * accumulators from consecutive weights; the n_out % 4 remaining rows are row-major. */
static void dense_f32(const float *restrict w, const float *restrict b, const float *restrict x,
                      float *restrict y, int n_in, int n_out, int act)
{
    const int n4 = n_out - n_out % 4; /* rows handled four at a time */
    for (int r = 0; r < n4; r += 4) {
        float a[4] = {b[r], b[r + 1], b[r + 2], b[r + 3]};
        const float *wp = w + r * n_in;
        int j = 0;
#ifdef POLICY_ASM_KERNEL
        if (n_in >= 2) {
            mac4_pairs(wp, x, n_in >> 1, a);
            j = n_in & ~1;
            wp += 4 * j;
        }
#endif
        for (; j < n_in; ++j, wp += 4) {
            const float xj = x[j];
            a[0] = POLICY_MAC(a[0], wp[0], xj);
            a[1] = POLICY_MAC(a[1], wp[1], xj);
            a[2] = POLICY_MAC(a[2], wp[2], xj);
            a[3] = POLICY_MAC(a[3], wp[3], xj);
        }
        for (int k = 0; k < 4; ++k) y[r + k] = activate(a[k], act);
    }
    for (int r = n4; r < n_out; ++r) {
        float acc = b[r];
        const float *wr = w + r * n_in;
        for (int j = 0; j < n_in; ++j) acc = POLICY_MAC(acc, wr[j], x[j]);
        y[r] = activate(acc, act);
    }
}
"""

_DENSE_I8 = r"""
/* y = act(s * (Q x) + b) with int8 codes Q (packed like dense_f32) and one scale s per output row. */
static void dense_i8(const signed char *restrict q, const float *restrict s, const float *restrict b,
                     const float *restrict x, float *restrict y, int n_in, int n_out, int act)
{
    const int n4 = n_out - n_out % 4; /* rows handled four at a time */
    for (int r = 0; r < n4; r += 4) {
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
        const signed char *qp = q + r * n_in;
        for (int j = 0; j < n_in; ++j, qp += 4) {
            const float xj = x[j];
            a0 = POLICY_MAC(a0, (float)qp[0], xj);
            a1 = POLICY_MAC(a1, (float)qp[1], xj);
            a2 = POLICY_MAC(a2, (float)qp[2], xj);
            a3 = POLICY_MAC(a3, (float)qp[3], xj);
        }
        y[r] = activate(POLICY_MAC(b[r], a0, s[r]), act);
        y[r + 1] = activate(POLICY_MAC(b[r + 1], a1, s[r + 1]), act);
        y[r + 2] = activate(POLICY_MAC(b[r + 2], a2, s[r + 2]), act);
        y[r + 3] = activate(POLICY_MAC(b[r + 3], a3, s[r + 3]), act);
    }
    for (int r = n4; r < n_out; ++r) {
        float a = 0.0f;
        const signed char *qr = q + r * n_in;
        for (int j = 0; j < n_in; ++j) a = POLICY_MAC(a, (float)qr[j], x[j]);
        y[r] = activate(POLICY_MAC(b[r], a, s[r]), act);
    }
}
"""

_ACT_ENUM = {"none": "ACT_NONE", "relu": "ACT_RELU", "tanh": "ACT_TANH"}


def history_layout(model: MLPModel) -> tuple[int, int]:
    """``(offset, length)`` in floats of the action history at the end of the observation.

    From the metadata's action-history term (:attr:`~sim2real.core.policy_file.PolicyMetadata.action_history`: it
    ends the observation in whole past actions, oldest first); otherwise ``(obs_dim, 0)``: no history the device
    could keep itself (see ``OBS_STATE`` in :mod:`.serial_link`).
    """
    history = model.metadata.action_history if model.metadata is not None else None
    return history if history is not None else (model.obs_dim, 0)


def _summary_lines(model: MLPModel, target: str, fma: bool, int8_error: dict[str, float] | None) -> list[str]:
    meta = model.metadata
    robot = meta.robot.get("model", "?") if meta else "?"
    meaning = f"{meta.action_meaning.get('type', '?')}, {meta.action_meaning.get('mapping', '')}" if meta else "?"
    layout = meta.obs_layout.to_json() if meta else []
    arch = " -> ".join([str(model.obs_dim), *(f"{lay.shape[0]} ({lay.activation})" for lay in model.layers)])
    lines = [
        f"task: {meta.task if meta else '?'}   robot: {robot}   run: {meta.run_id if meta else '?'}",
        f"network: {arch} -> {model.out_activation} -> clip {model.action_clip or '[-1, 1]'}",
        f"normaliser inside: {model.mean is not None}; obs clip {model.obs_clip}; multiply-adds {model.macs}",
        f"weights: {'int8 per-row scale' if model.int8 else 'float32'}; target {target}; fma {fma}",
        f"control rate: {meta.control_rate_hz if meta else '?'} Hz; actions: {meaning}",
        "observation layout: " + ", ".join(f"{t['name']}[{t['start']}:{t['start'] + t['size']}]" for t in layout),
        f"onnx sha256: {model.source_sha256}",
        f"checkpoint sha256: {meta.checkpoint_sha256 if meta else '?'}",
    ]  # fmt: skip
    if int8_error:
        lines.append(f"int8 accuracy loss vs float32: max {int8_error['max_abs']:.3e}, mean {int8_error['mean_abs']:.3e}")
    return [textwrap.shorten(s, 200, placeholder=" ...") for s in lines]


def render(model: MLPModel, golden_obs: np.ndarray, golden_act: np.ndarray, target: str = "cortex-m4",
           fma: bool | None = None, int8_error: dict[str, float] | None = None) -> tuple[str, str]:  # fmt: skip
    """The text of ``policy.h`` and ``policy.c`` for ``model`` with the golden pair ``(obs_dim,)``/``(act_dim,)``."""
    if target not in TARGETS:
        raise CodegenError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    fma = TARGETS[target]["fma"] if fma is None else fma
    widths = [model.obs_dim, *(lay.shape[0] for lay in model.layers)]
    scratch = max(widths)
    model_hash = model.source_sha256[:16] or "0" * 16
    stamp = f"sim2real {getattr(sim2real, '__version__', '0')} c_codegen, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    summary = "\n".join(f" *   {s}" for s in _summary_lines(model, target, fma, int8_error))
    hist_offset, hist_len = history_layout(model)
    h = f"""/* policy.h -- generated by {stamp}. Do not edit.
 *
{summary}
 *
 * int policy_eval(const float *obs, float *actions): obs[POLICY_OBS_DIM] raw observations (the layout
 * above, normalised inside), actions[POLICY_ACT_DIM] in [-1, 1]. Returns 0, or 1 when obs holds NaN/Inf
 * (actions untouched). Uses static scratch buffers: not reentrant. Recommended flags: {TARGETS[target]['cflags']}
 * obs[POLICY_HISTORY_OFFSET .. POLICY_OBS_DIM) are the policy's last POLICY_HISTORY_LEN / POLICY_ACT_DIM
 * actions, oldest first (LEN 0: no such history), which the firmware can keep on the device.
 */
#ifndef SIM2REAL_POLICY_H
#define SIM2REAL_POLICY_H

#define POLICY_OBS_DIM {model.obs_dim}
#define POLICY_ACT_DIM {model.act_dim}
#define POLICY_HISTORY_OFFSET {hist_offset}
#define POLICY_HISTORY_LEN {hist_len}
#define POLICY_MACS {model.macs}
#define POLICY_INT8 {int(model.int8)}
#define POLICY_MODEL_HASH "{model_hash}"
#define POLICY_GOLDEN_ATOL {GOLDEN_ATOL!r}f

extern const float policy_golden_obs[POLICY_OBS_DIM];
extern const float policy_golden_act[POLICY_ACT_DIM];

int policy_eval(const float *obs, float *actions);

#endif /* SIM2REAL_POLICY_H */
"""
    parts = [f"/* policy.c -- generated by {stamp}. Do not edit. Model {model.source_sha256}. */\n",
             '#include "policy.h"\n']  # fmt: skip
    if fma:
        parts.append("#ifndef POLICY_USE_FMA\n#define POLICY_USE_FMA 1\n#endif\n")
    parts.append(f"#define TANH_CLAMP {hexf(TANH_CLAMP)}\n")
    parts += [f"#define TANH_P{i} {hexf(c)}\n" for i, c in enumerate(TANH_P)]
    parts += [f"#define TANH_Q{i} {hexf(c)}\n" for i, c in enumerate(TANH_Q)]
    parts.append(_KERNEL)
    parts.append(_DENSE_I8 if model.int8 else _DENSE_F32)
    parts.append(f"\n/* Scratch for the widest activation vector ({scratch} floats each). */\n")
    parts.append(f"static float scratch_a[{scratch}];\nstatic float scratch_b[{scratch}];\n\n")
    if model.mean is not None:
        parts.append(_array("norm_mean", model.mean))
    if model.scale is not None:
        parts.append(_array("norm_scale", model.scale))
    for k, lay in enumerate(model.layers):
        n_out, n_in = lay.shape
        parts.append(f"\n/* layer {k}: {n_in} -> {n_out}, {lay.activation} */\n")
        if model.int8:
            assert lay.qweight is not None and lay.scale is not None
            parts.append(_array(f"w{k}", pack_rows4(lay.qweight), "signed char"))
            parts.append(_array(f"s{k}", lay.scale))
        else:
            parts.append(_array(f"w{k}", pack_rows4(lay.weight)))
        parts.append(_array(f"b{k}", lay.bias))
    parts.append("\nconst float policy_golden_obs[POLICY_OBS_DIM] = {\n    "
                 + ",\n    ".join(", ".join(hexf(v) for v in golden_obs[i:i + 6]) for i in range(0, len(golden_obs), 6))
                 + "\n};\n")  # fmt: skip
    parts.append("const float policy_golden_act[POLICY_ACT_DIM] = {" + ", ".join(hexf(v) for v in golden_act) + "};\n")
    parts.append(_eval_body(model))
    return h, "".join(parts)


def _eval_body(model: MLPModel) -> str:
    """``policy_eval``: check, normalise into scratch_a, layers ping-pong between the buffers, squash, clip."""
    lines = ["\nint policy_eval(const float *obs, float *actions)\n{",
             "    for (int i = 0; i < POLICY_OBS_DIM; ++i) {",
             "        if (!is_finite_f32(obs[i])) return 1;",
             "    }",
             "    for (int i = 0; i < POLICY_OBS_DIM; ++i) {",
             "        float v = obs[i];"]  # fmt: skip
    if model.mean is not None:
        lines.append("        v = v - norm_mean[i];")
    if model.scale is not None:
        lines.append("        v = v * norm_scale[i];")
    if model.obs_clip is not None:
        lo, hi = model.obs_clip
        if np.isfinite(lo):
            lines.append(f"        if (v < {hexf(lo)}) v = {hexf(lo)};")
        if np.isfinite(hi):
            lines.append(f"        if (v > {hexf(hi)}) v = {hexf(hi)};")
    lines += ["        scratch_a[i] = v;", "    }"]
    bufs = ("scratch_a", "scratch_b")
    for k, lay in enumerate(model.layers):
        n_out, n_in = lay.shape
        src, dst = bufs[k % 2], bufs[(k + 1) % 2]
        act = _ACT_ENUM[lay.activation]
        if model.int8:
            lines.append(f"    dense_i8(w{k}, s{k}, b{k}, {src}, {dst}, {n_in}, {n_out}, {act});")
        else:
            lines.append(f"    dense_f32(w{k}, b{k}, {src}, {dst}, {n_in}, {n_out}, {act});")
    out = bufs[len(model.layers) % 2]
    start = model.out_slice[0] if model.out_slice else 0
    lo, hi = model.action_clip if model.action_clip else (-np.inf, np.inf)
    if model.out_activation == "tanh":  # tanh_fast stays inside [-1, 1]; the clamp makes it a guarantee
        lo, hi = max(lo, -1.0), min(hi, 1.0)
    lines += ["    for (int i = 0; i < POLICY_ACT_DIM; ++i) {",
              f"        float a = activate({out}[{start} + i], {_ACT_ENUM[model.out_activation]});"]  # fmt: skip
    if np.isfinite(lo):
        lines.append(f"        if (a < {hexf(lo)}) a = {hexf(lo)};")
    if np.isfinite(hi):
        lines.append(f"        if (a > {hexf(hi)}) a = {hexf(hi)};")
    lines += ["        actions[i] = a;", "    }", "    return 0;", "}", ""]
    return "\n".join(lines)


def _onnxruntime(onnx_bytes: bytes, where: str) -> Callable[[np.ndarray], np.ndarray]:
    """One onnxruntime session of the graph (any chain MLP, with or without our metadata), ``(N, D) -> (N, A)``."""
    sess = inference_session(onnx_bytes, where)
    name_in, name_out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    return lambda obs: sess.run([name_out], {name_in: np.ascontiguousarray(obs, np.float32)})[0]


def generate_c(
    source: str | Path,
    out_dir: str | Path,
    target: str = "cortex-m4",
    int8: bool = False,
    fma: bool | None = None,
    golden_seed: int = 0,
    validation_samples: int = 10_000,
) -> CExport:
    """Write ``policy.h``, ``policy.c`` and ``export.json`` for the policy in ``source`` (a ``.onnx`` file).

    Args:
        source: exported ``policy.onnx``.
        out_dir: output directory (created if missing); files are replaced atomically.
        target: ``host``, ``cortex-m4`` or ``cortex-m7`` (sets the FMA default and the recommended flags).
        int8: per-output-channel int8 weights; the accuracy loss against the float32 model is measured on
            ``validation_samples`` observations drawn from the normaliser statistics and reported.
        fma: force fused multiply-add on/off (default: the target's).
        golden_seed: seed of the golden observation (``mean + N(0, 1) * std``).
        validation_samples: observations of the int8 accuracy measurement.

    Raises:
        FileNotFoundError: missing source. CodegenError: unsupported graph or target, or the numpy reference
        of the model disagrees with onnxruntime (a sign the graph was misread).
    """
    from sim2real.mcu.mlp_ir import UnsupportedGraph

    if target not in TARGETS:
        raise CodegenError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX policy not found: {path}")
    data = path.read_bytes()
    try:
        model = mlp_from_onnx(data)
    except UnsupportedGraph as e:
        raise CodegenError(f"{path}: {e}") from None
    check = model.normalizer_samples(256, seed=golden_seed + 1)
    ort_policy = _onnxruntime(data, str(path))
    ref = ort_policy(check)
    err = float(np.abs(model.forward(check) - ref).max())
    if not err <= 1e-5:  # the arrays were read wrongly: refuse rather than emit a different policy
        raise CodegenError(f"{path}: numpy reading of the graph differs from onnxruntime by {err:.2e}")
    int8_error = None
    if int8:
        val = model.normalizer_samples(validation_samples, seed=golden_seed + 2)
        full = model.forward(val)
        model = model.quantized()
        diff = np.abs(model.forward(val) - full)
        int8_error = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "samples": validation_samples}
    golden_obs = model.normalizer_samples(1, seed=golden_seed)
    golden_act = model.forward(golden_obs) if int8 else ort_policy(golden_obs)
    h, c = render(model, golden_obs[0], golden_act[0], target, fma, int8_error)
    hist_offset, hist_len = history_layout(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fma_used = TARGETS[target]["fma"] if fma is None else fma
    weight_bytes = sum(lay.weight.size * (1 if int8 else 4) + lay.bias.size * 4 + (lay.shape[0] * 4 if int8 else 0)
                       for lay in model.layers)  # fmt: skip
    manifest = {
        "source": str(path), "onnx_sha256": model.source_sha256, "model_hash": model.source_sha256[:16],
        "target": target, "fma": fma_used, "int8": int8, "obs_dim": model.obs_dim, "act_dim": model.act_dim,
        "history_offset": hist_offset, "history_len": hist_len,
        "layers": [[*lay.shape[::-1], lay.activation] for lay in model.layers], "macs": model.macs,
        "parameter_bytes": int(weight_bytes), "onnx_numpy_max_abs_diff": err, "int8_error": int8_error,
        "golden_obs": golden_obs[0].tolist(), "golden_act": golden_act[0].tolist(), "cflags": TARGETS[target]["cflags"],
    }  # fmt: skip
    header, src, man = out / "policy.h", out / "policy.c", out / "export.json"
    write_text_atomic(header, h)
    write_text_atomic(src, c)
    write_text_atomic(man, json.dumps(manifest, indent=2) + "\n")
    return CExport(header, src, man, model, manifest)
