"""Soft Actor-Critic (Haarnoja et al. 2018, arXiv 1812.05905) for batched simulators.

One readable file: twin Q with target networks (clipped double Q), automatic temperature, tanh-Gaussian
actor, asymmetric observation groups (the actor reads ``cfg.actor_obs``, the critics ``cfg.critic_obs``),
and the knobs that make large batches work: LayerNorm critics, a distributional C51 critic
(:mod:`sim2real.policies.distributional`), n-step returns (the batch carries its own ``discount``, see
:func:`sim2real.policies.replay.nstep_batch`) and observation normalisation.

Speed: one gradient step is a single graph. The actor's Q-term is evaluated through *detached* critic
weights, so ``critic_loss + actor_loss + alpha_loss`` can be back-propagated once and every parameter gets
exactly the gradient of its own loss; one flat-buffer Adam step (:mod:`sim2real.policies.optim`) then
updates actor, critics and temperature, and the target critics follow with one ``_foreach_lerp_``.
With ``compile=True`` the loss (forward and backward, via AOTAutograd) is compiled by TorchInductor.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from sim2real.core.obs import joined_dim, select
from sim2real.policies import distributional
from sim2real.policies.networks import EnsembleCritic, RunningNormalizer, SquashedGaussianActor, TactileCNN
from sim2real.policies.optim import FlatAdam


@dataclass
class SACConfig:
    """Hyper-parameters of SAC (defaults: Learning-to-Fly-sized networks)."""

    actor_obs: str = "policy"
    """Observation group the actor reads (what the robot senses); ``"policy+tactile"`` joins groups in order."""
    critic_obs: str = "critic"
    """Observation group the critics read (privileged state allowed: asymmetric actor-critic)."""
    actor_encoder: str = "mlp"
    """``mlp``: the actor's MLP reads the input directly; ``cnn``: a :class:`TactileCNN` first encodes the tactile
    images the input ends with (their shape comes from the env's ``tactile`` sensor description)."""
    actor_hidden: tuple[int, ...] = (64, 64)
    critic_hidden: tuple[int, ...] = (64, 64)
    activation: str = "relu"
    critic_layernorm: bool = False
    """LayerNorm after each hidden critic layer (stabilises large-batch / high-UTD TD learning)."""
    freeze_critic: bool = False
    """Keep the critics (and their normaliser) as loaded: only actor and temperature learn (a distilled student
    with the teacher's frozen critic, :mod:`sim2real.policies.distill`)."""
    num_q: int = 2
    """Critic ensemble size; targets and the actor use the minimum over it (clipped double Q)."""
    num_atoms: int = 0
    """0: scalar critics (MSE to the TD target). > 1: C51 critics with this many atoms on [v_min, v_max]."""
    v_min: float = -100.0
    v_max: float = 100.0
    """Support of the C51 return distribution (in return units: about max |reward| / (1 - gamma))."""
    n_step: int = 1
    """Length of the n-step returns the runner samples (1: one-step TD)."""
    gamma: float = 0.99
    tau: float = 0.005
    """Polyak factor: target <- target + tau (online - target) after every update."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    weight_decay: float = 0.0
    lr_decay_to: float = 1.0
    """Learning rates decay linearly to this fraction of their value over ``total_env_steps`` (1.0 = constant);
    resuming with a larger budget stretches the rest of the schedule."""
    batch_size: int = 256
    actor_delay: int = 1
    """Update actor and temperature every ``actor_delay`` critic updates (TD3-style delay; 1 = every update)."""
    init_alpha: float = 0.1
    target_entropy: float | None = None
    """Entropy target; ``None`` means ``-|A|``."""
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    normalize_obs: bool = True
    compile: bool = False
    """Compile the update step with TorchInductor (first update pays the compile time)."""
    compile_mode: str = "default"
    """``torch.compile`` mode; ``reduce-overhead`` replays the compiled loss as CUDA graphs (CUDA only)."""
    bf16: bool = False
    """Hidden layers' matmuls in bfloat16 (autocast; CUDA, or CPUs with AVX512-BF16/AMX). Parameters, Adam state,
    output layers, targets and losses stay float32."""


class SAC:
    """SAC agent: networks, optimiser and the update rule. Environment interaction lives in the runner."""

    def __init__(
        self,
        obs_dims: dict[str, int],
        act_dim: int,
        cfg: SACConfig,
        device: torch.device | str = "cpu",
        image_shape: tuple[int, ...] | None = None,
    ):
        """``image_shape``: ``(pads, C, H, W)`` of the tactile images ending the actor's input (``actor_encoder='cnn'``)."""
        a_dim, c_dim = joined_dim(obs_dims, cfg.actor_obs), joined_dim(obs_dims, cfg.critic_obs)
        self.cfg = cfg
        self.obs_dims = dict(obs_dims)
        self.image_shape = image_shape
        self.device = torch.device(device)
        self.act_dim = act_dim
        if cfg.actor_encoder not in ("mlp", "cnn"):
            raise ValueError(f"actor_encoder must be mlp or cnn, got {cfg.actor_encoder!r}")
        if cfg.actor_encoder == "cnn" and image_shape is None:
            raise ValueError("actor_encoder 'cnn' needs tactile images in the actor's input (an image tactile sensor)")
        encoder = TactileCNN(a_dim, image_shape) if cfg.actor_encoder == "cnn" and image_shape is not None else None
        self.actor = SquashedGaussianActor(
            a_dim, act_dim, cfg.actor_hidden, cfg.activation, cfg.log_std_min, cfg.log_std_max, encoder
        ).to(self.device)
        if cfg.n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {cfg.n_step}")
        self.atoms = (
            distributional.support(cfg.v_min, cfg.v_max, cfg.num_atoms, self.device) if cfg.num_atoms else None
        )
        self.critic = EnsembleCritic(
            c_dim, act_dim, cfg.critic_hidden, cfg.num_q, cfg.activation, cfg.critic_layernorm, max(cfg.num_atoms, 1)
        ).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(float(cfg.init_alpha), device=self.device).log().requires_grad_(True)
        self.target_entropy = float(-act_dim if cfg.target_entropy is None else cfg.target_entropy)
        self.actor_norm = RunningNormalizer(a_dim).to(self.device)
        self.critic_norm = RunningNormalizer(c_dim).to(self.device)
        self.optimizer = FlatAdam(
            [
                (list(self.actor.parameters()), cfg.actor_lr, cfg.weight_decay),
                (list(self.critic.parameters()), cfg.critic_lr, cfg.weight_decay),
                ([self.log_alpha], cfg.alpha_lr, 0.0),
            ]
        )
        self._online = list(self.critic.parameters())
        self._target = list(self.critic_target.parameters())
        if cfg.compile_mode == "reduce-overhead" and self.device.type != "cuda":
            raise ValueError("compile_mode 'reduce-overhead' (CUDA graphs) needs a CUDA device")
        self._loss_fn = torch.compile(self._losses, dynamic=False, mode=cfg.compile_mode) if cfg.compile else self._losses
        self.num_updates = 0
        self.anchor: SquashedGaussianActor | None = None
        """A frozen reference actor the actor loss keeps the policy's mean action near (finetuning)."""
        self.anchor_weight = 0.0

    def set_anchor(self, actor: SquashedGaussianActor | None, weight: float = 0.0) -> None:
        """Add ``weight * E |mu(s) - mu_ref(s)|^2`` to the actor loss (``None``: no anchor); ``actor`` is copied."""
        if weight < 0:
            raise ValueError(f"anchor weight must be >= 0, got {weight}")
        self.anchor = None if actor is None else copy.deepcopy(actor).requires_grad_(False)
        self.anchor_weight = float(weight)

    # ----------------------------------------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = False) -> torch.Tensor:
        """Actions ``(N, A)`` in ``[-1, 1]`` for a batch of observation dicts."""
        return self.act_input(select(obs, self.cfg.actor_obs), deterministic)

    @torch.no_grad()
    def act_input(self, x: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions ``(N, A)`` for the actor's raw input ``x`` ``(N, D)`` (``actor_obs`` selected; as a policy file takes it)."""
        x = self.actor_norm(x) if self.cfg.normalize_obs else x
        return self.actor.deterministic(x) if deterministic else self.actor.sample(x)[0]

    @torch.no_grad()
    def observe(self, obs: dict[str, torch.Tensor]) -> None:
        """Update the observation normalisers with fresh env observations."""
        if self.cfg.normalize_obs:
            self.actor_norm.update(select(obs, self.cfg.actor_obs))
            if not self.cfg.freeze_critic:
                self.critic_norm.update(select(obs, self.cfg.critic_obs))

    # ----------------------------------------------------------------------------------------------- learning
    def _losses(
        self,
        obs_a: torch.Tensor,
        obs_c: torch.Tensor,
        act: torch.Tensor,
        rew: torch.Tensor,
        next_obs_a: torch.Tensor,
        next_obs_c: torch.Tensor,
        terminated: torch.Tensor,
        discount: torch.Tensor | None = None,
        with_actor: bool = True,
        bc_target: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sum of the SAC losses for one batch (shapes ``(B, ·)``; ``rew``/``terminated``/``discount`` ``(B,)``).

        ``discount`` is ``gamma^m`` of n-step returns (``None``: one-step, ``gamma``). ``with_actor=False``
        returns the critic loss alone (delayed actor updates). ``bc_target`` ``(B, A)``: actions to imitate; the
        actor loss is then ``E |tanh(mu(s)) - a*|^2`` instead of SAC's (a DAgger step, :mod:`.distill`).
        With ``freeze_critic`` there is no critic loss.
        """
        if self.cfg.normalize_obs:
            obs_a, next_obs_a = self.actor_norm(obs_a), self.actor_norm(next_obs_a)
            obs_c, next_obs_c = self.critic_norm(obs_c), self.critic_norm(next_obs_c)
        alpha = self.log_alpha.exp().detach()

        disc = (self.cfg.gamma if discount is None else discount) * (1.0 - terminated)  # (B,)
        if self.cfg.freeze_critic:
            with torch.no_grad():
                q = self._q_values(self.critic(obs_c, act))
            critic_loss = torch.zeros((), device=q.device)
        elif self.atoms is None:
            # Critic: y = r + gamma (1 - d) [min_k Q'_k(s', a') - alpha log pi(a'|s')],  a' ~ pi(.|s')
            with torch.no_grad():
                next_a, next_logp = self.actor.sample(next_obs_a)
                next_q = self.critic_target(next_obs_c, next_a).min(0).values - alpha * next_logp
                y = rew + disc * next_q
            q = self.critic(obs_c, act)  # (K, B)
            critic_loss = 0.5 * (q - y).square().mean(1).sum()
        else:
            critic_loss, q = self._c51_critic_loss(obs_c, act, rew, next_obs_a, next_obs_c, disc, alpha)
        metrics = {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean(), "alpha": alpha}
        if not with_actor:
            return critic_loss, metrics

        # Actor: E[alpha log pi(a|s) - min_k Q_k(s, a)], a ~ pi(.|s), through detached critic weights.
        pi_a, logp = self.actor.sample(obs_a)  # logp also drives the temperature
        if bc_target is None:
            frozen = [p.detach() for p in self._online]
            q_pi = self._q_values(self.critic(obs_c, pi_a, frozen)).min(0).values
            actor_loss = (alpha * logp - q_pi).mean()
        else:  # imitate: E |tanh(mu(s)) - a*|^2 (summed over action dims)
            actor_loss = (self.actor.deterministic(obs_a) - bc_target).square().sum(-1).mean()
        if self.anchor is not None:  # stay near a reference policy: + w E |mu(s) - mu_ref(s)|^2 (tanh-squashed means)
            with torch.no_grad():
                ref = self.anchor.deterministic(obs_a)
            actor_loss = actor_loss + self.anchor_weight * (self.actor.deterministic(obs_a) - ref).square().sum(-1).mean()

        # Temperature: J(alpha) = E[-alpha (log pi + H_target)]  (optimised in log alpha).
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()

        metrics.update(actor_loss=actor_loss.detach(), entropy=-logp.detach().mean())
        return critic_loss + actor_loss + alpha_loss, metrics

    def _q_values(self, out: torch.Tensor) -> torch.Tensor:
        """Critic output ``(K, B)`` or C51 logits ``(K, B, Z)`` -> Q-values ``(K, B)``."""
        return out if self.atoms is None else distributional.expectation(out, self.atoms)

    def _c51_critic_loss(
        self,
        obs_c: torch.Tensor,
        act: torch.Tensor,
        rew: torch.Tensor,
        next_obs_a: torch.Tensor,
        next_obs_c: torch.Tensor,
        disc: torch.Tensor,
        alpha: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of every C51 critic to the projected soft Bellman target; returns (loss, Q ``(K, B)``).

        Clipped double Q on distributions: the target distribution is that of the ensemble member whose
        expected next value is smallest, per sample; its atoms move to ``r + disc (z - alpha log pi(a'|s'))``.
        """
        atoms = self.atoms
        assert atoms is not None  # C51 critics
        with torch.no_grad():
            next_a, next_logp = self.actor.sample(next_obs_a)
            probs = torch.softmax(self.critic_target(next_obs_c, next_a), -1)  # (K, B, Z)
            pick = (probs * atoms).sum(-1).argmin(0)  # (B,)
            p_next = probs.gather(0, pick[None, :, None].expand(1, *probs.shape[1:])).squeeze(0)  # (B, Z)
            moved = rew[:, None] + disc[:, None] * (atoms - alpha * next_logp[:, None])
            target = distributional.project(p_next, moved, atoms)
        logits = self.critic(obs_c, act)  # (K, B, Z)
        critic_loss = -(target * torch.log_softmax(logits, -1)).sum(-1).mean(1).sum()
        return critic_loss, self._q_values(logits)

    def set_progress(self, fraction: float) -> None:
        """Linear learning-rate schedule: lr = lr0 * (1 - (1 - lr_decay_to) * fraction), fraction in [0, 1]."""
        self.optimizer.set_lr_scale(1.0 - (1.0 - self.cfg.lr_decay_to) * min(max(fraction, 0.0), 1.0))

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient step on a replay batch; returns detached scalar metrics (no host sync)."""
        with_actor = self.cfg.freeze_critic or self.num_updates % self.cfg.actor_delay == 0  # frozen: nothing to delay
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.cfg.bf16):
            loss, metrics = self._loss_fn(
                batch["obs_actor"],
                batch["obs_critic"],
                batch["action"],
                batch["reward"],
                batch["next_obs_actor"],
                batch["next_obs_critic"],
                batch["terminated"],
                batch.get("discount"),
                with_actor,
                batch.get("bc_target"),
            )
        self.optimizer.zero_grad()
        loss.backward()
        frozen = self.cfg.freeze_critic  # groups: 0 actor, 1 critics, 2 temperature
        self.optimizer.step((0, 2) if frozen else None if with_actor else (1,))
        if not frozen:
            with torch.no_grad():
                torch._foreach_lerp_(self._target, self._online, self.cfg.tau)  # pyright: ignore
        self.num_updates += 1
        return metrics

    # ----------------------------------------------------------------------------------------------- state
    def __deepcopy__(self, memo: dict) -> SAC:
        """An independent agent in the same state.

        The optimiser's parameters are views into its flat buffer; a field-by-field deepcopy would give
        parameters detached from the copied optimiser (updates that never move them), so the copy is rebuilt.
        """
        twin = SAC(self.obs_dims, self.act_dim, self.cfg, self.device, self.image_shape)
        twin.load_state_dict(copy.deepcopy(self.state_dict(), memo))
        return twin

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_norm": self.actor_norm.state_dict(),
            "critic_norm": self.critic_norm.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_norm.load_state_dict(state["actor_norm"])
        self.critic_norm.load_state_dict(state["critic_norm"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_updates = int(state["num_updates"])
