"""``sim2real eval``: an exported policy, run by onnxruntime, in the env of the task it was trained for.

The env is rebuilt from the policy's metadata (:func:`~sim2real.sim.registry.policy_env_config`, which refuses a
file whose observation layout the task no longer builds). A task with its own evaluation (``TaskSpec.evaluate``,
e.g. hover's nominal/hard figures) runs it; any other task gets whole-episode returns
(:mod:`sim2real.eval.returns`) and its validation figures. The figures go to ``eval.json`` beside the policy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sim2real.core.files import write_text_atomic
from sim2real.core.policy_file import OnnxPolicy
from sim2real.eval.returns import evaluate_returns
from sim2real.sim.registry import EvalRequest, TaskSpec, policy_env_config, with_engine


def evaluate_policy_file(path: Path, episodes: int = 200, seed: int = 0, out_dir: Path | None = None,
                         starts: tuple[str, ...] = (), engine: str | None = None) -> tuple[TaskSpec, dict[str, Any]]:  # fmt: skip
    """Evaluate ``policy.onnx``; writes ``eval.json`` (and the task's plots) into ``out_dir`` (default: beside it).

    ``engine`` runs the policy in another physics engine than the one it was trained in (sim-to-sim): the same task,
    observation builder and figures, another integrator (``quadrotor-hover``: ``torch`` or ``pybullet``;
    ``mujoco-halfcheetah``, ``mujoco-hopper``: ``mujoco`` or ``pybullet``).

    Raises:
        ValueError: ``episodes < 1`` (each evaluation checks its own arguments), or a policy file that does not fit.

    Returns:
        The task and the figures; ``figures["meta"]`` names the policy, episodes, seed, time and files written.
    """
    policy = OnnxPolicy(path)
    spec, env_cfg = policy_env_config(policy.metadata, str(path))
    if engine is not None:
        env_cfg = with_engine(env_cfg, engine, spec.name)
    out = out_dir or path.parent
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if spec.evaluate is not None:
        results = spec.evaluate(policy, env_cfg, EvalRequest(episodes, seed, out, starts))
    else:
        results = evaluate_returns(policy, spec, env_cfg, episodes, seed)
    files = [str(out / "eval.json"), *results.pop("files", [])]
    results["meta"] = {"policy": str(path), "episodes": episodes, "seed": seed, "engine": getattr(env_cfg, "engine", None),
                       "eval_time_s": round(time.time() - t0, 2)}  # fmt: skip
    write_text_atomic(out / "eval.json", json.dumps(results, indent=2))
    results["meta"]["files"] = files
    return spec, results


def print_report(spec: TaskSpec, results: dict[str, Any]) -> None:
    """The figures for a person: the task's own report, or one line of return statistics."""
    if spec.report is not None:
        spec.report(results)
        return
    print(f"{results['task']}: {results['episodes']} episodes, return {results['return_mean']:.1f} ± "
          f"{results['return_std']:.1f} [{results['return_min']:.1f}, {results['return_max']:.1f}], length "
          f"{results['length_mean']:.0f} steps")  # fmt: skip
    for k, v in results.get("validation", {}).items():
        print(f"  {k}: {v:.4g}")
    print(f"wrote {', '.join(results['meta']['files'])}")
