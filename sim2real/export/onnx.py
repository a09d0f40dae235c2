"""Export a trained SAC policy to ONNX with its deployment contract in the metadata: the one writer of policy files.

The graph is :class:`DeployedPolicy`, ``actions = tanh(mu(clip((obs - mean) / std)))``: input ``obs`` float32
``(batch, obs_dim)``, output ``actions`` float32 ``(batch, act_dim)``, dynamic batch, pinned opset. The model's
``metadata_props`` hold the :class:`~sim2real.core.policy_file.PolicyMetadata` of the run (observation layout,
action meaning and bounds, control rate, task, robot, training run and checkpoint hash), so eval, the ROS 2 node,
the HIL runner and the C export read the layout instead of hard-coding it (:mod:`sim2real.core.policy_file` is
their reader and runtime). Nothing is written unless onnxruntime reproduces the PyTorch policy within ``atol``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

import sim2real
from sim2real.core.config import config_to_dict
from sim2real.core.files import CheckpointError, load_checkpoint, write_bytes_atomic
from sim2real.core.obs import joined_dim, joined_layout, select
from sim2real.core.policy_file import INPUT_NAME, OUTPUT_NAME, OnnxPolicy, PolicyMetadata, metadata_props
from sim2real.policies.networks import RunningNormalizer, SquashedGaussianActor
from sim2real.policies.runner import CHECKPOINT_VERSION, TrainConfig, config_from_dict, make_agent, run_checkpoint
from sim2real.policies.sac import SAC
from sim2real.sim.registry import get_task
from sim2real.sim.vecenv import EnvSpec, VecEnv

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """The ONNX graph could not be produced, or onnxruntime does not reproduce the PyTorch policy."""


class DeployedPolicy(nn.Module):
    """Deterministic deployment policy with the observation normaliser baked in.

    ``x = clip((obs - mean) * rsqrt(var + eps), -c, c)`` (identity if the run did not normalise), then
    ``actions = tanh(mu(x))`` where ``mu`` is the first ``act_dim`` outputs of the actor MLP (after its encoder, if
    any), i.e. ``SquashedGaussianActor.deterministic``. A slice rather than ``chunk``: the ``Split`` that ``chunk`` becomes
    does not survive the exporter's down-conversion to opset 17.

    Args:
        actor: trained actor (its MLP is shared, not copied).
        normalizer: the actor's observation normaliser, or ``None`` when observations are used raw.
    """

    def __init__(self, actor: SquashedGaussianActor, normalizer: RunningNormalizer | None) -> None:
        super().__init__()
        self.actor = actor
        self.act_dim, self.obs_dim = int(actor.act_dim), int(actor.obs_dim)
        self.normalize = normalizer is not None
        if normalizer is not None:
            mean, inv_std = normalizer.mean.clone(), torch.rsqrt(normalizer.var + normalizer.eps)  # same op as forward
            self.clip = float(normalizer.clip)
        else:
            mean, inv_std, self.clip = torch.zeros(self.obs_dim), torch.ones(self.obs_dim), math.inf
        self.mean: torch.Tensor
        self.inv_std: torch.Tensor
        self.register_buffer("mean", mean)
        self.register_buffer("inv_std", inv_std)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions ``(B, act_dim)`` in ``[-1, 1]`` for raw observations ``obs`` ``(B, obs_dim)``."""
        x = ((obs - self.mean) * self.inv_std).clamp(-self.clip, self.clip) if self.normalize else obs
        return torch.tanh(self.actor.mean_action(x))


@dataclass
class TrainedPolicy:
    """A checkpoint rebuilt on the CPU for deployment (what :func:`load_trained_policy` returns).

    ``cfg`` is the training config as saved, ``env`` a one-env CPU instance of the task (source of the spec and
    of the resolved task config), ``sha256`` the hash of the checkpoint file.
    """

    cfg: TrainConfig
    agent: SAC
    env: VecEnv
    checkpoint: Path
    run_dir: Path
    env_steps: int
    sha256: str

    @property
    def spec(self) -> EnvSpec:
        return self.env.spec

    @property
    def group(self) -> str:
        return self.cfg.sac.actor_obs

    def policy(self) -> DeployedPolicy:
        """The exportable module (eval mode)."""
        return DeployedPolicy(self.agent.actor, self.agent.actor_norm if self.cfg.sac.normalize_obs else None).eval()

    @torch.no_grad()
    def reference(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic actions ``(B, A)`` through the training modules (normaliser, actor) for ``obs`` ``(B, D)``."""
        return self.agent.act_input(obs, deterministic=True)


def _cpu_env(cfg: TrainConfig, num_envs: int) -> VecEnv:
    """The task env of ``cfg`` as evaluation builds it: on the CPU with ``num_envs`` envs."""
    return get_task(cfg.task).make(cfg.env.for_evaluation(num_envs))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_trained_policy(source: str | Path) -> TrainedPolicy:
    """Rebuild config, task env and agent of a run directory or a checkpoint file.

    A run directory gives its ``best.pt`` (best validated policy) when present, else ``checkpoint.pt``.

    Raises:
        CheckpointError: missing/corrupt file, unsupported version, unreadable config, unknown task, or actor
            tensors that do not fit the config (the offending tensor is named).
    """
    ckpt_path = run_checkpoint(source).resolve()  # a run directory exports its validated best policy when it has one
    ckpt = load_checkpoint(ckpt_path)
    missing = [k for k in ("version", "config", "agent") if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {ckpt_path} lacks {', '.join(missing)}: not a sim2real training checkpoint")
    if ckpt["version"] not in (1, CHECKPOINT_VERSION):
        raise CheckpointError(f"checkpoint {ckpt_path} has version {ckpt['version']}; supported: 1, {CHECKPOINT_VERSION}")
    try:
        cfg = config_from_dict(ckpt["config"], ckpt["version"])
        env = _cpu_env(cfg, 1)
        spec = env.spec
        agent = make_agent(spec, cfg.sac, "cpu")
    except (TypeError, KeyError, ValueError) as e:
        raise CheckpointError(f"checkpoint {ckpt_path}: cannot rebuild its run ({type(e).__name__}: {e})") from None
    state = ckpt["agent"]
    obs_dim = joined_dim(spec.obs_dims, cfg.sac.actor_obs)
    for name, module in (("actor", agent.actor), ("actor_norm", agent.actor_norm)):
        if not isinstance(state, dict) or name not in state:
            raise CheckpointError(f"checkpoint {ckpt_path}: agent state has no {name!r}")
        try:
            module.load_state_dict(state[name])
        except (RuntimeError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(
                f"checkpoint {ckpt_path}: {name} tensors do not fit the config (task {cfg.task!r}, obs group "
                f"{cfg.sac.actor_obs!r} of width {obs_dim}, act_dim {spec.action_dim}, actor_hidden "
                f"{cfg.sac.actor_hidden}): {e}"
            ) from None
        for key, t in module.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise CheckpointError(f"checkpoint {ckpt_path}: {name}.{key} contains NaN/Inf")
    steps = int(ckpt.get("env_steps", 0))
    return TrainedPolicy(cfg, agent, env, ckpt_path, ckpt_path.parent, steps, _sha256(ckpt_path))


# ----------------------------------------------------------------------------------------------- export
@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporters' warnings, prints and log lines (opset fallback notes, deprecations)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_graph(policy: DeployedPolicy, opset: int) -> onnx.ModelProto:
    """Trace ``policy`` to an ONNX model with a dynamic batch axis; checked, opset verified, I/O shapes pinned.

    Uses the ``torch.export``-based exporter (``dynamo=True``, the default since torch 2.9; the TorchScript one
    is deprecated). It emits opset 18 and down-converts to ``opset`` when that is lower.
    """
    example = torch.zeros(2, policy.obs_dim)  # batch 2: a batch of 1 could be specialised into the graph
    batch = {INPUT_NAME: {0: torch.export.Dim("batch")}}
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                policy, (example,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset,
                dynamic_shapes=batch, dynamo=True,
            )  # fmt: skip
            if program is None:
                raise ExportError("torch.onnx.export returned no program")
            model = program.model_proto
        onnx.checker.check_model(model)
    except Exception as e:  # the exporter raises many types; all mean "no usable graph"
        raise ExportError(f"torch.onnx.export (opset {opset}) failed: {type(e).__name__}: {e}") from e
    got = sorted(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if got != [opset]:
        raise ExportError(f"exporter produced opset {got}, asked for {opset}")
    for value, width in ((model.graph.input[0], policy.obs_dim), (model.graph.output[0], policy.act_dim)):
        dims = value.type.tensor_type.shape.dim  # pin to [batch, width] whatever names the exporter chose
        del dims[:]
        dims.add().dim_param = "batch"
        dims.add().dim_value = width
    return model


def _parity_inputs(tp: TrainedPolicy, n: int, seed: int) -> torch.Tensor:
    """``(n, obs_dim)``: half ``mean + std * N(0, 1)`` from the normaliser, half real env observations."""
    gen = torch.Generator().manual_seed(seed)
    norm, dim = tp.agent.actor_norm, joined_dim(tp.spec.obs_dims, tp.group)
    n_noise = n // 2
    noise = norm.mean + norm.var.clamp_min(0).sqrt() * torch.randn(n_noise, dim, generator=gen)
    n_real = n - n_noise
    env = _cpu_env(tp.cfg, min(n_real, 64))
    try:  # reset + a few steps with the deterministic policy; each step adds num_envs rows
        obs = env.reset(seed)
        rows = [select(obs, tp.group)]
        while sum(len(r) for r in rows) < n_real:
            obs = env.step(tp.reference(rows[-1]))[0]
            rows.append(select(obs, tp.group))
    finally:
        env.close()
    return torch.cat((noise, torch.cat(rows)[:n_real])).float().contiguous()


def _parity(onnx_policy: OnnxPolicy, tp: TrainedPolicy, x: torch.Tensor, singles: int = 16) -> float:
    """Max |onnxruntime - torch| over ``x`` ``(n, D)`` as one batch and over ``singles`` rows fed one by one."""
    ref = tp.reference(x).numpy()
    got = onnx_policy(x.numpy())
    half = len(x) // 2  # batch-of-1 rows from both halves (noise and real observations)
    idx = sorted({*range(min(singles // 2, half)), *range(half, min(half + singles - singles // 2, len(x)))})
    one = np.concatenate([onnx_policy(x[i : i + 1].numpy()) for i in idx])
    if got.shape != ref.shape or one.shape != (len(idx), ref.shape[1]):
        raise ExportError(f"onnxruntime returned shape {got.shape} / {one.shape}, torch {ref.shape}")
    if not (np.isfinite(ref).all() and np.isfinite(got).all() and np.isfinite(one).all()):
        raise ExportError("policy outputs NaN/Inf on the parity observations (torch or onnxruntime)")
    return float(max(np.abs(got - ref).max(), np.abs(one - ref[idx]).max()))


def build_metadata(tp: TrainedPolicy, opset: int) -> PolicyMetadata:
    """The policy-file metadata of a trained policy (the exporter adds the parity fields)."""
    spec, group = tp.spec, tp.group
    layout = joined_layout(spec.obs_groups, group)
    sensors = {k: v for k, v in spec.sensors.items() if v.get("term") in layout.names}  # those the policy reads
    return PolicyMetadata(
        task=spec.task, obs_group=group, obs_dim=layout.dim, obs_layout=layout, sensors=sensors,
        obs_normalization="inside the graph" if tp.cfg.sac.normalize_obs else "none", act_dim=spec.action_dim,
        action_meaning=spec.action_meaning, action_bounds=(spec.action_low, spec.action_high),
        control_dt=spec.control_dt, robot=spec.robot, max_episode_steps=spec.max_episode_steps,
        env_config=config_to_dict(tp.env.cfg), train_config=config_to_dict(tp.cfg), run_id=tp.run_dir.name,
        checkpoint_file=tp.checkpoint.name, checkpoint_sha256=tp.sha256, env_steps=tp.env_steps, opset=opset,
        exporter="torch.onnx (dynamo)", torch_version=torch.__version__,
        sim2real_version=str(getattr(sim2real, "__version__", "0")),
        created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )  # fmt: skip


def _set_metadata(model: onnx.ModelProto, meta: PolicyMetadata) -> None:
    """Write the metadata entries (:func:`~sim2real.core.policy_file.metadata_props`), replacing earlier values."""
    props = metadata_props(meta)
    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for key, value in [*((p.key, p.value) for p in keep), *props.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = f"sim2real policy for {meta.task} (run {meta.run_id}); see metadata_props['sim2real']"


def _resolve_out(out: str | Path | None, run_dir: Path) -> Path:
    """Output file; an existing directory gets ``policy.onnx``. Fails early if the file cannot be written."""
    if out is None:
        path = run_dir / "exported" / "policy.onnx"  # exported/ is created at write time
    else:
        path = Path(out)
        if path.is_dir():
            path = path / "policy.onnx"
        if not path.parent.exists():
            raise FileNotFoundError(f"output directory {path.parent} does not exist")
        if not path.parent.is_dir():
            raise NotADirectoryError(f"output directory {path.parent} is not a directory")
    existing = path.parent if path.parent.exists() else path.parent.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"output directory {existing} is not writable")
    return path


def export_onnx(
    source: str | Path,
    out: str | Path | None = None,
    opset: int = 17,
    atol: float = 1e-5,
    parity_samples: int = 1024,
    *,
    seed: int = 0,
) -> Path:
    """Export the deterministic policy of a run to ONNX, verified against PyTorch before anything is written.

    Args:
        source: run directory (holding ``checkpoint.pt``) or a checkpoint file.
        out: output file (or existing directory); default ``<run_dir>/exported/policy.onnx``.
        opset: ONNX opset of the default domain, pinned in the file.
        atol: largest tolerated ``max |onnxruntime - torch|`` over the parity observations.
        parity_samples: parity observations (half normaliser-scaled Gaussian, half real env observations),
            also fed one by one for a batch-of-1 check.
        seed: seed of the parity observations.

    Returns:
        Path of the written file. Its metadata holds ``parity_max_abs_diff`` (also logged at INFO).

    Raises:
        CheckpointError: unreadable checkpoint or tensors that do not fit its config.
        ExportError: export failed or parity above ``atol``; an existing output file is left untouched.
        FileNotFoundError, NotADirectoryError, PermissionError: the output location cannot be written.
    """
    if not atol >= 0.0:
        raise ValueError(f"atol must be >= 0, got {atol}")
    if parity_samples < 2:
        raise ValueError(f"parity_samples must be >= 2, got {parity_samples}")
    tp = load_trained_policy(source)
    path = _resolve_out(out, tp.run_dir)
    meta = build_metadata(tp, opset)
    model = _export_graph(tp.policy(), opset)
    _set_metadata(model, meta)
    x = _parity_inputs(tp, parity_samples, seed)
    diff = _parity(OnnxPolicy(model.SerializeToString()), tp, x)
    if not diff <= atol:
        raise ExportError(
            f"ONNX parity failed: max |onnxruntime - torch| = {diff:.3e} > atol {atol:.1e} over {len(x)} "
            f"observations; {path} was not written"
        )
    meta = replace(meta, parity_max_abs_diff=diff, parity_samples=len(x), parity_atol=atol)
    _set_metadata(model, meta)
    data = model.SerializeToString()
    final = OnnxPolicy(data)(x[:8].numpy())  # the bytes as written load and agree
    if not np.abs(final - tp.reference(x[:8]).numpy()).max() <= atol:
        raise ExportError("the model with metadata attached no longer matches torch")
    path.parent.mkdir(exist_ok=True)
    write_bytes_atomic(path, data)
    log.info("exported %s (opset %d, parity max|diff| %.2e over %d obs)", path, opset, diff, len(x))
    return path
