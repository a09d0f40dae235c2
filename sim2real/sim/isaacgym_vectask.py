"""Isaac Gym tasks behind our VecEnv contract: an IsaacGymEnvs ``VecTask`` wrapped by :class:`VecTaskEnv`.

IsaacGymEnvs' ``VecTask`` (Isaac Gym Preview 4) keeps its state in GPU tensors that the task fills in
``post_physics_step``: ``obs_buf`` ``(N, num_obs)``, ``states_buf`` ``(N, num_states)`` (the privileged state of
asymmetric actor-critic, empty when ``num_states`` is 0), ``rew_buf`` ``(N,)``, ``reset_buf`` ``(N,)`` (1 = the
episode ended at this step), ``timeout_buf`` ``(N,)`` (1 = it ended at the time limit), ``progress_buf`` ``(N,)``
(steps in the episode) and ``extras`` (``extras["time_outs"]`` = ``timeout_buf``). ``step(actions)`` clips the
actions to ``+-clip_actions``, simulates ``control_freq_inv`` physics steps and returns
``({"obs": ..., "states": ...}, rew_buf, reset_buf, extras)``, observations clipped to ``+-clip_obs``.

Contract mapping (our contract: :mod:`sim2real.sim.vecenv`):

* groups: ``policy`` = ``obs`` ``(N, num_obs)``; ``critic`` = ``states`` ``(N, num_states)`` (the ``policy`` group
  when the task has no states), so SAC's asymmetric critic reads Isaac Gym's privileged state as is.
* ``terminated = reset & ~time_out``, ``truncated = reset & time_out``.
* Resets. IsaacGymEnvs tasks reset an ended env at the start of their *next* ``post_physics_step`` (its next
  action is lost and its next reward belongs to the new episode's first state). With ``reset="adapter"`` (the
  default) the adapter resets ended envs in the same step instead: it keeps the ended envs' observations as
  ``info["final_obs"]``, calls the task's ``reset_idx(ids)`` (which also clears their ``reset_buf``, so the task
  does not reset them again) and ``compute_observations()``, as legged_gym does inside its own step, and returns
  the new episodes' first observations. ``reset="task"`` is for tasks that reset inside their own step
  (legged_gym's ``LeggedRobot``): the observations they return are already the new episodes' and they keep no
  pre-reset observation, so ``info["final_obs"]`` is the returned observation (a truncated episode is then
  bootstrapped from the next episode's first state; prefer ``reset="adapter"`` where the task allows it).
* ``steps`` and the episode lengths are counted by the adapter (``progress_buf`` conventions differ between
  tasks); :meth:`VecEnv.set_env_steps` -> the task's ``set_train_info`` (curricula); :meth:`VecEnv.state_dict`
  -> its ``get_env_state`` / ``set_env_state``.
* Randomness: IsaacGymEnvs tasks draw from torch's global generators; ``reset(seed)`` seeds them
  (``torch.manual_seed``) and resets every env. ``isaacgymenvs.make(seed=...)`` seeds the simulation itself.

Isaac Gym Preview 4 is not on the package index and runs on Python <= 3.8, sim2real on >= 3.10: the task then runs
in a Python 3.8 process (``IsaacGymConfig.python``, :mod:`sim2real.sim.isaacgym_bridge`; install steps:
:data:`INSTALL_STEPS`, ``docs/isaacgym.md``). In this interpreter (a build of Isaac Gym for it) it must be imported
before torch, which :func:`require_isaacgym` reports. The adapter itself needs neither: it runs any object that
follows the ``VecTask`` conventions.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Any

import torch

from sim2real.core.obs import ObsGroup, ObsTerm
from sim2real.sim.vecenv import EnvConfig, EnvSpec, VecEnv

INSTALL_STEPS = (
    "Isaac Gym Preview 4 is not on the package index and runs on Python <= 3.8 only: download "
    "IsaacGym_Preview_4_Package.tar.gz from https://developer.nvidia.com/isaac-gym, create a Python 3.8 environment, "
    "`pip install -e isaacgym/python` and `pip install -e IsaacGymEnvs` (git clone https://github.com/isaac-sim/IsaacGymEnvs) "
    "there, then run sim2real (Python >= 3.10) with `--set env.python=/path/to/that/env/bin/python` (docs/isaacgym.md)"
)  # fmt: skip
RESET_MODES = ("adapter", "task")


@dataclass
class IsaacGymConfig(EnvConfig):
    """An IsaacGymEnvs task built by ``isaacgymenvs.make``."""

    task: str = "Ant"
    """IsaacGymEnvs task name (``Ant``, ``Humanoid``, ``Anymal``, ``ShadowHand``, ...)."""
    num_envs: int = 4096
    device: str = "cuda:0"
    """Simulation and learning device (Isaac Gym's GPU pipeline; ``cpu`` runs its CPU pipeline)."""
    seed: int = 0
    """Seed of the simulation (``isaacgymenvs.make(seed=...)``)."""
    reset: str = "adapter"
    """Who resets ended envs: ``adapter`` (same step, for IsaacGymEnvs tasks) or ``task`` (see the module docs)."""
    python: str = ""
    """Interpreter of a Python 3.8 environment with Isaac Gym: the task runs there behind a pipe
    (:mod:`sim2real.sim.isaacgym_bridge`); empty: Isaac Gym is imported in this process."""

    def __post_init__(self) -> None:
        if self.reset not in RESET_MODES:
            raise ValueError(f"reset must be one of {RESET_MODES}, got {self.reset!r}")

    def for_evaluation(self, num_envs: int) -> IsaacGymConfig:
        """Evaluation keeps the device: Isaac Gym's GPU pipeline is the one the task was trained in."""
        return replace(self, num_envs=num_envs)


def require_isaacgym() -> tuple[Any, Any]:
    """The ``isaacgym`` and ``isaacgymenvs`` modules of this interpreter; ImportError naming the install steps."""
    try:
        return importlib.import_module("isaacgym"), importlib.import_module("isaacgymenvs")
    except ImportError as e:
        if "torch" in str(e).lower():  # isaacgym refuses to load after torch
            raise ImportError(f"Isaac Gym must be imported before torch ({e}): name the isaacgym-* task on the "
                              "sim2real command line (it imports Isaac Gym first) or import isaacgym first") from None
        raise ImportError(f"the Isaac Gym tasks need isaacgym and isaacgymenvs ({e}). {INSTALL_STEPS}") from None


def make_isaacgym(cfg: IsaacGymConfig) -> VecTaskEnv:
    """Build ``cfg.task`` with ``isaacgymenvs.make`` (headless), here or in ``cfg.python``, and wrap it."""
    kwargs = {"seed": cfg.seed, "task": cfg.task, "num_envs": cfg.num_envs, "sim_device": cfg.device,
              "rl_device": cfg.device, "graphics_device_id": -1, "headless": True}  # fmt: skip
    if cfg.python:
        from sim2real.sim.isaacgym_bridge import RemoteVecTask

        task: Any = RemoteVecTask(cfg.python, kwargs)
    else:
        _, isaacgymenvs = require_isaacgym()
        task = isaacgymenvs.make(**kwargs)
    return VecTaskEnv(task, cfg, name=f"isaacgym-{cfg.task.lower()}")


class VecTaskEnv(VecEnv):
    """A ``VecTask`` (or any object with its buffers and methods) as a sim2real :class:`VecEnv`.

    Args:
        task: the VecTask: ``num_envs``, ``num_obs``, ``num_states``, ``num_actions``, ``max_episode_length``, the
            buffers of the module docstring, ``step``, ``reset_idx`` and (``reset="adapter"``)
            ``compute_observations``; ``dt`` and ``control_freq_inv`` give the control period when present.
        cfg: the env config (its ``reset`` mode; ``num_envs`` must match the task's).
        name: the task name reported in :attr:`spec`.
    """

    cfg: IsaacGymConfig

    def __init__(self, task: Any, cfg: IsaacGymConfig, name: str) -> None:
        for attr in ("num_envs", "num_obs", "num_actions", "max_episode_length", "obs_buf", "reset_buf", "step",
                     "reset_idx"):  # fmt: skip
            if not hasattr(task, attr):
                raise TypeError(f"{type(task).__name__} is not a VecTask: it has no {attr!r}")
        if cfg.reset == "adapter" and not hasattr(task, "compute_observations"):
            raise TypeError(f"{type(task).__name__} has no compute_observations(): use reset='task' if it resets "
                            "ended envs inside its own step")  # fmt: skip
        if int(task.num_envs) != cfg.num_envs:
            raise ValueError(f"the task has {task.num_envs} envs, the config {cfg.num_envs}")
        self.task, self.cfg = task, cfg
        self.num_envs = int(task.num_envs)
        self.device = torch.device(task.obs_buf.device)
        self.clip_obs = float(getattr(task, "clip_obs", float("inf")))
        n_states = int(getattr(task, "num_states", 0) or 0)
        policy = ObsGroup.of(ObsTerm("obs", int(task.num_obs), frame="the VecTask's obs_buf"))
        critic = ObsGroup.of(ObsTerm("states", n_states, frame="the VecTask's states_buf")) if n_states else policy
        dt = float(getattr(task, "dt", 0.0)) * int(getattr(task, "control_freq_inv", 1))
        self.spec = EnvSpec(task=name, obs_groups={"policy": policy, "critic": critic}, action_dim=int(task.num_actions),
                            action_meaning={"kind": "VecTask actions", "clip": float(getattr(task, "clip_actions", 1.0))},
                            control_dt=dt, max_episode_steps=int(task.max_episode_length),
                            robot={"engine": "isaacgym", "task": cfg.task})  # fmt: skip
        self._return = torch.zeros(self.num_envs, device=self.device)
        self.steps = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)

    def _obs(self) -> dict[str, torch.Tensor]:
        """The task's buffers as our groups, clipped like ``VecTask.step`` clips them, float32 on :attr:`device`."""
        obs = self.task.obs_buf.clamp(-self.clip_obs, self.clip_obs).to(self.device, torch.float32)
        if self.spec.obs_groups["critic"].names == ("states",):
            states = self.task.states_buf.clamp(-self.clip_obs, self.clip_obs).to(self.device, torch.float32)
        else:
            states = obs
        return {"policy": obs.clone(), "critic": states.clone()}

    def reset(self, seed: int | None = None) -> dict[str, torch.Tensor]:
        if seed is not None:  # the generators the task draws from: this process's, or its server's
            (self.task.manual_seed if hasattr(self.task, "manual_seed") else torch.manual_seed)(seed)
        self.task.reset_idx(torch.arange(self.num_envs, device=self.device))
        if hasattr(self.task, "compute_observations"):
            self.task.compute_observations()
        self._return.zero_()
        self.steps.zero_()
        return self._obs()

    def step(self, action: torch.Tensor):
        action = self.check_action(action)
        _, reward, reset, extras = self.task.step(action)
        reward = reward.to(self.device, torch.float32).reshape(self.num_envs).clone()  # the task overwrites rew_buf
        done = reset.to(self.device).reshape(self.num_envs) != 0
        time_out = extras.get("time_outs")
        time_out = torch.zeros_like(done) if time_out is None else time_out.to(self.device).reshape(-1) != 0
        truncated, terminated = done & time_out, done & ~time_out
        self._return += reward
        self.steps += 1
        info: dict[str, Any] = {"extras": extras}
        final = self._obs()
        if done.any():
            ids = done.nonzero().flatten()
            info["episode"] = {"return": self._return[ids].clone(), "length": self.steps[ids].clone()}
            self._return[ids], self.steps[ids] = 0.0, 0
            if self.cfg.reset == "adapter":
                self.task.reset_idx(ids)
                self.task.compute_observations()
        info["final_obs"] = final
        return self._obs() if self.cfg.reset == "adapter" else final, reward, terminated, truncated, info

    def set_env_steps(self, env_steps: int) -> None:
        if hasattr(self.task, "set_train_info"):
            self.task.set_train_info(env_steps)

    def state_dict(self) -> dict[str, Any]:
        state = self.task.get_env_state() if hasattr(self.task, "get_env_state") else None
        return {} if state is None else {"env_state": state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.task.set_env_state(state["env_state"])

    def close(self) -> None:
        if hasattr(self.task, "close"):  # a RemoteVecTask
            self.task.close()
            return
        gym, sim = getattr(self.task, "gym", None), getattr(self.task, "sim", None)
        if gym is not None and sim is not None:
            if getattr(self.task, "viewer", None) is not None:
                gym.destroy_viewer(self.task.viewer)
            gym.destroy_sim(sim)
            self.task.sim = None
