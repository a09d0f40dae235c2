"""Fit the rational tanh used by the generated C code (``TANH_P``/``TANH_Q`` in ``c_codegen.py``).

``tanh(x) ~ x P(x^2) / Q(x^2)`` with ``Q(0) = 1``, degree 4 in ``x^2`` each, on ``[0, CLAMP]``. The fit solves the
linearised problem ``x P(x^2) - tanh(x) Q(x^2) = 0`` by least squares and re-weights the samples by their
current error (Lawson's iteration), which drives the solution toward the minimax one. Prints the
coefficients and the max abs error of the float32 evaluation (Horner, as in the C code) over [-12, 12].

    python scripts/fit_tanh.py
"""

from __future__ import annotations

import numpy as np

CLAMP, DEG_P, DEG_Q = 8.0, 4, 4


def fit(iters: int = 60) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(1e-6, CLAMP, 20001)
    t, x2, w = np.tanh(x), x * x, np.ones_like(x)
    for _ in range(iters):
        a = np.hstack([np.stack([x * x2**i for i in range(DEG_P + 1)], 1),
                       -np.stack([t * x2**j for j in range(1, DEG_Q + 1)], 1)])  # fmt: skip
        sw = np.sqrt(w)
        coef, *_ = np.linalg.lstsq(a * sw[:, None], t * sw, rcond=None)
        p, q = coef[: DEG_P + 1], np.concatenate([[1.0], coef[DEG_P + 1 :]])
        err = np.abs(x * np.polyval(p[::-1], x2) / np.polyval(q[::-1], x2) - t)
        w = w * (err / err.max() + 1e-3)
        w /= w.mean()
    return p, q


def eval_f32(p: np.ndarray, q: np.ndarray, x: np.ndarray) -> np.ndarray:
    x = np.clip(x.astype(np.float32), -np.float32(CLAMP), np.float32(CLAMP))
    x2 = x * x
    num, den = np.float32(p[-1]), np.float32(q[-1])
    for c in p[-2::-1]:
        num = num * x2 + np.float32(c)
    for c in q[-2::-1]:
        den = den * x2 + np.float32(c)
    return x * num / den


if __name__ == "__main__":
    p, q = fit()
    xs = np.linspace(-12, 12, 2_000_001).astype(np.float32)
    err = np.abs(eval_f32(p, q, xs).astype(np.float64) - np.tanh(xs.astype(np.float64))).max()
    print("TANH_P =", tuple(p.tolist()))
    print("TANH_Q =", tuple(q.tolist()))
    print(f"max abs error (float32 Horner) on [-12, 12]: {err:.3e}")
