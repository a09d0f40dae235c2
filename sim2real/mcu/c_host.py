"""Build generated ``policy.c`` for the host with gcc and call it through ctypes (tests, accuracy checks).

The host build uses the same ISO C flags as the firmware (``-std=c11``, so no floating-point contraction):
without ``POLICY_USE_FMA`` its results are bit-identical to the Cortex-M build.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np


class HostBuildError(RuntimeError):
    """gcc is missing or failed on the generated code (its output is in the message)."""


class HostPolicy:
    """``policy_eval`` of a generated C directory, compiled into a shared library.

    ``policy(obs)`` maps ``(N, obs_dim)`` float32 observations to ``(N, act_dim)`` actions, one
    ``policy_eval`` call per row; rows with NaN/Inf come back as NaN (``policy_eval`` returned 1).

    Args:
        c_dir: directory with ``policy.h`` and ``policy.c``.
        obs_dim, act_dim: the dimensions the header declares.
        extra_cflags: e.g. ``["-DPOLICY_USE_FMA"]``.
    """

    def __init__(self, c_dir: str | Path, obs_dim: int, act_dim: int, extra_cflags: list[str] | None = None) -> None:
        cc = shutil.which("gcc") or shutil.which("cc")
        if cc is None:
            raise HostBuildError("no C compiler (gcc) on PATH")
        src = Path(c_dir) / "policy.c"
        if not src.is_file():
            raise FileNotFoundError(f"no generated policy.c in {c_dir}")
        self._tmp = tempfile.TemporaryDirectory(prefix="sim2real_host_")
        lib = Path(self._tmp.name) / "libpolicy.so"
        cmd = [cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-Wdouble-promotion", "-shared", "-fPIC",
               *(extra_cflags or []), "-o", str(lib), str(src), "-lm"]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise HostBuildError(f"gcc failed on {src}:\n{res.stderr.strip()}")
        self.lib = ctypes.CDLL(str(lib))
        fptr = ctypes.POINTER(ctypes.c_float)
        self.lib.policy_eval.argtypes = [fptr, fptr]
        self.lib.policy_eval.restype = ctypes.c_int
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.golden_obs = np.ctypeslib.as_array((ctypes.c_float * obs_dim).in_dll(self.lib, "policy_golden_obs")).copy()
        self.golden_act = np.ctypeslib.as_array((ctypes.c_float * act_dim).in_dll(self.lib, "policy_golden_act")).copy()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(obs, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise ValueError(f"obs must have shape (N, {self.obs_dim}), got {x.shape}")
        out = np.empty((len(x), self.act_dim), np.float32)
        fptr = ctypes.POINTER(ctypes.c_float)
        for i in range(len(x)):
            rc = self.lib.policy_eval(x[i].ctypes.data_as(fptr), out[i].ctypes.data_as(fptr))
            if rc != 0:
                out[i] = np.nan
        return out
