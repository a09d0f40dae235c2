"""The VecEnv contract every simulator backend and task implements, its static spec, and its config base.

A :class:`VecEnv` is batched and torch-native. ``reset(seed) -> obs`` and
``step(action) -> (obs, reward, terminated, truncated, info)`` return tensors whose leading dimension is
``num_envs`` on ``env.device``:

* ``obs``: ``dict[str, Tensor]`` of observation groups (:class:`~sim2real.core.obs.ObsGroup`). ``policy`` is
  what the robot really senses (noise, action history); ``critic`` is privileged (noise-free state,
  disturbances, physical parameters).
* ``reward`` ``(N,)`` float32; ``terminated`` / ``truncated`` ``(N,)`` bool, kept separate.
* Auto-reset in the same step: envs that ended are reset before ``step`` returns, and their pre-reset
  observation is in ``info["final_obs"]`` (same groups; rows of envs that did not end equal ``obs``), so a
  truncated episode can be bootstrapped from its true last state. ``info["episode"]`` holds the return and
  length of the episodes that ended, in the order of their env indices.

Optional capabilities have defaults here, so a learner calls them on any env without probing for them:
reward terms (:attr:`VecEnv.reward_term_names`, :meth:`VecEnv.reward_from_terms`), a progress-driven schedule
such as a reward curriculum (:meth:`VecEnv.set_env_steps`, :attr:`VecEnv.reward_weights`) and the state that
an exact resume needs (:meth:`VecEnv.state_dict`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

import torch

from sim2real.core.obs import ObsGroup

C = TypeVar("C", bound="EnvConfig")


@dataclass
class EnvConfig:
    """Settings every env has; a task's config subclasses it (``HoverConfig``, ``MujocoEnvConfig``, ...)."""

    num_envs: int = 16
    device: str = "cpu"

    def for_evaluation(self: C, num_envs: int) -> C:
        """This config with ``num_envs`` envs on the CPU, as evaluation and export rebuild it."""
        return replace(self, num_envs=num_envs, device="cpu")


@dataclass
class EnvSpec:
    """Static description of a task: everything an exporter or a deploy node needs to know."""

    task: str
    obs_groups: dict[str, ObsGroup]
    action_dim: int
    action_meaning: dict[str, Any]
    control_dt: float
    max_episode_steps: int
    action_low: float = -1.0
    action_high: float = 1.0
    robot: dict[str, Any] = field(default_factory=dict)
    sensors: dict[str, Any] = field(default_factory=dict)
    """Descriptions of structured sensors in the observations (``tactile``: kind, shape, channels, normalisation,
    pad order); exported into a policy's metadata and checked against the env that runs it."""

    @property
    def obs_dims(self) -> dict[str, int]:
        """Width of each observation group."""
        return {g: group.dim for g, group in self.obs_groups.items()}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["obs_groups"] = {g: group.to_json() for g, group in self.obs_groups.items()}
        d["obs_dims"] = self.obs_dims
        return d


class VecEnv:
    """Base class of batched torch environments (see the module docstring for the contract)."""

    num_envs: int
    device: torch.device
    spec: EnvSpec
    steps: torch.Tensor
    """``(N,)`` long: steps taken in each env's current episode (rsl_rl's ``episode_length_buf``)."""
    cfg: EnvConfig
    """The typed config the env was built from (a task's :class:`EnvConfig` subclass)."""
    #: Names of the per-step reward terms the env reports in ``info["reward_terms"]`` ``(N, T)``;
    #: empty when the reward is not decomposed. Learners that replay old data recompute rewards from the
    #: stored terms with :meth:`reward_from_terms`, so a reward curriculum applies to the whole buffer.
    reward_term_names: tuple[str, ...] = ()

    def reset(self, seed: int | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def step(
        self, action: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        raise NotImplementedError

    def reward_from_terms(self, terms: torch.Tensor) -> torch.Tensor:
        """Reward ``(B,)`` from stored reward terms ``(B, T)`` under the env's current weights."""
        raise NotImplementedError(f"{type(self).__name__} does not decompose its reward")

    def set_env_steps(self, env_steps: int) -> None:
        """Tell the env how many env steps (summed over envs) training has taken; schedules follow it.

        Default: nothing depends on training progress.
        """

    @property
    def reward_weights(self) -> dict[str, float]:
        """Current weight of each reward term (logged as the curriculum); default: none."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything that evolves during a run and an exact resume needs (default: nothing)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the default env keeps no state, so only an empty dict fits."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no resumable state, got keys {sorted(state)}")

    def close(self) -> None:
        """Release simulator resources (no-op for pure torch envs)."""

    def check_action(self, action: torch.Tensor) -> torch.Tensor:
        """Validate an action batch ``(num_envs, action_dim)``; returns it as float32 on ``self.device``.

        Raises:
            TypeError: not a floating-point tensor.
            ValueError: wrong shape, or NaN/Inf entries (the offending env indices are named).
        """
        if not isinstance(action, torch.Tensor):
            raise TypeError(f"action must be a torch.Tensor, got {type(action).__name__}")
        if not action.is_floating_point():
            raise TypeError(f"action must be a floating-point tensor, got dtype {action.dtype}")
        want = (self.num_envs, self.spec.action_dim)
        if tuple(action.shape) != want:
            raise ValueError(f"action shape must be {want} (num_envs, action_dim), got {tuple(action.shape)}")
        action = action.to(self.device, torch.float32)
        bad = ~torch.isfinite(action).all(-1)
        if bad.any():
            idx = bad.nonzero().flatten()[:8].tolist()
            raise ValueError(f"action contains NaN/Inf for env(s) {idx}{'...' if int(bad.sum()) > 8 else ''}")
        return action


def uniform(lo: float, hi: float, shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """``U(lo, hi)`` samples of the given shape drawn from ``gen``."""
    return lo + (hi - lo) * torch.rand(shape, generator=gen, device=device)


def deg(x: float) -> float:
    return x * math.pi / 180.0
