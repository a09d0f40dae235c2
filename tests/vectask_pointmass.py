"""A small task written for the tests that follows IsaacGymEnvs' ``VecTask`` conventions (no Isaac Gym inside).

It stands in for an Isaac Gym task where Isaac Gym cannot be installed: the same buffers (``obs_buf``,
``states_buf``, ``rew_buf``, ``reset_buf``, ``timeout_buf``, ``progress_buf``, ``extras["time_outs"]``), the same
``step`` (clip the actions, ``pre_physics_step``, ``control_freq_inv`` physics steps, ``post_physics_step``, the
time-out rule ``progress >= max_episode_length - 1``) and IsaacGymEnvs' one-step-late reset: ``post_physics_step``
first resets the envs whose ``reset_buf`` was set by the previous step, then computes observations and rewards.
Randomness from torch's global generator, as IsaacGymEnvs tasks draw it. :func:`make` has ``isaacgymenvs.make``'s
signature, so the bridge's server builds it like an Isaac Gym task.

Physics: a point mass in the plane, ``v += (force - 0.5 v) dt``, ``x += v dt`` per physics step (``dt`` 0.02 s,
2 physics steps per control step), force = 2 * action. Reward ``-|x|``; terminated when ``|x| > 2``.
Observations ``obs`` = ``(x, v)`` ``(N, 4)``; ``states`` = ``(x, v, mass)`` ``(N, 5)``.
"""

from __future__ import annotations

import torch


class PointMassTask:
    """IsaacGymEnvs-style point-mass task (see the module docstring)."""

    def __init__(self, num_envs: int, device: str = "cpu", max_episode_length: int = 100) -> None:
        self.num_envs, self.num_obs, self.num_states, self.num_actions = num_envs, 4, 5, 2
        self.max_episode_length, self.dt, self.control_freq_inv = max_episode_length, 0.02, 2
        self.clip_obs, self.clip_actions, self.device = 5.0, 1.0, device
        self.obs_buf = torch.zeros(num_envs, 4, device=device)
        self.states_buf = torch.zeros(num_envs, 5, device=device)
        self.rew_buf = torch.zeros(num_envs, device=device)
        self.reset_buf = torch.ones(num_envs, dtype=torch.long, device=device)
        self.timeout_buf = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.progress_buf = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.extras: dict = {}
        self.x = torch.zeros(num_envs, 2, device=device)
        self.v = torch.zeros(num_envs, 2, device=device)
        self.force = torch.zeros(num_envs, 2, device=device)
        self.train_frames = 0

    # -- VecTask
    def step(self, actions: torch.Tensor):
        self.pre_physics_step(torch.clamp(actions, -self.clip_actions, self.clip_actions))
        for _ in range(self.control_freq_inv):
            self.v += (self.force - 0.5 * self.v) * self.dt
            self.x += self.v * self.dt
        self.post_physics_step()
        self.timeout_buf = (self.progress_buf >= self.max_episode_length - 1) & (self.reset_buf != 0)
        self.extras["time_outs"] = self.timeout_buf
        obs = {"obs": torch.clamp(self.obs_buf, -self.clip_obs, self.clip_obs)}
        obs["states"] = torch.clamp(self.states_buf, -self.clip_obs, self.clip_obs)
        return obs, self.rew_buf, self.reset_buf, self.extras

    def pre_physics_step(self, actions: torch.Tensor) -> None:
        self.force = 2.0 * actions

    def post_physics_step(self) -> None:
        self.progress_buf += 1
        ids = self.reset_buf.nonzero().flatten()
        if len(ids) > 0:  # IsaacGymEnvs: envs that ended at the previous step are reset now
            self.reset_idx(ids)
        self.compute_observations()
        r = self.x.norm(dim=-1)
        self.rew_buf[:] = -r
        ended = (r > 2.0) | (self.progress_buf >= self.max_episode_length - 1)
        self.reset_buf[:] = ended.long()

    def reset_idx(self, env_ids: torch.Tensor) -> None:
        self.x[env_ids] = torch.rand(len(env_ids), 2, device=self.device) * 2 - 1
        self.v[env_ids] = 0.0
        self.progress_buf[env_ids] = 0
        self.reset_buf[env_ids] = 0

    def compute_observations(self) -> None:
        self.obs_buf[:] = torch.cat((self.x, self.v), -1)
        self.states_buf[:] = torch.cat((self.x, self.v, torch.ones(self.num_envs, 1, device=self.device)), -1)

    def set_train_info(self, env_frames: int, *args, **kwargs) -> None:
        self.train_frames = env_frames


def make(seed, task, num_envs, sim_device, rl_device, graphics_device_id=-1, headless=False, **kwargs):
    """``isaacgymenvs.make``'s signature; ``task="Broken"`` raises, as a misconfigured task would."""
    if task == "Broken":
        raise ValueError("task Broken has no config")
    torch.manual_seed(seed)
    return PointMassTask(num_envs, sim_device)
