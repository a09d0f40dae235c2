"""Flat-buffer Adam(W): every parameter and gradient is a view into one contiguous tensor.

Zeroing all gradients is one ``zero_()``; the update is a handful of vectorised ops over the whole
buffer instead of a Python loop over parameter tensors, which matters for the small networks of
robot policies, where per-tensor overhead dominates the arithmetic.
"""

from __future__ import annotations

import torch


class FlatAdam:
    """Adam with decoupled weight decay over parameter groups that share one flat storage.

    Args:
        groups: list of ``(params, lr, weight_decay)``; parameters must be leaf tensors with
            ``requires_grad``. Their ``.data`` and ``.grad`` are re-pointed into the flat buffers.
        betas: Adam's ``(beta1, beta2)``.
        eps: denominator epsilon.

    Update, per element (bias-corrected; ``t`` the step count)::

        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        p <- p (1 - lr wd) - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    """

    def __init__(
        self,
        groups: list[tuple[list[torch.Tensor], float, float]],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        params = [p for ps, _, _ in groups for p in ps]
        if not params or len({id(p) for p in params}) != len(params):
            raise ValueError("FlatAdam needs a non-empty list of distinct parameters")
        device, dtype = params[0].device, params[0].dtype
        total = sum(p.numel() for p in params)
        self.flat = torch.empty(total, device=device, dtype=dtype)
        self.flat_grad = torch.zeros(total, device=device, dtype=dtype)
        lr = torch.empty(total, device=device, dtype=dtype)
        wd = torch.empty(total, device=device, dtype=dtype)
        offset = 0
        self.group_slices: list[slice] = []
        for ps, g_lr, g_wd in groups:
            start = offset
            for p in ps:
                n = p.numel()
                self.flat[offset : offset + n].copy_(p.detach().reshape(-1))
                p.data = self.flat[offset : offset + n].view_as(p)
                p.grad = self.flat_grad[offset : offset + n].view_as(p)
                lr[offset : offset + n], wd[offset : offset + n] = g_lr, g_wd
                offset += n
            self.group_slices.append(slice(start, offset))
        self.params = params
        self.base_lr, self.wd = lr, wd
        self.lr, self.decay = lr, 1.0 - lr * wd
        self.has_decay = bool((wd != 0).any())
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.m = torch.zeros_like(self.flat)
        self.v = torch.zeros_like(self.flat)
        self.t = [0] * len(groups)

    def set_lr_scale(self, scale: float) -> None:
        """Scale every group's learning rate to ``scale`` times its initial value (schedules)."""
        self.lr = self.base_lr * scale
        self.decay = 1.0 - self.lr * self.wd

    def zero_grad(self) -> None:
        self.flat_grad.zero_()

    @torch.no_grad()
    def step(self, groups: tuple[int, ...] | None = None) -> None:
        """Update all groups, or only ``groups`` (indices; each group keeps its own step count)."""
        ids = range(len(self.t)) if groups is None else groups
        for i in ids:
            self.t[i] += 1
        if len(ids) == len(self.t) and len(set(self.t)) == 1:  # common case: one pass over the whole buffer
            self._step(slice(0, self.flat.numel()), self.t[0])
        else:  # groups are contiguous slices: one pass each
            for i in ids:
                self._step(self.group_slices[i], self.t[i])

    def _step(self, sl: slice, t: int) -> None:
        g, m, v, p = self.flat_grad[sl], self.m[sl], self.v[sl], self.flat[sl]
        m.lerp_(g, 1.0 - self.beta1)  # m <- b1 m + (1 - b1) g
        v.mul_(self.beta2).addcmul_(g, g, value=1.0 - self.beta2)  # v <- b2 v + (1 - b2) g^2
        denom = (v / (1.0 - self.beta2**t)).sqrt_().add_(self.eps)  # sqrt(v_hat) + eps
        if self.has_decay:
            p.mul_(self.decay[sl])
        p.sub_(self.lr[sl] * (m / (1.0 - self.beta1**t)) / denom)  # p -= lr m_hat / (sqrt(v_hat) + eps)

    def state_dict(self) -> dict:
        return {"m": self.m.clone(), "v": self.v.clone(), "t": list(self.t), "lr": self.lr.clone(), "numel": self.flat.numel()}

    def load_state_dict(self, state: dict) -> None:
        if int(state["numel"]) != self.flat.numel():
            raise ValueError(f"optimizer state holds {state['numel']} parameters, this model has {self.flat.numel()}")
        self.m.copy_(state["m"])
        self.v.copy_(state["v"])
        if len(state["t"]) != len(self.t):
            raise ValueError(f"optimizer state has {len(state['t'])} parameter groups, this model has {len(self.t)}")
        self.t = [int(t) for t in state["t"]]
