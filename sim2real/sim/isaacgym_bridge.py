"""A VecTask in another Python process (Isaac Gym Preview 4's Python <= 3.8), seen here as a local VecTask.

:class:`RemoteVecTask` starts ``PYTHON sim2real/sim/isaacgym_server.py`` (the protocol is in that module's
docstring), builds the task there and mirrors its buffers (``obs_buf``, ``states_buf``, ``rew_buf``, ``reset_buf``,
``timeout_buf``, ``progress_buf``: CPU tensors, refreshed by every call) and methods (``step``, ``reset_idx``,
``compute_observations``, ``set_train_info``; ``manual_seed`` seeds the server), so
:class:`~sim2real.sim.isaacgym_vectask.VecTaskEnv` wraps it like an in-process task. The buffers cross the pipe as
raw float32/int64 bytes each step (about ``N (num_obs + num_states + 4) * 4`` bytes), so the learner runs on this
side's device and the simulation on the other's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sim2real.sim.isaacgym_server import read_message, write_message

SERVER = Path(__file__).with_name("isaacgym_server.py")


class RemoteError(RuntimeError):
    """The server failed a request (its message and type are in the text) or died."""


class RemoteVecTask:
    """A VecTask built by ``factory(**kwargs)`` in ``python`` (see the module docstring).

    Args:
        python: the interpreter of the environment that has the task (e.g. a Python 3.8 env with Isaac Gym).
        kwargs: keyword arguments of the factory (``isaacgymenvs.make``: seed, task, num_envs, sim_device, ...).
        factory: ``module:function`` building the task in the server.
        paths: directories the server adds to its ``sys.path``.
    """

    obs_buf: torch.Tensor
    states_buf: torch.Tensor
    rew_buf: torch.Tensor
    reset_buf: torch.Tensor
    timeout_buf: torch.Tensor
    progress_buf: torch.Tensor

    def __init__(self, python: str, kwargs: dict[str, Any], factory: str = "isaacgymenvs:make",
                 paths: tuple[str, ...] = ()) -> None:  # fmt: skip
        cmd = [python, str(SERVER), "--factory", factory] + [f"--path={p}" for p in paths]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except OSError as e:
            raise RemoteError(f"cannot start the VecTask server with {python!r}: {e}") from None
        self.extras: dict[str, Any] = {}
        reply = self._call({"op": "make", "kwargs": kwargs})
        sizes = {k: float("inf") if v == "inf" else v for k, v in reply["sizes"].items()}
        self.num_envs, self.num_obs = int(sizes["num_envs"]), int(sizes["num_obs"])
        self.num_states, self.num_actions = int(sizes.get("num_states", 0)), int(sizes["num_actions"])
        self.max_episode_length = int(sizes["max_episode_length"])
        self.dt, self.control_freq_inv = float(sizes.get("dt", 0.0)), int(sizes.get("control_freq_inv", 1))
        self.clip_obs, self.clip_actions = float(sizes.get("clip_obs", np.inf)), float(sizes.get("clip_actions", 1.0))
        self.remote_device = reply["device"]

    def _call(self, header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        """One request and its reply; the buffers of the reply become this object's tensors."""
        if self._proc.poll() is not None:
            raise RemoteError(f"the VecTask server exited with status {self._proc.returncode}")
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            write_message(self._proc.stdin, header, arrays)
            msg = read_message(self._proc.stdout)
        except (BrokenPipeError, EOFError, ValueError) as e:
            msg, why = None, e
        else:
            why = None
        if msg is None:
            raise RemoteError(f"the VecTask server stopped answering ({why or 'end of output'}; its stderr has why)")
        reply, buffers = msg
        if not reply.get("ok"):
            raise RemoteError(f"VecTask server: {reply.get('error')}")
        for name, a in buffers.items():
            setattr(self, name, torch.from_numpy(a.copy()))
        return reply

    def step(self, actions: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, dict[str, Any]]:
        reply = self._call({"op": "step"}, {"actions": actions.detach().cpu().numpy().astype(np.float32)})
        self.extras = dict(reply.get("extras", {}), time_outs=self.timeout_buf)
        return {"obs": self.obs_buf}, self.rew_buf, self.reset_buf, self.extras

    def reset_idx(self, env_ids: torch.Tensor) -> None:
        self._call({"op": "reset_idx"}, {"ids": env_ids.detach().cpu().numpy().astype(np.int64)})

    def compute_observations(self) -> None:
        self._call({"op": "compute_observations"})

    def manual_seed(self, seed: int) -> None:
        """Seed the server's Python, numpy and torch generators (those the task draws from)."""
        self._call({"op": "manual_seed", "seed": int(seed)})

    def set_train_info(self, env_frames: int) -> None:
        self._call({"op": "set_train_info", "env_frames": int(env_frames)})

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._call({"op": "close"})
            except RemoteError:
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
