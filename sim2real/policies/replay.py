"""Tensor replay buffer living on the training device (no host round trips while sampling)."""

from __future__ import annotations

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
