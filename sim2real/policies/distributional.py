"""Categorical (C51) value distributions (Bellemare, Dabney & Munos 2017, arXiv 1707.06887).

A critic outputs logits over ``Z`` fixed atoms ``z_j = v_min + j * dz``, ``dz = (v_max - v_min) / (Z - 1)``; its
Q-value is the expectation ``sum_j softmax(logits)_j z_j``. The distributional Bellman target moves every
atom to ``T z_j`` and projects the result back onto the fixed support (:func:`project`); the critic minimises
the cross-entropy to it. Used by :class:`~sim2real.policies.sac.SAC` when ``num_atoms > 1`` (FastTD3/FastSAC's
large-batch critic).
"""

from __future__ import annotations

import torch


def support(v_min: float, v_max: float, num_atoms: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The atoms ``(Z,)``."""
    if num_atoms < 2 or not v_max > v_min:
        raise ValueError(f"C51 needs num_atoms >= 2 and v_max > v_min, got {num_atoms}, [{v_min}, {v_max}]")
    return torch.linspace(v_min, v_max, num_atoms, device=device)


def expectation(logits: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    """Q-values ``(...)`` of logits ``(..., Z)``."""
    return (torch.softmax(logits, -1) * atoms).sum(-1)


def project(probs: torch.Tensor, moved: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    """Project the distribution with masses ``probs (B, Z)`` at positions ``moved (B, Z)`` onto ``atoms (Z,)``.

    Each mass ``p_j`` at ``b_j = (clamp(T z_j) - v_min) / dz`` is split between its neighbouring atoms
    ``l = floor(b_j)`` and ``u = ceil(b_j)`` in proportion to closeness: ``m_l += p_j (u - b_j)``,
    ``m_u += p_j (b_j - l)``; a mass landing exactly on an atom (``l == u``) goes to it whole.
    Returns the target distribution ``(B, Z)`` (rows sum to 1).
    """
    num = atoms.shape[0]
    v_min, v_max = atoms[0], atoms[-1]
    dz = (v_max - v_min) / (num - 1)
    b = (moved.clamp(v_min, v_max) - v_min) / dz  # (B, Z) in [0, Z-1]
    lo, hi = b.floor().long(), b.ceil().long()
    w_lo = torch.where(lo == hi, torch.ones_like(b), hi.to(b.dtype) - b)
    w_hi = b - lo.to(b.dtype)  # 0 when lo == hi
    out = torch.zeros_like(probs)
    out.scatter_add_(1, lo, probs * w_lo)
    out.scatter_add_(1, hi, probs * w_hi)
    return out
