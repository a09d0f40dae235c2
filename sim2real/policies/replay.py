"""Tensor replay buffer living on the training device (no host round trips while sampling), with n-step sampling."""

from __future__ import annotations

from collections.abc import Callable

import torch


class ReplayBuffer:
    """Ring buffer of named tensor fields, each ``(capacity, *shape)``.

    Transitions are added in batches (one row per env) and sampled uniformly with a dedicated generator,
    so a run's sampling sequence depends on its seed only.
    """

    def __init__(
        self,
        capacity: int,
        fields: dict[str, tuple[tuple[int, ...], torch.dtype]],
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"replay capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.device = torch.device(device)
        self.data = {k: torch.zeros((capacity, *shape), dtype=dt, device=self.device) for k, (shape, dt) in fields.items()}
        self.ptr = 0
        self.size = 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, **batch: torch.Tensor) -> None:
        """Append ``B`` transitions: every field ``(B, *shape)``; all fields must be given."""
        if batch.keys() != self.data.keys():
            raise KeyError(f"replay add() needs fields {sorted(self.data)}, got {sorted(batch)}")
        n = next(iter(batch.values())).shape[0]
        if n > self.capacity:
            raise ValueError(f"cannot add {n} transitions to a buffer of capacity {self.capacity}")
        idx = (torch.arange(n, device=self.device) + self.ptr) % self.capacity
        for k, v in batch.items():
            if v.shape[0] != n or v.shape[1:] != self.data[k].shape[1:]:
                raise ValueError(f"replay field {k!r}: expected (n, {tuple(self.data[k].shape[1:])}), got {tuple(v.shape)}")
            self.data[k].index_copy_(0, idx, v.to(self.data[k].dtype))
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Uniform sample with replacement: every field ``(batch_size, *shape)``."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        idx = torch.randint(0, self.size, (batch_size,), device=self.device, generator=self.generator)
        return {k: v.index_select(0, idx) for k, v in self.data.items()}

    def sample_windows(self, batch_size: int, length: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of ``batch_size`` windows of ``length`` consecutive steps of one env, and their availability.

        The buffer must be filled ``stride`` rows per step (one row per env, ``capacity % stride == 0``), so row
        ``i + k * stride`` is the same env ``k`` steps later. Returns ``idx (B, length)`` and ``valid (B, length)``
        (``False`` where the step has not been written yet: the window reaches past the newest row).
        """
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        if self.capacity % stride:
            raise ValueError(f"capacity {self.capacity} is not a multiple of the window stride {stride}")
        # position in time order (0 = oldest row): the ring starts at ptr once it is full
        oldest = self.ptr if self.size == self.capacity else 0
        pos = torch.randint(0, self.size, (batch_size,), device=self.device, generator=self.generator)
        steps = pos[:, None] + stride * torch.arange(length, device=self.device)  # (B, length)
        return (steps + oldest) % self.capacity, steps < self.size

    def state_dict(self) -> dict:
        """The filled rows as stored (ring order) with the write pointer; a young run's checkpoint stays small."""
        return {
            "data": {k: v[: self.size].clone() for k, v in self.data.items()},
            "ptr": self.ptr,
            "size": self.size,
            "capacity": self.capacity,
            "rng": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved buffer.

        Same capacity: the exact ring (bit-exact resume). Other capacity: the rows oldest-first, keeping the
        newest ones if they do not all fit.
        """
        size, ptr = int(state["size"]), int(state["ptr"])
        missing = set(self.data) - set(state["data"])
        if missing:
            raise KeyError(f"saved replay lacks field(s) {sorted(missing)}")
        same = int(state.get("capacity", -1)) == self.capacity
        for k, v in self.data.items():
            rows = state["data"][k]
            if rows.shape[1:] != v.shape[1:]:
                raise ValueError(f"saved replay field {k!r} has rows {tuple(rows.shape[1:])}, expected {tuple(v.shape[1:])}")
            if not same:
                if size == int(state.get("capacity", size)):  # a full ring: oldest row sits at ptr
                    rows = torch.roll(rows, -ptr, 0)
                rows = rows[-self.capacity :]
            v[: rows.shape[0]].copy_(rows)
        if same:
            self.ptr, self.size = ptr, size
        else:
            self.size = min(size, self.capacity)
            self.ptr = self.size % self.capacity
        self.generator.set_state(state["rng"])


def nstep_batch(
    buf: ReplayBuffer,
    batch_size: int,
    n: int,
    gamma: float,
    stride: int,
    reward_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """A batch of n-step transitions from a buffer filled one row per env per step (``stride`` = num envs).

    Fields used: ``reward`` ``(R,)`` or ``reward_terms`` ``(R, T)`` (then ``reward_fn`` maps ``(M, T) -> (M,)``),
    ``terminated`` and ``ended`` (the episode ended at this step: terminated or truncated), ``next_*`` fields,
    and any other fields (observations, action) taken at the window's first step.

    For a window starting at step t, m is the number of steps up to and including the first one that ends the
    episode, capped at ``n`` and at the newest written row::

        G = sum_{k<m} gamma^k r_{t+k},   discount = gamma^m,   next obs / terminated from step t+m-1

    so the critic target is ``G + discount * (1 - terminated) * V(s_{t+m})``. Returns ``reward (B,)``,
    ``discount (B,)`` and the other fields ``(B, ...)``.
    """
    idx, valid = buf.sample_windows(batch_size, n, stride)  # (B, n)
    flat = idx.reshape(-1)
    d = buf.data
    if "reward_terms" in d:
        if reward_fn is None:
            raise ValueError("the buffer stores reward terms: nstep_batch needs reward_fn")
        rew = reward_fn(d["reward_terms"].index_select(0, flat)).reshape(batch_size, n)
    else:
        rew = d["reward"].index_select(0, flat).reshape(batch_size, n)
    ended = d["ended"].index_select(0, flat).reshape(batch_size, n)
    # step k counts if it is written and no earlier step of the window ended the episode
    go_on = torch.cat((torch.ones_like(ended[:, :1]), 1.0 - ended[:, :-1]), 1).cumprod(1)
    used = (go_on > 0) & valid  # (B, n); step 0 is always used
    powers = gamma ** torch.arange(n, device=rew.device, dtype=rew.dtype)
    ret = torch.where(used, rew * powers, 0.0).sum(1)
    m = used.sum(1)  # (B,) >= 1
    first, last = idx[:, 0], idx.gather(1, (m - 1)[:, None]).squeeze(1)
    batch = {}
    for k, v in d.items():
        if k in ("reward", "reward_terms", "ended"):
            continue
        batch[k] = v.index_select(0, last if k.startswith("next_") or k == "terminated" else first)
    batch["reward"] = ret
    batch["discount"] = gamma ** m.to(rew.dtype)
    return batch
