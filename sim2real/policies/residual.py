"""The learned part of the world model: an ensemble of small networks on what the physics misses.

After each step of the physics (:class:`~sim2real.policies.world_model.QuadrotorWorldModel`), the velocity and
body rate get a correction ``Δ = [Δv, Δω]`` (6) predicted from the state and command::

    x = (q, v, ω, r, a)  (18: quaternion, world velocity, body rate, motor speeds, action)
    member e:  (μ_e(x), log σ²_e(x)) = MLP_e(normalise(x))           trained on its own bootstrap resample
    loss_e = ½ Σ [ (y - μ_e)² / σ²_e + log σ²_e ]                   Gaussian negative log-likelihood
    y = s_{t+1}[v, ω] - physics(s_t, a_t)[v, ω]                      the one-step residual, normalised

Without the physics (``WorldModelConfig.physics = False``, the purely learned model of MBPO-style baselines) the
same ensemble predicts the whole odometry increment ``Δ = s_{t+1}[:13] - s_t[:13]`` (:data:`WHOLE`, 13 outputs).

The correction is the mean of the members; their disagreement (the spread of ``μ_e`` in units of the target's
standard deviation) is the model's uncertainty, which imagined rollouts penalise. ``log σ²`` is bounded to
``[-10, 0.5]`` softly, as in model-based RL practice, so no member becomes over-confident off its data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from sim2real.sim.quadrotor import OMEGA, QUAT, RPM, VEL

CORRECTED = slice(VEL.start, OMEGA.stop)
"""The state entries the residual corrects after the physics: velocity and body rate (position and attitude follow)."""
WHOLE = slice(0, OMEGA.stop)
"""The state entries a purely learned model predicts: the whole odometry (position, quaternion, velocity, body rate)."""
IN_DIM = 18


@dataclass
class ResidualConfig:
    """How the residual ensemble is trained."""

    members: int = 5
    hidden: tuple[int, ...] = (64, 64)
    steps: int = 1500
    """Adam steps (each member one batch per step)."""
    batch: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0


def features(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """The residual's input ``(N, 18)`` from simulator states ``(N, 17)`` and actions ``(N, 4)``."""
    return torch.cat((state[:, QUAT], state[:, VEL], state[:, OMEGA], state[:, RPM], action), 1)


class ResidualEnsemble(nn.Module):
    """``members`` MLPs ``18 -> hidden -> 2 x D`` (mean, log-variance) with the data's normalisation inside.

    ``target``: the state entries it corrects, ``D`` wide (:data:`CORRECTED` or :data:`WHOLE`).
    """

    def __init__(self, members: int = 5, hidden: tuple[int, ...] = (64, 64), target: slice = CORRECTED) -> None:
        super().__init__()
        if members < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        self.target, self.out_dim = target, target.stop - target.start
        dims = (IN_DIM, *hidden)
        self.nets = nn.ModuleList(
            nn.Sequential(*[m for a, b in zip(dims[:-1], dims[1:]) for m in (nn.Linear(a, b), nn.SiLU())],
                          nn.Linear(dims[-1], 2 * self.out_dim))
            for _ in range(members)
        )  # fmt: skip
        d = self.out_dim
        for name, size in (("x_mean", IN_DIM), ("x_std", IN_DIM), ("y_mean", d), ("y_std", d)):
            self.register_buffer(name, torch.zeros(size) if "mean" in name else torch.ones(size))
        self.x_mean: torch.Tensor
        self.x_std: torch.Tensor
        self.y_mean: torch.Tensor
        self.y_std: torch.Tensor

    @property
    def members(self) -> int:
        return len(self.nets)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised mean and bounded log-variance ``(E, N, D)`` of the residual.

        Args:
            x: inputs ``(N, 18)`` for every member, or ``(E, N, 18)``: each member its own rows.
        """
        z = (x - self.x_mean) / self.x_std
        out = torch.stack([net(z if z.ndim == 2 else z[e]) for e, net in enumerate(self.nets)])
        mean, raw = out[..., : self.out_dim], out[..., self.out_dim :]
        log_var = 0.5 - F.softplus(0.5 - raw)  # soft upper bound 0.5
        return mean, -10.0 + F.softplus(log_var + 10.0)  # soft lower bound -10

    def correction(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The members' mean correction ``(N, D)`` of the ``target`` entries, in state units."""
        mean, _ = self(features(state, action))
        return mean.mean(0) * self.y_std + self.y_mean

    def disagreement(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The uncertainty ``(N,)``: the spread of the members' means, averaged over the D normalised outputs."""
        mean, _ = self(features(state, action))
        return mean.std(0).mean(-1) if self.members > 1 else torch.zeros(len(state), device=state.device)


def fit_residual(x: torch.Tensor, y: torch.Tensor, cfg: ResidualConfig | None = None,
                 target: slice = CORRECTED) -> ResidualEnsemble:  # fmt: skip
    """Train the ensemble on inputs ``(N, 18)`` and one-step residuals ``(N, D)`` of ``target`` (module docstring).

    Raises:
        ValueError: mismatched shapes, non-finite rows, or fewer rows than one batch.
    """
    cfg = cfg or ResidualConfig()
    d = target.stop - target.start
    if x.ndim != 2 or x.shape[1] != IN_DIM or y.shape != (len(x), d):
        raise ValueError(f"need x (N, {IN_DIM}) and y (N, {d}), got {tuple(x.shape)} and {tuple(y.shape)}")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("residual training data contain NaN/Inf")
    if len(x) < cfg.batch:
        raise ValueError(f"{len(x)} residual rows are fewer than one batch of {cfg.batch}")
    torch.manual_seed(cfg.seed)
    ens = ResidualEnsemble(cfg.members, cfg.hidden, target)
    with torch.no_grad():
        ens.x_mean.copy_(x.mean(0))
        ens.x_std.copy_(x.std(0).clamp_min(1e-6))
        ens.y_mean.copy_(y.mean(0))
        ens.y_std.copy_(y.std(0).clamp_min(1e-9))
    y_n = (y - ens.y_mean) / ens.y_std
    gen = torch.Generator().manual_seed(cfg.seed)
    boot = torch.randint(len(x), (cfg.members, len(x)), generator=gen)  # each member's resample
    opt = torch.optim.AdamW(ens.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for _ in range(cfg.steps):
        rows = boot[:, torch.randint(len(x), (cfg.batch,), generator=gen)]  # (E, B)
        mean, log_var = ens(x[rows])  # (E, B, D) each
        nll = 0.5 * ((y_n[rows] - mean).square() * torch.exp(-log_var) + log_var)
        opt.zero_grad()
        nll.mean().backward()
        opt.step()
    return ens.eval()
