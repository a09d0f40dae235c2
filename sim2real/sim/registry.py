"""The task registry: ``make("quadrotor-hover", num_envs=1024)``, Gymnasium ``register`` style.

A task registers itself in its own module with a :class:`TaskSpec`: its env config class, how to build the env,
its tuned training defaults, its validation (used to keep a run's best policy) and, optionally, its own
evaluation of an exported policy. The registry lives below the tasks and the learning code, so it names the
built-in task modules as strings and imports them on first use (:data:`BUILTIN_TASK_MODULES`); a third-party
package adds tasks through the ``sim2real.tasks`` entry-point group (each entry point names a module that
calls :func:`register` when imported).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sim2real.core.config import dataclass_from_dict
from sim2real.core.files import CheckpointError
from sim2real.core.obs import joined_layout, select
from sim2real.core.policy_file import PolicyMetadata
from sim2real.sim.vecenv import EnvConfig, VecEnv

#: Modules of the built-in tasks; importing one registers its tasks.
BUILTIN_TASK_MODULES = (
    "sim2real.tasks.quadrotor_hover", "sim2real.tasks.gym_mujoco", "sim2real.tasks.humanoid_walk", "sim2real.tasks.peg_insert",
    "sim2real.tasks.isaacgym_tasks",
)  # fmt: skip
ENTRY_POINT_GROUP = "sim2real.tasks"

PolicyFn = Callable[[Any], Any]
"""Maps observations ``(N, obs_dim)`` (torch) of its input group to actions ``(N, act_dim)``. The input group is
the callable's ``obs_group`` attribute (``"policy"`` when it has none): :func:`policy_input` picks it."""


@dataclass(frozen=True)
class GroupedPolicy:
    """A policy function with the name of the observation group (or joined groups) it reads."""

    fn: Callable[[Any], Any]
    obs_group: str = "policy"

    def __call__(self, obs: Any) -> Any:
        return self.fn(obs)


def policy_input(policy: PolicyFn, obs: dict[str, Any]) -> Any:
    """The part of an env's observation dict that ``policy`` reads (its ``obs_group``, default ``policy``)."""
    return select(obs, getattr(policy, "obs_group", "policy"))


@dataclass(frozen=True)
class EvalRequest:
    """What ``sim2real eval`` asks of a task's evaluation."""

    episodes: int
    seed: int
    out_dir: Path
    """Where the evaluation writes its files (``eval.json`` is written by the caller)."""
    starts: tuple[str, ...] = ()
    """Start distributions, for tasks that have several (hover: ``nominal``, ``hard``); empty: the task's all."""


@dataclass(frozen=True)
class TaskSpec:
    """Everything that belongs to one task."""

    name: str
    description: str
    config: type[EnvConfig]
    """The task's env config dataclass; ``config()`` is its default."""
    make: Callable[[Any], VecEnv]
    """``make(cfg) -> VecEnv`` for a config of type :attr:`config`."""
    train_defaults: Callable[[], Any]
    """The tuned ``TrainConfig`` of this task (imports the learning code only when called)."""
    student_defaults: Callable[[], Any] | None = None
    """The tuned ``TrainConfig`` of a distilled student (``sim2real train --stage student``; its ``distill.teacher``
    is set by the caller); None: the task trains in one stage."""
    validate: Callable[[PolicyFn, Any, int, int | None], dict[str, float]] | None = None
    """``validate(policy_fn, env_cfg, episodes, seed) -> {"score": lower is better, ...figures}``: used by the
    runner to keep the best policy of a run (``best.pt``) and added to ``sim2real eval``'s figures."""
    evaluate: Callable[[PolicyFn, Any, EvalRequest], dict[str, Any]] | None = None
    """The task's own ``sim2real eval`` (figures, plots): ``evaluate(policy, env_cfg, request) -> results``;
    None: whole-episode returns (:mod:`sim2real.eval.returns`)."""
    report: Callable[[dict[str, Any]], None] | None = None
    """Prints :attr:`evaluate`'s results for a person (a table); None: one line of return statistics."""
    imagination: Callable[..., Any] | None = None
    """``imagination(env_cfg, limits, home, reward_env_steps)``: the task inside a world model, for finetuning on a
    robot (:mod:`sim2real.policies.finetune`'s ``Imagination``); None: the task cannot be finetuned."""


_REGISTRY: dict[str, TaskSpec] = {}
_loaded = False


def register(spec: TaskSpec) -> None:
    """Add a task (called by the task's module when it is imported)."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] != spec:
        raise ValueError(f"task {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec


def _load() -> None:
    """Import the built-in task modules and the ``sim2real.tasks`` entry points once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_TASK_MODULES:
        importlib.import_module(module)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(ep.value.partition(":")[0])


def get_task(name: str) -> TaskSpec:
    """The spec of a registered task; KeyError naming the available ones."""
    _load()
    if name not in _REGISTRY:
        raise KeyError(f"unknown task {name!r}; available: {', '.join(sorted(_REGISTRY)) or 'none'}")
    return _REGISTRY[name]


def list_tasks() -> list[TaskSpec]:
    _load()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def make(name: str, cfg: EnvConfig | None = None, **overrides: Any) -> VecEnv:
    """Build a registered task: ``make("quadrotor-hover", num_envs=1024, device="cpu")``.

    Args:
        name: task name.
        cfg: the task's config (default: its defaults).
        **overrides: top-level fields of the config (``TypeError`` on an unknown one).
    """
    spec = get_task(name)
    return spec.make(replace(cfg or spec.config(), **overrides))


def policy_env_config(meta: PolicyMetadata, where: str = "policy") -> tuple[TaskSpec, EnvConfig]:
    """The task and env config an exported policy was trained with, checked against the file's layout.

    Raises:
        CheckpointError: unknown task, an env config the task does not take, or an env whose observation group
            differs from the policy's (the policy would read the wrong numbers).
    """
    try:
        spec = get_task(meta.task)
        cfg = dataclass_from_dict(spec.config, meta.env_config) if meta.env_config else spec.config()
        env = spec.make(cfg.for_evaluation(1))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: cannot rebuild the env of task {meta.task!r} ({e})") from None
    try:
        try:
            group = joined_layout(env.spec.obs_groups, meta.obs_group)
        except (KeyError, ValueError):
            group = None
        sensors = env.spec.sensors
    finally:
        env.close()
    if group is None or group.to_json() != meta.obs_layout.to_json():
        raise CheckpointError(f"{where}: its {meta.obs_group!r} layout ({meta.obs_dim} values) differs from the one "
                              f"task {meta.task!r} builds from its env config ({group.dim if group else 'no group'})")
    for name, desc in meta.sensors.items():
        if sensors.get(name) != desc:
            raise CheckpointError(f"{where}: its {name} sensor {desc} differs from the one task {meta.task!r} builds "
                                  f"from its env config: {sensors.get(name)}")  # fmt: skip
    return spec, cfg


def with_engine(env_cfg: Any, engine: str, task: str) -> Any:
    """``env_cfg`` run by physics ``engine`` (sim-to-sim evaluation): its ``engine`` field replaced.

    Raises:
        ValueError: the task's config has no choice of engine, or does not know ``engine`` (the message lists them).
    """
    from dataclasses import fields, replace

    if "engine" not in {f.name for f in fields(env_cfg)}:
        raise ValueError(f"task {task!r} runs in one engine only ({type(env_cfg).__name__} has no engine setting)")
    if env_cfg.engine == engine:
        return env_cfg
    return replace(env_cfg, engine=engine)

