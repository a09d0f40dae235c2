"""Networks for the off-policy learners: tanh-Gaussian actor, fused twin critics, observation normaliser.

The twin critics are one module whose weights are stacked along a leading *ensemble* dimension, so both
Q-functions are evaluated with one batched matmul per layer (``torch.baddbmm``) instead of two separate
MLPs: fewer kernel launches, one optimizer tensor per layer, one graph for ``torch.compile``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {"relu": F.relu, "elu": F.elu, "silu": F.silu, "tanh": torch.tanh}


def full_precision(x: torch.Tensor) -> torch.autocast:
    """Context that turns autocast off on ``x``'s device.

    Output layers (Q-values, action means and log-stds) stay float32 when the hidden layers run in bfloat16
    (``SACConfig.bf16``), so a Q of a few hundred keeps its resolution in the TD error.
    """
    return torch.autocast(x.device.type, enabled=False)


class RunningNormalizer(nn.Module):
    """Per-feature running mean/variance (Chan et al. parallel update), applied as ``(x - mean) / std``.

    Statistics are buffers, so they travel in checkpoints and are baked into the ONNX export.
    """

    def __init__(self, dim: int, eps: float = 1e-6, clip: float = 10.0) -> None:
        super().__init__()
        self.mean: torch.Tensor
        self.var: torch.Tensor
        self.count: torch.Tensor
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.tensor(0.0, dtype=torch.float64))
        self.eps = eps
        self.clip = clip

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold a batch ``(B, dim)`` into the statistics."""
        x = x.reshape(-1, self.mean.shape[0]).to(torch.float64)
        n = x.shape[0]
        if n == 0:
            return
        b_mean, b_var = x.mean(0), x.var(0, unbiased=False)
        tot = self.count + n
        delta = b_mean - self.mean.double()
        new_mean = self.mean.double() + delta * n / tot
        m2 = self.var.double() * self.count + b_var * n + delta.square() * self.count * n / tot
        self.mean.copy_(new_mean.float())
        self.var.copy_((m2 / tot).float())
        self.count.fill_(tot)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``(..., dim)``; clipped to ``±clip`` standard deviations."""
        return ((x - self.mean) * torch.rsqrt(self.var + self.eps)).clamp(-self.clip, self.clip)


class MLP(nn.Module):
    """Plain MLP ``in -> hidden... -> out`` with an optional LayerNorm after each hidden layer."""

    def __init__(
        self, in_dim: int, hidden: tuple[int, ...], out_dim: int, activation: str = "relu", layernorm: bool = False
    ) -> None:
        super().__init__()
        dims = (in_dim, *hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(nn.LayerNorm(b) for b in hidden) if layernorm else None
        self.out = nn.Linear(dims[-1], out_dim)
        self.act = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if self.norms is not None:
                x = self.norms[i](x)
            x = self.act(x)
        with full_precision(x):  # under bf16 autocast only the hidden layers run in bf16
            return self.out(x.float())


class TactileCNN(nn.Module):
    """Encoder of an input that ends in tactile images: ``[x_other (D - P*C*H*W), images (P, C, H, W) flattened]``.

    Each pad's ``C x H x W`` image goes through the same small CNN (three strided 3x3 convolutions, then a linear
    layer to ``features``); the output is ``[x_other, f_pad0, ..., f_pad(P-1)]`` ``(B, D_other + P * features)``.
    """

    def __init__(self, obs_dim: int, image_shape: tuple[int, ...], features: int = 32, channels: int = 16) -> None:
        super().__init__()
        if len(image_shape) != 4:
            raise ValueError(f"image_shape must be (pads, channels, height, width), got {image_shape}")
        self.image_shape = tuple(int(v) for v in image_shape)
        pads, c, h, w = self.image_shape
        self.image_dim = pads * c * h * w
        if obs_dim < self.image_dim:
            raise ValueError(f"input of {obs_dim} values cannot end in {pads} images of {c} x {h} x {w}")
        self.other_dim = obs_dim - self.image_dim
        self.conv = nn.Sequential(
            nn.Conv2d(c, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip
        flat = channels * math.ceil(math.ceil(math.ceil(h / 2) / 2) / 2) * math.ceil(math.ceil(math.ceil(w / 2) / 2) / 2)
        self.proj = nn.Linear(flat, features)
        self.out_dim = self.other_dim + pads * features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B, obs_dim)`` -> ``(B, out_dim)``."""
        pads, c, h, w = self.image_shape
        b = obs.shape[0]
        img = obs[:, self.other_dim :].reshape(b * pads, c, h, w)
        f = F.relu(self.proj(self.conv(img).flatten(1))).reshape(b, -1)  # (B, P * features)
        return torch.cat((obs[:, : self.other_dim], f), -1)


class SquashedGaussianActor(nn.Module):
    """tanh-Gaussian policy: ``u ~ N(mu(s), sigma(s))``, ``a = tanh(u)`` in ``[-1, 1]^A``.

    ``log sigma`` is squashed smoothly into ``[log_std_min, log_std_max]``. An ``encoder`` (e.g.
    :class:`TactileCNN`) maps the observation to the MLP's input; without one the MLP reads it directly.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "relu",
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
        encoder: TactileCNN | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.net = MLP(obs_dim if encoder is None else encoder.out_dim, hidden, 2 * act_dim, activation)
        self.obs_dim: int = obs_dim
        self.act_dim: int = act_dim
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        """The MLP's input: the observation, or its encoding."""
        return obs if self.encoder is None else self.encoder(obs)

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """``mu(s)`` ``(B, A)`` before the tanh (the deployment graph: no log-std)."""
        return self.net(self._features(obs))[..., : self.act_dim]  # slicing, not chunk: exports to clean ONNX

    def dist_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-std ``(B, A)`` each, for normalised observations ``(B, obs_dim)``."""
        out = self.net(self._features(obs))
        mu, raw = out[..., : self.act_dim], out[..., self.act_dim :]
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(raw) + 1.0)
        return mu, log_std

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """Deployment action ``tanh(mu(s))``, ``(B, A)``."""
        return torch.tanh(self.dist_params(obs)[0])

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample ``a (B, A)`` and its log-probability ``(B,)``.

        ``log pi(a|s) = sum_j [log N(u_j; mu_j, sigma_j) - log(1 - tanh(u_j)^2)]`` with the stable identity
        ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))``.
        """
        mu, log_std = self.dist_params(obs)
        eps = torch.randn_like(mu)
        u = mu + eps * log_std.exp()
        log_n = -0.5 * eps.square() - log_std - 0.5 * math.log(2 * math.pi)
        log_jac = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        return torch.tanh(u), (log_n - log_jac).sum(-1)


CPU_LOOP_MIN_BATCH = 1024
"""From this batch size on, a CPU evaluates the critic members with one ``addmm`` each instead of one ``baddbmm``
for all: at batch 4096 (256x256 critics, 2-core EPYC, MKL) that made the whole SAC update ~15 % faster
(``benchmarks/sac_throughput.py``); below, the two were equal within noise and the batched call launches less."""


class EnsembleCritic(nn.Module):
    """``K`` Q-functions ``Q_k(s, a)`` evaluated together: weights ``(K, in, out)``, one ``baddbmm`` per layer.

    On a CPU from :data:`CPU_LOOP_MIN_BATCH` rows on, one ``addmm`` per member instead (same result).

    ``out_dim > 1`` makes each member output a vector (the logits of a C51 return distribution).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...] = (64, 64),
        num_q: int = 2,
        activation: str = "relu",
        layernorm: bool = False,
        out_dim: int = 1,
    ) -> None:
        super().__init__()
        dims = (obs_dim + act_dim, *hidden, out_dim)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(dims[:-1], dims[1:]):
            bound = 1.0 / math.sqrt(fan_in)  # same init as nn.Linear (kaiming-uniform a=sqrt(5))
            self.weights.append(nn.Parameter(torch.empty(num_q, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num_q, 1, fan_out).uniform_(-bound, bound)))
        self.layernorm = layernorm
        self.act = ACTIVATIONS[activation]
        self.num_q = num_q

    def forward(self, obs: torch.Tensor, act: torch.Tensor, params: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Q-values ``(K, B)`` (``(K, B, out_dim)`` when ``out_dim > 1``) for obs ``(B, obs_dim)``, actions ``(B, A)``.

        ``params`` (weights then biases, as :meth:`param_list`) overrides the module's own tensors; the actor
        loss passes detached copies so that its gradient reaches the actor only.
        """
        if params is None:
            params = self.param_list()
        n = len(params) // 2
        x = torch.cat((obs, act), -1)
        if x.device.type == "cpu" and x.shape[0] >= CPU_LOOP_MIN_BATCH:  # one addmm per member and layer
            w, b = params[:n], params[n:]
            x = torch.stack([self._mlp(x, [wi[k] for wi in w], [bi[k, 0] for bi in b], torch.addmm) for k in range(self.num_q)])
        else:  # one baddbmm per layer for all members
            x = self._mlp(x.unsqueeze(0).expand(self.num_q, -1, -1), params[:n], params[n:], torch.baddbmm)
        return x.squeeze(-1) if x.shape[-1] == 1 else x

    def _mlp(self, x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor], matmul) -> torch.Tensor:
        """Hidden layers ``act(LN(b + x W))``, then the output layer ``b + x W`` in float32."""
        for w, b in zip(weights[:-1], biases[:-1]):
            x = matmul(b, x, w)
            if self.layernorm:
                x = F.layer_norm(x, x.shape[-1:])
            x = self.act(x)
        with full_precision(x):  # under bf16 autocast only the hidden layers run in bf16
            return matmul(biases[-1], x.float(), weights[-1])

    def param_list(self) -> list[torch.Tensor]:
        return [*self.weights, *self.biases]
