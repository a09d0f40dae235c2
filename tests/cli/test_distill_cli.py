"""``sim2real train peg-insert --stage teacher|student``: both stages from the command line, then export and eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("mujoco", reason="the [mujoco] extra is not installed")

from sim2real.cli.main import main  # noqa: E402

TINY = ["--num-envs", "4", "--total-steps", "160", "--set", "warmup_env_steps=80", "--set", "sac.batch_size=32",
        "--set", "eval_interval=0", "--set", "log_interval=80", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("peg")
    assert main(["train", "peg-insert", "--stage", "teacher", "--log-dir", str(root), *TINY]) == 0
    (run,) = (root / "peg-insert").iterdir()
    return run


def test_student_stage_trains_exports_and_reports_its_success_rate(
    teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "peg-insert", "--stage", "student", "--teacher", str(teacher), "--critic", "finetune",
            "--dagger-steps", "80", "--log-dir", str(tmp_path), *TINY]  # fmt: skip
    assert main(argv) == 0
    (run,) = (tmp_path / "peg-insert").iterdir()
    config = (run / "config.yaml").read_text()
    assert f"teacher: {teacher}" in config and "critic: finetune" in config and "actor_obs: policy+tactile" in config
    assert main(["eval", str(run), "--episodes", "4", "--json"]) == 0  # exports first, then evaluates
    out = capsys.readouterr().out
    results = json.loads(out[out.index("{") :])
    assert results["episodes"] == 4 and 0.0 <= results["success_rate"] <= 1.0
    assert main(["train", "peg-insert", "--resume", str(run), "--total-steps", "200", "--quiet"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stage", "student"], "needs --teacher"),
        (["--stage", "student", "--teacher", "/no/such/run"], "no such run directory or checkpoint"),
        (["--teacher", "somewhere"], "belong to --stage student"),
        (["--critic", "frozen"], "belong to --stage student"),
    ],
)
def test_bad_stage_arguments_are_clear_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "peg-insert", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err, err


def test_a_task_without_a_student_stage_says_so(teacher: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "quadrotor-hover", "--stage", "student", "--teacher", str(teacher)]) == 2
    assert "has no student stage" in capsys.readouterr().err


def test_the_committed_student_inserts_the_peg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The fixture student (tests/data/README.md) through the user's command: a success rate a user can reproduce."""
    policy = Path(__file__).parents[1] / "data" / "peg_insert_student.onnx"
    assert main(["eval", str(policy), "--episodes", "200", "--seed", "5", "--out", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out
    results = json.loads(out[out.index("{") :])
    assert results["episodes"] == 200 and results["success_rate"] >= 0.7, results  # 75.0 % when committed
    assert json.loads((tmp_path / "eval.json").read_text())["success_rate"] == results["success_rate"]
