"""The `sim2real` command line, driven through its real entry point (in-process and as a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TRAINED_POLICY

from sim2real.cli.main import main

TINY = ["--num-envs", "8", "--total-steps", "400", "--set", "warmup_env_steps=200", "--set", "sac.batch_size=32",
        "--set", "log_interval=200", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    assert main(["train", "quadrotor-hover", "--seed", "3", "--log-dir", str(root), *TINY]) == 0
    (run,) = (root / "quadrotor-hover").iterdir()
    return run


def test_help_documents_every_option() -> None:
    out = subprocess.run([sys.executable, "-m", "sim2real.cli.main", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--seed", "--num-envs", "--device", "--total-steps", "--resume", "--set", "--print-config"):
        assert flag in out.stdout


def test_list_shows_hover(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    assert "quadrotor-hover" in capsys.readouterr().out


def test_train_writes_a_complete_run(run_dir: Path) -> None:
    for name in ("checkpoint.pt", "config.yaml", "summary.json", "learning_curve.png"):
        assert (run_dir / name).is_file(), name
    assert any(p.name.startswith("events.out.tfevents") for p in run_dir.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] >= 400 and summary["seed"] == 3


def test_print_config_shows_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "quadrotor-hover", "--print-config", "--set", "sac.batch_size=77", "--seed", "9"]) == 0
    out = capsys.readouterr().out
    assert "batch_size: 77" in out and "seed: 9" in out


def test_export_then_eval(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "onnx", str(run_dir)]) == 0
    onnx_path = run_dir / "exported" / "policy.onnx"
    assert onnx_path.is_file() and "parity" in capsys.readouterr().out
    out_dir = run_dir / "eval"
    assert main(["eval", str(onnx_path), "--episodes", "4", "--json", "--out", str(out_dir)]) == 0
    results = json.loads(capsys.readouterr().out)
    for start in ("nominal", "hard"):
        assert results[start]["episodes"] == 4
        assert 0.0 <= results[start]["left_box_fraction"] <= 1.0
    assert (out_dir / "eval.json").is_file() and (out_dir / "trajectories.png").stat().st_size > 10_000


def test_resume_continues_the_run(run_dir: Path) -> None:
    assert main(["train", "quadrotor-hover", "--resume", str(run_dir), "--total-steps", "600", "--quiet"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] >= 600


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "no-such-task"], "unknown task"),
        (["train", "quadrotor-hover", "--set", "sac.no_such_knob=1"], "unknown setting"),
        (["train", "quadrotor-hover", "--set", "sac.batch_size=abc"], "cannot read"),
        (["train", "quadrotor-hover", "--set", "missing-equals"], "KEY=VALUE"),
        (["train", "quadrotor-hover", "--num-envs", "0"], "num_envs"),
        (["train", "quadrotor-hover", "--set", "env.num_envs=4"], "set num_envs (--num-envs) instead"),
        (["train", "quadrotor-hover", "--set", "env.no_such=4"], "unknown setting 'no_such' for HoverConfig"),
        (["train", "quadrotor-hover", "--device", "cuda:0"], "CUDA is not available"),
        (["eval", "/no/such/run"], "no such run directory"),
        (["export", "onnx", "/no/such/run"], "not found"),
    ],
)
def test_bad_input_is_a_clear_error(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    if "cuda:0" in argv:
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err, err


def test_corrupt_checkpoint_is_refused_and_kept(tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "run"
    bad.mkdir()
    data = (run_dir / "checkpoint.pt").read_bytes()
    (bad / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    assert main(["export", "onnx", str(bad)]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err
    assert main(["train", "quadrotor-hover", "--resume", str(bad)]) == 2
    assert (bad / "checkpoint.pt").read_bytes() == data[: len(data) // 2]  # nothing overwritten


def test_unwritable_output_is_a_clear_error(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["export", "onnx", str(run_dir), "--out", str(blocker / "policy.onnx")]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_argparse_errors_exit_2() -> None:
    out = subprocess.run([sys.executable, "-m", "sim2real.cli.main", "train"], capture_output=True, text=True)
    assert out.returncode == 2 and "task" in out.stderr
    out = subprocess.run([sys.executable, "-m", "sim2real.cli.main", "eval", "x", "--episodes", "many"], capture_output=True,
                         text=True)  # fmt: skip
    assert out.returncode == 2 and "invalid int" in out.stderr


TRAINED = TRAINED_POLICY


def test_export_c_writes_checked_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from helpers import require_tools

    require_tools("gcc")
    assert main(["export", "c", str(TRAINED), "--out", str(tmp_path), "--int8"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "policy.h").is_file() and (tmp_path / "policy.c").is_file()
    assert "int8 accuracy loss" in out and "host build check: max |C - numpy int8 reference|" in out
    manifest = json.loads((tmp_path / "export.json").read_text())
    assert manifest["int8"] and manifest["macs"] == 13696


def test_export_firmware_verifies_in_qemu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from helpers import require_tools

    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    assert main(["export", "firmware", str(TRAINED), "--board", "netduinoplus2", "--out", str(tmp_path), "--verify"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "firmware.elf").is_file() and (tmp_path / "firmware.bin").is_file()
    assert "PASS (golden pair reproduced)" in out and "flash" in out and "RAM" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["hil", str(TRAINED), "--port", "socket://127.0.0.1:1"], "cannot open"),
        (["hil", "missing.onnx", "--port", "socket://127.0.0.1:1"], "no such run directory"),
        (["export", "c", str(TRAINED), "--check-samples", "-1"], "--check-samples"),
        (["export", "c", str(Path(__file__))], "expected a run directory or a .onnx file"),
    ],
)
def test_mcu_commands_report_bad_input(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_hil_in_qemu_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from helpers import require_tools

    require_tools("gcc", "arm-none-eabi-gcc", "qemu-system-arm")
    argv = ["hil", str(TRAINED), "--qemu", "netduinoplus2", "--duration", "3", "--out", str(tmp_path), "--json"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed[printed.index("{"):])
    assert result["passed"] and result["ticks"] == 300 and result["fallbacks"] == 0
    assert (result["compact"], result["full_frames"], result["compact_frames"], result["resyncs"]) == (True, 1, 299, 0)
    assert json.loads((tmp_path / "hil.json").read_text())["ticks"] == 300 and (tmp_path / "hil_trajectory.png").is_file()
    # --full-frames: the whole observation every tick (591 bytes per frame)
    argv = ["hil", str(TRAINED), "--qemu", "netduinoplus2", "--duration", "0.3", "--out", str(tmp_path), "--full-frames"]
    main(argv)  # 0.3 s is too short for the hover criterion: the exit status does not matter here
    printed = capsys.readouterr().out
    assert "frames: 30 full, 0 compact, 0 resyncs; 591 bytes sent per tick" in printed
    assert json.loads((tmp_path / "hil.json").read_text())["config"]["compact"] is False


def test_eval_with_no_episodes_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(TRAINED), "--episodes", "0", "--out", str(tmp_path)]) == 2
    assert "--episodes must be >= 1" in capsys.readouterr().err and not (tmp_path / "eval.json").exists()
