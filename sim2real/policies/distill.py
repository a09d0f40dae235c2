"""Asymmetric actor-critic distillation (AACD; TacSL, Akinola et al. 2024, arXiv 2408.06506).

A privileged *teacher* trains a *student* that reads only what a robot senses, through the teacher's critic:

* **stage 1, teacher**: plain SAC whose actor and critics both read the privileged ``critic`` group (the
  simulator's state: the peg's pose in the hand, the true socket pose, contact forces);
* **stage 2, student**: a **new** actor on deployable inputs (``policy+tactile``). The critics, their targets and
  normaliser and the temperature start from the teacher's, and the student's actor loss is SAC's
  ``E[alpha log pi(a|o) - min_k Q_k(s, a)]`` with ``a ~ pi(.|o)`` on the student's observation ``o`` and the
  teacher's critic on the privileged state ``s`` of the same step:

  - ``critic="frozen"``: the critics are not trained (:attr:`SACConfig.freeze_critic`): the student climbs the
    teacher's soft Q-function (TacSL: the fastest);
  - ``critic="finetune"``: TD learning continues on the student's own transitions, whose targets use the student's
    next actions (TacSL: the best asymptote);
  - ``critic="scratch"``: nothing comes from the teacher (the plain asymmetric actor-critic ablation).

* **DAgger warm start** (optional, Ross et al. 2011): for the first ``dagger_env_steps`` the student's actor loss is
  ``E |tanh(mu(o)) - a_T(s)|^2``, imitating the teacher's deterministic action on the student's *own* states (the
  replay holds what the student visited); with probability ``beta`` (decaying linearly to 0 over the warm start)
  the teacher's action is the one executed, so early data stays near good behaviour.

The runner (:mod:`sim2real.policies.runner`) reads the teacher's checkpoint, calls :func:`teacher_from_state` and
:func:`student_sac` before it builds the agent, then :func:`init_student`; the returned :class:`Teacher` labels DAgger batches.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from sim2real.core.files import CheckpointError
from sim2real.core.obs import select
from sim2real.policies.networks import RunningNormalizer, SquashedGaussianActor
from sim2real.policies.sac import SAC, SACConfig

CRITIC_MODES = ("frozen", "finetune", "scratch")
#: The critic settings a student takes over from its teacher (the critic's weights must fit them).
CRITIC_FIELDS = ("critic_obs", "critic_hidden", "critic_layernorm", "num_q", "num_atoms", "v_min", "v_max", "activation")


@dataclass
class DistillConfig:
    """Stage 2 of AACD (module docstring); ``teacher=""`` means the run is not a student."""

    teacher: str = ""
    """Run directory (its ``best.pt``, else ``checkpoint.pt``) or checkpoint file of the stage-1 teacher."""
    critic: str = "frozen"
    """``frozen``, ``finetune`` or ``scratch`` (the teacher's critic is not used: the ablation)."""
    dagger_env_steps: int = 0
    """Env steps (summed over envs) of DAgger warm start; 0: none."""
    dagger_beta: float = 0.5
    """Probability that the teacher's action is executed at the start of the warm start (decays to 0)."""

    def __post_init__(self) -> None:
        if self.critic not in CRITIC_MODES:
            raise ValueError(f"distill critic must be one of {', '.join(CRITIC_MODES)}, got {self.critic!r}")
        if self.dagger_env_steps < 0 or not 0.0 <= self.dagger_beta <= 1.0:
            raise ValueError("need dagger_env_steps >= 0 and 0 <= dagger_beta <= 1")


@dataclass
class Teacher:
    """The stage-1 policy, frozen: deterministic actions from its observation group."""

    actor: SquashedGaussianActor
    norm: RunningNormalizer | None
    obs_group: str
    sac: SACConfig
    """The teacher's SAC settings (its critic's shape)."""
    state: dict[str, Any]
    """The teacher agent's state (``SAC.state_dict``)."""

    @torch.no_grad()
    def act(self, x: torch.Tensor) -> torch.Tensor:
        """``tanh(mu_T(s))`` ``(B, A)`` for the teacher's input ``x`` ``(B, D)`` (its group, raw)."""
        return self.actor.deterministic(self.norm(x) if self.norm is not None else x)

    def act_on(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.act(select(obs, self.obs_group))


def teacher_from_state(
    sac: SACConfig, agent_state: dict[str, Any], obs_dims: dict[str, int], act_dim: int, device: torch.device, where: str
) -> Teacher:
    """Rebuild the frozen teacher from a stage-1 checkpoint's ``config.sac`` and ``agent`` state.

    Raises:
        CheckpointError: weights that do not fit the env (``where`` names the checkpoint in the message).
    """
    try:
        agent = SAC(obs_dims, act_dim, sac, device)
        agent.load_state_dict(agent_state)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"teacher {where} does not fit this task's env ({type(e).__name__}: {e})") from None
    actor = agent.actor.eval().requires_grad_(False)
    norm = agent.actor_norm if sac.normalize_obs else None
    return Teacher(actor, norm, sac.actor_obs, sac, agent.state_dict())


def student_sac(d: DistillConfig, sac: SACConfig, teacher: Teacher) -> SACConfig:
    """The student's resolved SAC settings: the teacher's critic shape (unless ``scratch``) and ``freeze_critic``.

    Raises:
        ValueError: the student's actor reads the critic's group, or the teacher's actor reads something other than
            the student's critic group (DAgger labels states from the replay's critic observations).
    """
    if sac.actor_obs == sac.critic_obs:
        raise ValueError(f"a student's actor must not read the privileged {sac.critic_obs!r} group")
    if d.critic != "scratch":
        sac = replace(sac, **{k: getattr(teacher.sac, k) for k in CRITIC_FIELDS})
    if d.dagger_env_steps and teacher.obs_group != sac.critic_obs:
        raise ValueError(f"DAgger labels the replay's {sac.critic_obs!r} observations, but the teacher reads "
                         f"{teacher.obs_group!r}")  # fmt: skip
    return replace(sac, freeze_critic=d.critic == "frozen")


def init_student(agent: SAC, teacher: Teacher, mode: str) -> None:
    """Start the student's critics, targets, critic normaliser and temperature from the teacher's (not ``scratch``)."""
    if mode == "scratch":
        return
    s = teacher.state
    agent.critic.load_state_dict(s["critic"])
    agent.critic_target.load_state_dict(s["critic_target"])
    agent.critic_norm.load_state_dict(s["critic_norm"])
    with torch.no_grad():
        agent.log_alpha.copy_(s["log_alpha"])


def dagger_beta(cfg: DistillConfig, env_steps: int) -> float:
    """Probability of executing the teacher's action at ``env_steps``: ``beta (1 - t / T)`` in the warm start, then 0."""
    if env_steps >= cfg.dagger_env_steps:
        return 0.0
    return cfg.dagger_beta * (1.0 - env_steps / cfg.dagger_env_steps)
