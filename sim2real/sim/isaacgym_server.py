"""A VecTask served over a pipe, for a Python other than ours: Isaac Gym Preview 4 runs on Python <= 3.8 only.

Run by :class:`sim2real.sim.isaacgym_bridge.RemoteVecTask` as ``PYTHON isaacgym_server.py`` (this file, run in
place: it imports nothing from sim2real and keeps to Python 3.8 syntax), it builds one task with a factory
``module:function`` (default ``isaacgymenvs:make``) called with the JSON keyword arguments of its first request,
then answers requests on stdin with replies on stdout until ``close`` or end of input.

Framing, both ways: ``<u4 header length>`` + a JSON header + the raw little-endian buffers it lists (``{"buffers":
[[name, dtype, shape], ...]}``, concatenated in that order). Requests: ``make`` (``kwargs``), ``step`` (buffer
``actions`` ``(N, A)`` float32), ``reset_idx`` (buffer ``ids`` int64), ``compute_observations``, ``manual_seed``
(``seed``: Python's, numpy's and torch's generators), ``set_train_info`` (``env_frames``), ``close``. Every reply
carries the task's buffers after the request (``obs_buf``, ``states_buf``, ``reset_buf``, ``timeout_buf``,
``progress_buf``, and after ``step`` ``rew_buf``) and, after ``make``, its sizes; an exception becomes ``{"error":
"Type: message"}`` and the server goes on.
"""

from __future__ import annotations

import argparse
import importlib
import json
import struct
import sys
import traceback

BUFFERS = ("obs_buf", "states_buf", "rew_buf", "reset_buf", "timeout_buf", "progress_buf")
SIZES = ("num_envs", "num_obs", "num_states", "num_actions", "max_episode_length", "dt", "control_freq_inv",
         "clip_obs", "clip_actions")  # fmt: skip


def read_message(stream):
    """(header dict, {name: numpy array}) of the next message, or None at the end of the stream."""
    import numpy as np

    raw = stream.read(4)
    if len(raw) < 4:
        return None
    (n,) = struct.unpack("<I", raw)
    header = json.loads(stream.read(n).decode())
    arrays = {}
    for name, dtype, shape in header.pop("buffers", []):
        dt = np.dtype(dtype).newbyteorder("<")
        count = 1
        for s in shape:
            count *= s
        data = stream.read(count * dt.itemsize)
        if len(data) != count * dt.itemsize:
            raise EOFError(f"message cut short in buffer {name!r}")
        arrays[name] = np.frombuffer(data, dtype=dt).reshape(shape)
    return header, arrays


def write_message(stream, header, arrays=None):
    """Send ``header`` and the numpy ``arrays`` (``{name: array}``) in the framing of the module docstring."""
    import numpy as np

    arrays = arrays or {}
    parts = []
    listed = []
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        listed.append([name, a.dtype.str, list(a.shape)])
        parts.append(a.tobytes())
    body = json.dumps(dict(header, buffers=listed)).encode()
    stream.write(struct.pack("<I", len(body)) + body + b"".join(parts))
    stream.flush()


def _buffers(task):
    out = {}
    for name in BUFFERS:
        t = getattr(task, name, None)
        if t is not None:
            out[name] = t.detach().cpu().numpy()
    return out


def _sizes(task):
    out = {}
    for name in SIZES:
        v = getattr(task, name, None)
        if v is not None:
            v = float(v)
            out[name] = v if v != float("inf") else "inf"
    return out


def serve(factory, stdin, stdout):
    """Answer requests until ``close`` or the end of ``stdin``."""
    module_name, _, function = factory.partition(":")
    if module_name.startswith("isaacgym"):
        importlib.import_module("isaacgym")  # Isaac Gym must be imported before torch
    make = getattr(importlib.import_module(module_name), function)
    import torch

    task = None
    while True:
        msg = read_message(stdin)
        if msg is None:
            return
        header, arrays = msg
        op = header.get("op")
        try:
            reply = {}
            if op == "make":
                task = make(**header["kwargs"])
                reply["sizes"] = _sizes(task)
                reply["device"] = str(task.obs_buf.device)
            elif task is None:
                raise RuntimeError(f"request {op!r} before make")
            elif op == "step":
                actions = torch.from_numpy(arrays["actions"].copy()).to(task.obs_buf.device)
                _, _, _, extras = task.step(actions)
                reply["extras"] = {k: float(v) for k, v in extras.items() if _is_scalar(v)}
                if "time_outs" in extras:
                    task.timeout_buf = extras["time_outs"]
            elif op == "reset_idx":
                task.reset_idx(torch.from_numpy(arrays["ids"].copy()).to(task.obs_buf.device))
            elif op == "compute_observations":
                task.compute_observations()
            elif op == "manual_seed":
                import random

                import numpy as np

                random.seed(header["seed"])
                np.random.seed(header["seed"] % 2**32)
                torch.manual_seed(header["seed"])
            elif op == "set_train_info":
                task.set_train_info(header["env_frames"])
            elif op == "close":
                write_message(stdout, {"ok": True})
                return
            else:
                raise ValueError(f"unknown request {op!r}")
            write_message(stdout, dict(reply, ok=True), _buffers(task))
        except Exception as e:  # the client turns it into an exception of its own
            traceback.print_exc(file=sys.stderr)
            write_message(stdout, {"ok": False, "error": f"{type(e).__name__}: {e}"})


def _is_scalar(v):
    try:
        return getattr(v, "numel", lambda: 1)() == 1 and float(v) == float(v)
    except (TypeError, ValueError):
        return False


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--factory", default="isaacgymenvs:make", help="module:function that builds the task")
    p.add_argument("--path", action="append", default=[], help="directory added to sys.path (repeatable)")
    args = p.parse_args()
    sys.path[:0] = args.path
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # prints of the task go to stderr, the pipe carries messages only
    serve(args.factory, sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
