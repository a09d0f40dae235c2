"""Gymnasium wrappers in both directions (the hover task registers ``sim2real/QuadrotorHover-v0`` with them).

* :class:`ToGymnasiumVector`: one of our batched torch :class:`~sim2real.sim.vecenv.VecEnv` as a
  ``gymnasium.vector.VectorEnv`` with numpy arrays and same-step autoreset (Gymnasium's ``SAME_STEP`` mode:
  ``infos["final_obs"]`` is an object array holding the pre-reset observation of every env that ended, ``None``
  elsewhere, with the boolean mask ``infos["_final_obs"]``).
* :class:`ToGymnasiumEnv`: a one-env VecEnv as a plain ``gymnasium.Env`` (numpy, Python ``bool`` flags) that does
  *not* reset on its own: after ``terminated`` or ``truncated`` the caller calls :meth:`ToGymnasiumEnv.reset`.
  Usable by stable-baselines3 (``check_env`` passes).
* :class:`FromGymnasium`: any Gymnasium env with a ``Box`` observation (an id or a factory) vectorised into our
  VecEnv contract (torch tensors, ``policy``/``critic`` groups, same-step autoreset with ``info["final_obs"]``).

Observation groups map to spaces as follows: a single group (``obs_group="policy"``, the default) is a flat
``Box(-inf, inf, (dim,), float32)``; ``obs_group=None`` gives a ``Dict`` space with one such ``Box`` per group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import batch_space

from sim2real.core.obs import ObsGroup, ObsTerm
from sim2real.sim.vecenv import EnvConfig, EnvSpec, VecEnv


def _obs_space(spec: EnvSpec, obs_group: str | None) -> spaces.Space:
    """Single-env observation space of one group (flat ``Box``) or of all groups (``Dict``)."""
    dims = spec.obs_dims
    box: dict[str, spaces.Space] = {g: spaces.Box(-np.inf, np.inf, (d,), np.float32) for g, d in dims.items()}
    if obs_group is None:
        return spaces.Dict(box)
    if obs_group not in dims:
        raise KeyError(f"observation group {obs_group!r} not provided by the env (has {sorted(dims)})")
    return box[obs_group]


def _to_numpy(obs: dict[str, torch.Tensor], obs_group: str | None) -> np.ndarray | dict[str, np.ndarray]:
    """Batched torch observation dict -> numpy array ``(N, dim)`` (one group) or dict of them (all groups)."""
    if obs_group is not None:
        return obs[obs_group].detach().cpu().numpy()
    return {k: v.detach().cpu().numpy() for k, v in obs.items()}


def _row(obs: np.ndarray | dict[str, np.ndarray], i: int) -> np.ndarray | dict[str, np.ndarray]:
    """Observation of env ``i`` (copy) from a batched numpy observation."""
    if isinstance(obs, dict):
        return {k: v[i].copy() for k, v in obs.items()}
    return obs[i].copy()


# ----------------------------------------------------------------------------------------------- ours -> Gymnasium
class ToGymnasiumVector(gymnasium.vector.VectorEnv):
    """Our :class:`VecEnv` as a Gymnasium vector env (numpy in and out, same-step autoreset).

    ``step`` returns observations ``(N, dim)`` float32 (or a dict of them), rewards ``(N,)`` float32 and
    terminations/truncations ``(N,)`` bool. ``infos`` follows Gymnasium's vector conventions: every key has a
    ``_key`` mask; ``final_obs``/``_final_obs`` and ``episode`` = {``r``, ``l``}/``_episode`` appear in steps where
    some env ended; ``reward_terms`` ``(N, T)`` is passed on when the env reports it.

    Args:
        env: the batched env (any ``num_envs``, any device).
        obs_group: observation group exposed as the observation, or ``None`` for all groups as a ``Dict``.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, env: VecEnv, obs_group: str | None = "policy") -> None:
        self.env = env
        self.obs_group = obs_group
        self.num_envs = env.num_envs
        self.single_observation_space = _obs_space(env.spec, obs_group)
        self.single_action_space = spaces.Box(
            env.spec.action_low, env.spec.action_high, (env.spec.action_dim,), np.float32
        )
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray | dict[str, np.ndarray], dict[str, Any]]:
        """Reset every env; ``seed`` (an int, or a list whose first entry is used) re-seeds the env's generator."""
        if isinstance(seed, (list, tuple)):
            seed = seed[0]
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        return _to_numpy(self.env.reset(seed), self.obs_group), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray | dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step of every env with ``actions`` ``(N, action_dim)``; ended envs are reset in the same step."""
        a = torch.as_tensor(np.asarray(actions, dtype=np.float32), device=self.env.device)
        obs, reward, terminated, truncated, info = self.env.step(a.reshape(self.num_envs, -1))
        n = self.num_envs
        term, trunc = terminated.cpu().numpy(), truncated.cpu().numpy()
        infos: dict[str, Any] = {}
        if "reward_terms" in info:
            infos["reward_terms"] = info["reward_terms"].detach().cpu().numpy()
            infos["_reward_terms"] = np.ones(n, dtype=bool)
        done = term | trunc
        if done.any():
            final = _to_numpy(info["final_obs"], self.obs_group)
            infos["final_obs"] = np.full(n, None, dtype=object)
            for i in np.flatnonzero(done):
                infos["final_obs"][i] = _row(final, int(i))
            infos["_final_obs"] = done.copy()
            if "episode" in info:
                ids = np.flatnonzero(done)
                ep_r, ep_l = np.zeros(n, np.float32), np.zeros(n, np.int64)
                ep_r[ids] = info["episode"]["return"].cpu().numpy()
                ep_l[ids] = info["episode"]["length"].cpu().numpy()
                infos["episode"] = {"r": ep_r, "l": ep_l, "_r": done.copy(), "_l": done.copy()}
                infos["_episode"] = done.copy()
        return _to_numpy(obs, self.obs_group), reward.detach().cpu().numpy(), term, trunc, infos

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close()


class ToGymnasiumEnv(gymnasium.Env):
    """A one-env :class:`VecEnv` as a standard ``gymnasium.Env`` (no auto-reset; stable-baselines3 compatible).

    When an episode ends, ``step`` returns the episode's true last observation (the VecEnv's
    ``info["final_obs"]``); the VecEnv has already started the next episode, and the following :meth:`reset`
    without a seed hands out that episode's first observation (so the RNG stream equals the VecEnv's own).
    A :meth:`reset` at any other time, or with a seed, resets the VecEnv.

    ``info`` holds ``reward_terms`` ``(T,)`` when the env reports them, and ``episode`` = {``r``, ``l``} at the
    end of an episode. The wrapped env stays reachable as ``vec_env`` (e.g. to move a reward curriculum).

    Args:
        env: a VecEnv with ``num_envs == 1``.
        obs_group: observation group exposed as the observation, or ``None`` for all groups as a ``Dict``.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, env: VecEnv, obs_group: str | None = "policy") -> None:
        if env.num_envs != 1:
            raise ValueError(f"ToGymnasiumEnv wraps a single env; got num_envs={env.num_envs} (use ToGymnasiumVector)")
        self.vec_env = env
        self.obs_group = obs_group
        self.observation_space = _obs_space(env.spec, obs_group)
        self.action_space = spaces.Box(env.spec.action_low, env.spec.action_high, (env.spec.action_dim,), np.float32)
        self._pending: np.ndarray | dict[str, np.ndarray] | None = None
        """First observation of the episode the VecEnv auto-started after the last ``done`` (None otherwise)."""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray | dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None and self._pending is not None:
            obs, self._pending = self._pending, None
            return obs, {}
        self._pending = None
        return _row(_to_numpy(self.vec_env.reset(seed), self.obs_group), 0), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray | dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = torch.as_tensor(np.asarray(action, dtype=np.float32), device=self.vec_env.device).reshape(1, -1)
        obs, reward, terminated, truncated, info = self.vec_env.step(a)
        term, trunc = bool(terminated[0]), bool(truncated[0])
        out: dict[str, Any] = {}
        if "reward_terms" in info:
            out["reward_terms"] = info["reward_terms"][0].detach().cpu().numpy()
        if term or trunc:
            self._pending = _row(_to_numpy(obs, self.obs_group), 0)
            obs = info["final_obs"]
            if "episode" in info:
                out["episode"] = {"r": float(info["episode"]["return"][0]), "l": int(info["episode"]["length"][0])}
        return _row(_to_numpy(obs, self.obs_group), 0), float(reward[0]), term, trunc, out

    def close(self) -> None:
        self.vec_env.close()


# ----------------------------------------------------------------------------------------------- Gymnasium -> ours
class FromGymnasium(VecEnv):
    """Gymnasium env(s) vectorised into our :class:`VecEnv` contract (CPU simulation, tensors on ``device``).

    The envs run in a ``gymnasium.vector.SyncVectorEnv`` in same-step autoreset mode. Observations ``(N, dim)``
    float32 are returned as both the ``policy`` and the ``critic`` group (the same tensor: there is no
    privileged state). ``info["final_obs"]`` always holds the pre-reset observation (rows of envs that did not
    end equal ``obs``); ``info["episode"]`` = {``return``, ``length``} lists the envs that ended.

    Actions: a ``Box`` action space with finite bounds is rescaled so that this VecEnv acts in [-1, 1]:
    ``env_action = low + (a + 1) / 2 * (high - low)`` (``spec.action_low/high`` = -1/1; the true bounds are in
    ``spec.action_meaning``). Unbounded ``Box`` dimensions pass through unchanged (``action_low/high`` = -inf/inf).
    Out-of-range actions are passed to the env, which clips or not as it defines.

    Args:
        env: a Gymnasium id (``"Pendulum-v1"``) or a zero-argument factory returning a ``gymnasium.Env``.
        num_envs: number of copies.
        device: torch device of the returned tensors.
        **make_kwargs: passed to ``gymnasium.make`` when ``env`` is an id.
    """

    def __init__(
        self, env: str | Callable[[], gymnasium.Env], num_envs: int = 1, device: str | torch.device = "cpu",
        **make_kwargs: Any,
    ) -> None:  # fmt: skip
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        factory = (lambda: gymnasium.make(env, **make_kwargs)) if isinstance(env, str) else env
        self.vec = SyncVectorEnv([factory] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)
        self.cfg = EnvConfig(num_envs=num_envs, device=str(device))
        self.num_envs = num_envs
        self.device = torch.device(device)
        obs_space, act_space = self.vec.single_observation_space, self.vec.single_action_space
        if not isinstance(obs_space, spaces.Box):
            raise TypeError(f"FromGymnasium needs a Box observation space, got {obs_space}")
        if not isinstance(act_space, spaces.Box):
            raise TypeError(f"FromGymnasium needs a Box action space, got {act_space}")
        low, high = act_space.low.astype(np.float32).ravel(), act_space.high.astype(np.float32).ravel()
        self._bounded = bool(np.isfinite(low).all() and np.isfinite(high).all())
        self._low, self._half_range = low, (high - low) / 2 if self._bounded else None
        self._act_shape = act_space.shape
        obs_dim = int(np.prod(obs_space.shape))
        probe = self.vec.envs[0]
        name = env if isinstance(env, str) else (probe.spec.id if probe.spec else type(probe.unwrapped).__name__)
        dt = getattr(probe.unwrapped, "dt", None)
        fps = probe.metadata.get("render_fps")
        group = ObsGroup.of(ObsTerm("observation", obs_dim, f"gymnasium {obs_space}"))
        self.spec = EnvSpec(
            task=str(name),
            obs_groups={"policy": group, "critic": group},
            action_dim=int(np.prod(act_space.shape)),
            action_meaning={
                "type": "gymnasium_box",
                "low": low.tolist(),
                "high": high.tolist(),
                "mapping": "env_action = low + (a + 1) / 2 * (high - low)" if self._bounded else "identity",
            },
            control_dt=float(dt) if dt is not None else (1.0 / fps if fps else 0.0),
            max_episode_steps=int(probe.spec.max_episode_steps or 0) if probe.spec else 0,
            action_low=-1.0 if self._bounded else -np.inf,
            action_high=1.0 if self._bounded else np.inf,
        )
        self._ep_return = np.zeros(num_envs, np.float64)
        self._ep_len = np.zeros(num_envs, np.int64)
        self.reset()  # steppable right away, like the built-in tasks (call reset(seed) for a seeded run)

    def _obs(self, x: np.ndarray) -> dict[str, torch.Tensor]:
        t = torch.as_tensor(np.asarray(x, dtype=np.float32).reshape(self.num_envs, -1), device=self.device)
        return {"policy": t, "critic": t}

    def env_action(self, action: torch.Tensor) -> np.ndarray:
        """The Gymnasium actions ``(N, *action_shape)`` for VecEnv actions ``(N, action_dim)``."""
        a = action.detach().cpu().numpy().astype(np.float32)
        if self._half_range is not None:  # a bounded Box
            a = self._low + (a + 1.0) * self._half_range
        return a.reshape(self.num_envs, *self._act_shape)

    def reset(self, seed: int | None = None) -> dict[str, torch.Tensor]:
        """Reset every env (env ``i`` is seeded with ``seed + i`` when ``seed`` is given)."""
        obs, _ = self.vec.reset(seed=seed)
        self._ep_return[:] = 0.0
        self._ep_len[:] = 0
        return self._obs(obs)

    def step(
        self, action: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Step every env with ``action`` ``(N, action_dim)`` in [-1, 1] (see the class docstring)."""
        a = self.check_action(action)
        obs, reward, term, trunc, infos = self.vec.step(self.env_action(a))
        self._ep_return += reward
        self._ep_len += 1
        done = term | trunc
        final = np.array(obs, dtype=np.float32, copy=True)
        info: dict[str, Any] = {}
        if done.any():
            ids = np.flatnonzero(done)
            for i in ids:
                final[i] = infos["final_obs"][i]
            info["episode"] = {
                "return": torch.as_tensor(self._ep_return[ids], dtype=torch.float32, device=self.device),
                "length": torch.as_tensor(self._ep_len[ids], device=self.device),
            }
            self._ep_return[ids] = 0.0
            self._ep_len[ids] = 0
        info["final_obs"] = self._obs(final)
        to_t = torch.as_tensor
        return (
            self._obs(obs), to_t(np.asarray(reward, np.float32), device=self.device),
            to_t(np.asarray(term, bool), device=self.device), to_t(np.asarray(trunc, bool), device=self.device), info,
        )  # fmt: skip

    @property
    def steps(self) -> torch.Tensor:  # type: ignore[override]
        """``(N,)`` steps of each env's current episode."""
        return torch.as_tensor(self._ep_len, device=self.device)

    def close(self) -> None:
        self.vec.close()


__all__ = ["FromGymnasium", "ToGymnasiumEnv", "ToGymnasiumVector"]
