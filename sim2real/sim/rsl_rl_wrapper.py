"""One of our batched :class:`~sim2real.sim.vecenv.VecEnv` as an rsl_rl ``VecEnv`` (rsl-rl-lib >= 3).

rsl_rl's on-policy runners (PPO, distillation) read observations as a ``TensorDict`` of named groups and map
them to the actor and critic with ``obs_groups``; our envs already speak in groups (``policy``, ``critic``), so
asymmetric actor-critic carries over unchanged::

    from rsl_rl.runners import OnPolicyRunner
    env = RslRlVecEnv(make("mujoco-hopper", num_envs=64))
    runner = OnPolicyRunner(env, {"obs_groups": {"actor": ["policy"], "critic": ["critic"]}, ...}, "runs/ppo")
    runner.learn(100)

Contract mapping:

* ``get_observations()`` / the observations of ``step`` -> ``TensorDict`` of every group, batch ``(N,)``.
  Our envs reset finished episodes in the same step, so these are already the first observations of the new
  episodes, as rsl_rl (and Isaac Lab) expect.
* ``step(actions (N, A))`` -> ``(obs, rewards (N,), dones (N,) long, extras)``. ``dones`` = terminated or
  truncated; ``extras["time_outs"]`` (N,) marks truncations that were not terminations (rsl_rl bootstraps
  them); ``extras["log"]`` holds ``/episode/return`` and ``/episode/length`` of the episodes that ended.
* ``episode_length_buf`` is the env's own per-env step counter, so ``learn(init_at_random_ep_len=True)``
  really staggers the episodes' time limits.
* Actions outside ``[action_low, action_high]`` are clipped (rsl_rl's Gaussian samples are unbounded).
"""

from __future__ import annotations

from typing import Any

import torch

from sim2real.sim.vecenv import VecEnv

try:  # subclass rsl_rl's ABC when it is installed (isinstance checks); the wrapper only needs tensordict
    from rsl_rl.env import VecEnv as _RslRlBase
except ImportError:  # pragma: no cover - exercised only without rsl-rl-lib
    _RslRlBase = object


class RslRlVecEnv(_RslRlBase):  # pyright: ignore[reportGeneralTypeIssues]  (object without rsl_rl)
    """rsl_rl view of a sim2real ``VecEnv`` (see the module docstring)."""

    def __init__(self, env: VecEnv, clip_actions: bool = True) -> None:
        try:
            from tensordict import TensorDict
        except ImportError as e:
            raise ImportError("RslRlVecEnv needs tensordict (pip install rsl-rl-lib)") from e
        if not isinstance(env, VecEnv):
            raise TypeError(f"RslRlVecEnv wraps a sim2real VecEnv, got {type(env).__name__}")
        self._td = TensorDict
        self.env = env
        self.num_envs = env.num_envs
        self.num_actions = env.spec.action_dim
        self.max_episode_length = env.spec.max_episode_steps
        self.device = env.device
        self.cfg: dict[str, Any] = env.spec.to_dict()
        self.clip_actions = clip_actions
        self._obs = self._wrap(env.reset())

    def _wrap(self, obs: dict[str, torch.Tensor]) -> Any:
        return self._td(dict(obs), batch_size=[self.num_envs], device=self.device)

    @property
    def episode_length_buf(self) -> torch.Tensor:
        """Steps taken in the current episode, ``(N,)`` long (the env's own counter)."""
        return self.env.steps

    @episode_length_buf.setter
    def episode_length_buf(self, value: torch.Tensor) -> None:
        self.env.steps.copy_(value.to(self.env.steps.device, self.env.steps.dtype))

    def get_observations(self) -> Any:
        """Current observations: ``TensorDict`` of groups, each ``(N, dim)``."""
        return self._obs

    def reset(self, seed: int | None = None) -> Any:
        """Reset every env (rsl_rl never calls this; for users of the wrapper)."""
        self._obs = self._wrap(self.env.reset(seed))
        return self._obs

    def step(self, actions: torch.Tensor) -> tuple[Any, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """One vector step; see the module docstring for the returned tuple."""
        if self.clip_actions:
            actions = actions.clamp(self.env.spec.action_low, self.env.spec.action_high)
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self._obs = self._wrap(obs)
        extras: dict[str, Any] = {"time_outs": (truncated & ~terminated).to(self.device), "log": {}}
        episode = info.get("episode")
        if episode is not None and len(episode["return"]):
            extras["log"]["/episode/return"] = episode["return"].float().mean()
            extras["log"]["/episode/length"] = episode["length"].float().mean()
        return self._obs, reward.float(), (terminated | truncated).long(), extras

    def close(self) -> None:
        self.env.close()
