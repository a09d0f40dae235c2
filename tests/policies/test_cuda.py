"""The CUDA path: simulator, replay, SAC and runner on the GPU (skipped on machines without CUDA)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sim2real.core.config import apply_overrides
from sim2real.policies.runner import Runner
from sim2real.tasks.quadrotor_hover import train_defaults as quadrotor_hover_defaults

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_training_runs_on_cuda_and_matches_cpu_shapes(tmp_path: Path) -> None:
    cfg = apply_overrides(quadrotor_hover_defaults(), {
        "device": "cuda:0", "num_envs": 256, "total_env_steps": 20_480, "warmup_env_steps": 2_048,
        "sac.batch_size": 1024, "log_interval": 10_240, "eval_interval": 10_240, "eval_start": 10_240,
        "eval_episodes": 8, "log_dir": str(tmp_path),
    })  # fmt: skip
    runner = Runner(cfg, quiet=True)
    summary = runner.train()
    assert runner.replay.data["obs_actor"].is_cuda and runner.env.state.is_cuda
    assert all(torch.isfinite(p).all() for p in runner.agent.actor.parameters())
    assert summary["updates"] > 0 and (runner.run_dir / "best.pt").is_file()


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_cuda_fast_path_compiled_bf16_c51_nstep(tmp_path: Path, mode: str) -> None:
    """The large-batch settings together on the GPU: compiled loss (CUDA graphs), bf16, C51, 3-step returns."""
    cfg = apply_overrides(quadrotor_hover_defaults(), {
        "device": "cuda:0", "num_envs": 512, "total_env_steps": 40_960, "warmup_env_steps": 4_096,
        "sac.batch_size": 4096, "sac.compile": True, "sac.compile_mode": mode, "sac.bf16": True,
        "sac.num_atoms": 51, "sac.v_min": -200.0, "sac.v_max": 200.0, "sac.n_step": 3, "sac.critic_layernorm": True,
        "log_interval": 20_480, "eval_interval": 0, "log_dir": str(tmp_path),
    })  # fmt: skip
    runner = Runner(cfg, quiet=True)
    summary = runner.train()
    assert summary["updates"] > 0 and summary["replay_ratio"] == 4 * 4096 / 512
    assert all(torch.isfinite(p).all() for p in runner.agent.critic.parameters())
