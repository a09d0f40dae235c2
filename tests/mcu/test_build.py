"""Firmware build (arm-none-eabi-gcc) and QEMU self-test / bench of the generated quadrotor policy."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import TRAINED_POLICY, require_tools

from sim2real.mcu import build as fw
from sim2real.mcu import qemu
from sim2real.mcu.build import BOARDS, FirmwareError, build_firmware

POLICY_ONNX = TRAINED_POLICY
TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """policy.h/policy.c of the 146 -> 64 -> 64 -> 4 test policy, and a copy whose golden actions are off."""
    from sim2real.mcu.c_codegen import generate_c

    out = tmp_path_factory.mktemp("policy")
    export = generate_c(POLICY_ONNX, out / "good")
    bad = out / "bad"
    bad.mkdir()
    shutil.copy(export.header, bad / "policy.h")
    src = export.source.read_text()
    # `1000.0f + <first golden action>`: a valid constant initialiser that no policy output matches.
    corrupted, n = re.subn(r"(policy_golden_act\s*\[[^\]]*\]\s*=\s*\{)", r"\g<1>1000.0f + ", src)
    assert n == 1
    (bad / "policy.c").write_text(corrupted)
    return export, bad


def _tiny_policy(out: Path, eval_body: str) -> Path:
    """A 2 -> 1 stand-in policy whose policy_eval runs ``eval_body`` (to reach the other exit statuses)."""
    out.mkdir(parents=True)
    (out / "policy.h").write_text(
        '#define POLICY_OBS_DIM 2\n#define POLICY_ACT_DIM 1\n#define POLICY_MODEL_HASH "0000000000000000"\n'
        "#define POLICY_GOLDEN_ATOL 1e-5f\nextern const float policy_golden_obs[POLICY_OBS_DIM];\n"
        "extern const float policy_golden_act[POLICY_ACT_DIM];\nint policy_eval(const float *obs, float *actions);\n")
    (out / "policy.c").write_text(
        '#include "policy.h"\nconst float policy_golden_obs[2] = {1.0f, 2.0f};\nconst float policy_golden_act[1] = {3.0f};\n'
        f"int policy_eval(const float *obs, float *actions)\n{{\n{eval_body}\n}}\n")
    return out


@pytest.fixture(scope="module", params=sorted(BOARDS))
def board_builds(request, generated, tmp_path_factory):
    """Per board: the selftest image of the good and of the corrupted policy, and the bench image."""
    require_tools(*TOOLS)
    board = request.param
    export, bad = generated
    out = tmp_path_factory.mktemp(board)
    good_dir = export.header.parent
    return {
        "board": board,
        "export": export,
        "selftest": build_firmware(good_dir, board, out / "selftest", "selftest"),
        "corrupted": build_firmware(bad, board, out / "corrupted", "selftest"),
        "bench": build_firmware(good_dir, board, out / "bench", "bench", bench_runs=8),
    }


def test_build_reports_sizes(board_builds):
    build, export = board_builds["selftest"], board_builds["export"]
    assert build.elf.is_file() and build.bin.is_file() and build.board == board_builds["board"]
    assert build.mode == "selftest"
    sizes, policy = build.sizes, build.policy_sizes
    assert sizes.flash == sizes.text + sizes.data and sizes.ram == sizes.data + sizes.bss
    assert sizes.data == 0  # no C library: nothing initialised in RAM
    assert sizes.bss >= 4096  # the reserved stack is part of the static RAM
    # The weights are in flash: policy.o holds at least the parameters, the image holds policy.o.
    assert policy.text >= export.manifest["parameter_bytes"]
    assert policy.text < sizes.flash < policy.text + 8192
    # The raw image covers the vector table up to the end of the constants.
    assert abs(build.bin.stat().st_size - sizes.flash) < 64
    assert not list(build.elf.parent.glob(".build-*"))  # the temporary build directory is gone


def test_selftest_passes(board_builds):
    assert qemu.run_selftest(board_builds["selftest"].elf, board_builds["board"]) == fw.SELFTEST_PASS


def test_selftest_detects_corrupted_golden(board_builds):
    assert qemu.run_selftest(board_builds["corrupted"].elf, board_builds["board"]) == fw.SELFTEST_MISMATCH


def test_bench_counts_instructions(board_builds):
    res = qemu.run_bench(board_builds["bench"].elf, board_builds["board"])
    macs = board_builds["export"].manifest["macs"]
    assert res.golden_status == 0 and res.runs == 8
    assert res.tick_hz == {"mps2-an386": 25_000_000, "netduinoplus2": 168_000_000}[res.board]
    # SysTick follows the icount clock: the 200k-instruction calibration loop matches 1e9 / tick_hz per tick.
    assert res.measured_instructions_per_tick == pytest.approx(res.instructions_per_tick, rel=0.01)
    # A dense MLP needs a few instructions per multiply-accumulate (loads, multiply, add, loop).
    assert 2 * macs < res.instructions_per_inference < 10 * macs
    assert res.instructions_per_inference == pytest.approx(res.ticks_per_inference * 1e9 / res.tick_hz)


def test_fault_and_eval_error_exit_statuses(tmp_path):
    require_tools(*TOOLS)
    board = "mps2-an386"
    trap = _tiny_policy(tmp_path / "trap", "    (void)obs; (void)actions;\n    __builtin_trap();")
    failing = _tiny_policy(tmp_path / "fail", "    (void)obs; (void)actions;\n    return 1;")
    exact = _tiny_policy(tmp_path / "exact", "    actions[0] = obs[0] + obs[1];\n    return 0;")
    # UDF -> UsageFault escalated to HardFault -> the fault handler exits with 3.
    assert qemu.run_selftest(build_firmware(trap, board, tmp_path / "b1", "selftest").elf, board) == fw.FAULT_EXIT
    status = qemu.run_selftest(build_firmware(failing, board, tmp_path / "b2", "selftest").elf, board)
    assert status == fw.SELFTEST_EVAL_ERROR
    assert qemu.run_selftest(build_firmware(exact, board, tmp_path / "b3", "selftest").elf, board) == fw.SELFTEST_PASS


def test_build_errors(tmp_path, monkeypatch):
    require_tools("arm-none-eabi-gcc")
    good = _tiny_policy(tmp_path / "good", "    actions[0] = obs[0] + obs[1];\n    return 0;")
    with pytest.raises(FirmwareError, match="unknown board 'stm32'.*mps2-an386.*netduinoplus2"):
        build_firmware(good, "stm32", tmp_path / "out")
    with pytest.raises(FirmwareError, match="unknown firmware mode"):
        build_firmware(good, "mps2-an386", tmp_path / "out", mode="fast")
    with pytest.raises(FirmwareError, match="lacks policy.h, policy.c"):
        build_firmware(tmp_path / "empty", "mps2-an386", tmp_path / "out")
    broken = _tiny_policy(tmp_path / "broken", "    return obs[0] +;")
    with pytest.raises(FirmwareError, match=r"compiling policy.c failed(.|\n)*error: expected expression"):
        build_firmware(broken, "mps2-an386", tmp_path / "out")
    assert not (tmp_path / "out" / "firmware.elf").exists()  # nothing half-built is left behind
    assert not list((tmp_path / "out").glob(".build-*"))
    # A policy that warns is fine (generated code), but the firmware's own files build with -Werror.
    warns = _tiny_policy(tmp_path / "warns", "    int unused;\n    actions[0] = obs[0];\n    return 0;")
    assert build_firmware(warns, "mps2-an386", tmp_path / "out").elf.is_file()
    monkeypatch.setattr(fw.shutil, "which", lambda name: None)
    with pytest.raises(FirmwareError, match="make mcu-deps"):
        build_firmware(good, "mps2-an386", tmp_path / "out2")
    monkeypatch.setattr(qemu.shutil, "which", lambda name: None)
    with pytest.raises(qemu.QemuError, match="qemu-system-arm not found.*make mcu-deps"):
        qemu.run_selftest(tmp_path / "out" / "firmware.elf", "mps2-an386")


def test_policy_without_history_serves_obs_state_as_a_full_obs(tmp_path):
    """A policy.h without POLICY_HISTORY_* (hand-written, older generator): INFO reports no history and an
    OBS_STATE carries the whole observation, served without a full OBS first (nothing to continue)."""
    import numpy as np

    from sim2real.mcu.serial_link import SerialLink

    require_tools(*TOOLS)
    exact = _tiny_policy(tmp_path / "exact", "    actions[0] = obs[0] + obs[1];\n    return 0;")
    build = build_firmware(exact, "mps2-an386", tmp_path / "fw")
    with qemu.QemuSerial(build.elf, "mps2-an386") as q, SerialLink(q.url, timeout=1.0, retries=0) as link:
        link.wait_ready()
        info = link.info()
        assert (info.protocol_version, info.history_offset, info.history_len) == (2, 2, 0)
        assert link.infer_state(np.array([1.0, 2.0], np.float32)).actions.tolist() == [3.0]
        assert link.infer(np.array([0.5, 0.25], np.float32)).actions.tolist() == [0.75]
        assert link.device_history is not None and link.device_history.size == 0
        assert link.infer_state(np.array([4.0, 8.0], np.float32)).actions.tolist() == [12.0]
        link.quit()
        assert q.wait(5) == 0


@pytest.mark.parametrize("variant", [dict(target="cortex-m7"), dict(int8=True), dict(target="cortex-m4", fma=True)])
def test_kernel_variants_pass_the_selftest_on_the_m4(tmp_path, variant):
    """FMA (the cortex-m7 default, also valid on the M4F's FPU) and int8 kernels reproduce their golden pairs."""
    from sim2real.mcu.c_codegen import generate_c

    require_tools(*TOOLS)
    generate_c(POLICY_ONNX, tmp_path / "c", **variant)
    build = build_firmware(tmp_path / "c", "mps2-an386", tmp_path / "fw", "selftest")
    assert qemu.run_selftest(build.elf, "mps2-an386") == fw.SELFTEST_PASS
