"""``sim2real finetune``: a short loop on a shifted simulated robot, and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import PRETRAINED, REPO, TRAINED_POLICY

from sim2real.cli.main import main

TINY = ["--set", "imagined_envs=16", "--set", "imagined_steps=4", "--set", "updates_per_step=1", "--set", "select_every=2",
        "--set", "select_episodes=4", "--set", "gate_episodes=8", "--set", "gate_seconds=0.3",
        "--set", "world_model.iterations=1", "--set", "world_model.windows=32", "--set", "world_model.burn_in_s=0.3"]  # fmt: skip


def test_finetune_runs_and_summarises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["finetune", str(PRETRAINED), "--real", "quadrotor-hover", "--real-params",
            str(REPO / "config" / "shifts" / "heavy_weak.yaml"), "--policy", str(TRAINED_POLICY), "--max-real-s", "3",
            "--out", str(tmp_path), *TINY]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((tmp_path / "finetune_report.json").read_text())
    assert report["real_s"] == pytest.approx(3.0) and len(report["iterations"]) == 1
    assert report["real_system"]["shift"]["mass"] == 1.25 and report["real_system"]["violation_steps"] == 0
    assert "safety violations" in capsys.readouterr().out
    # the run kept its real flights: system identification reads them
    assert main(["sysid", str(tmp_path), "--json", "--horizon", "2", "--bootstrap", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["read"]["transitions"] == 300 and "mass" in result["parameters"]
    (tmp_path / "empty").mkdir()
    assert main(["sysid", str(tmp_path / "empty")]) == 2  # a directory without flights
    assert "not a finetuning run" in capsys.readouterr().err


def test_print_config_shows_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["finetune", str(PRETRAINED), "--real", "quadrotor-hover", "--print-config", "--set", "anchor=3"]) == 0
    out = capsys.readouterr().out
    assert "anchor: 3.0" in out and "position_box_m: 0.5" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--real", "cartpole"], "simulated real systems"), (["--real", "quadrotor-hover", "--max-real-s", "0"], "> 0"),
     (["--real", "quadrotor-hover", "--set", "colour=red"], "unknown setting"),
     (["--real", "quadrotor-hover", "--real-params", "missing.yaml"], "not found")],
)  # fmt: skip
def test_bad_input_is_a_clear_error(extra: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["finetune", str(PRETRAINED), "--out", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err
