"""The VecEnv contract every simulator backend implements, its spec, and the task registry.

A :class:`VecEnv` is batched and torch-native. ``reset(seed) -> obs`` and
``step(action) -> (obs, reward, terminated, truncated, info)`` return tensors whose leading dimension is
``num_envs`` on ``env.device``:

* ``obs``: ``dict[str, Tensor]`` of observation groups. ``policy`` is what the robot really senses (noise,
  action history); ``critic`` is privileged (noise-free state, disturbances, physical parameters).
* ``reward`` ``(N,)`` float32; ``terminated`` / ``truncated`` ``(N,)`` bool, kept separate.
* Auto-reset in the same step: envs that ended are reset before ``step`` returns, and their pre-reset
  observation is in ``info["final_obs"]`` (same groups; rows of envs that did not end equal ``obs``), so a
  truncated episode can be bootstrapped from its true last state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class ObsTerm:
    """One named slice of an observation group (written into the ONNX metadata)."""

    name: str
    start: int
    size: int
    frame: str = ""
    """Reference frame or ordering note, e.g. ``world``, ``body``, ``oldest->newest``."""
    noise_std: float = 0.0
    """Standard deviation of the sensor noise added in simulation (0 for privileged terms)."""


@dataclass
class EnvSpec:
    """Static description of a task: everything an exporter or a deploy node needs to know."""

    task: str
    obs_layout: dict[str, list[ObsTerm]]
    action_dim: int
    action_meaning: dict[str, Any]
    control_dt: float
    max_episode_steps: int
    action_low: float = -1.0
    action_high: float = 1.0
    robot: dict[str, Any] = field(default_factory=dict)

    @property
    def obs_dims(self) -> dict[str, int]:
        """Width of each observation group."""
        return {g: sum(t.size for t in terms) for g, terms in self.obs_layout.items()}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["obs_dims"] = self.obs_dims
        return d


class VecEnv:
    """Base class of batched torch environments (see the module docstring for the contract)."""

    num_envs: int
    device: torch.device
    spec: EnvSpec
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


# ----------------------------------------------------------------------------------------------- registry
@dataclass
class TaskEntry:
    name: str
    make: Callable[..., VecEnv]
    description: str
    config_cls: type | None = None
    """Dataclass of the task's settings (``make(cfg=...)`` accepts one)."""
    train_defaults: Callable[[], Any] | None = None
    """Returns the tuned :class:`~sim2real.policies.runner.TrainConfig` for this task."""
    validate: Callable[..., dict[str, float]] | None = None
    """``validate(policy_fn, env_cfg, episodes, seed) -> {"score": lower is better, ...figures}``: used by the
    runner to keep the best policy of a run (``best.pt``)."""


_REGISTRY: dict[str, TaskEntry] = {}


def register_task(entry: TaskEntry) -> None:
    if entry.name in _REGISTRY:
        raise ValueError(f"task {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry


def get_task(name: str) -> TaskEntry:
    import sim2real.sim.tasks  # noqa: F401  (registers the built-in tasks)

    if name not in _REGISTRY:
        raise KeyError(f"unknown task {name!r}; available: {', '.join(sorted(_REGISTRY)) or 'none'}")
    return _REGISTRY[name]


def list_tasks() -> list[TaskEntry]:
    import sim2real.sim.tasks  # noqa: F401

    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def make(name: str, **kwargs: Any) -> VecEnv:
    """Build a registered task: ``make("quadrotor-hover", num_envs=1024, device="cpu")``."""
    return get_task(name).make(**kwargs)


def uniform(lo: float, hi: float, shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """``U(lo, hi)`` samples of the given shape drawn from ``gen``."""
    return lo + (hi - lo) * torch.rand(shape, generator=gen, device=device)


def deg(x: float) -> float:
    return x * math.pi / 180.0
