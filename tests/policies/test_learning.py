"""Learning regression (slow): the default quadrotor-hover recipe reaches the acceptance criterion.

Runs the same path as `make demo`: train with the task defaults, export ONNX (parity-checked), evaluate the
exported policy with onnxruntime over 200 nominal episodes. ~5 minutes on a 2-core CPU.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from sim2real.eval.policy import evaluate_policy_file
from sim2real.export.onnx import export_onnx
from sim2real.policies.runner import Runner
from sim2real.tasks.quadrotor_hover import train_defaults as quadrotor_hover_defaults
from sim2real.tasks.quadrotor_hover.evaluation import passes


@pytest.mark.slow
def test_default_hover_recipe_meets_the_criterion(tmp_path: Path) -> None:
    cfg = replace(quadrotor_hover_defaults(), log_dir=str(tmp_path), seed=0)
    runner = Runner(cfg, quiet=True)
    runner.train()
    onnx_path = export_onnx(runner.run_dir)
    _, results = evaluate_policy_file(onnx_path, 200, 0, starts=("nominal",))
    nominal = results["nominal"]
    assert passes(nominal), nominal
    assert nominal["left_box_fraction"] <= 0.01 and nominal["pos_error_last2s_m"] < 0.10
