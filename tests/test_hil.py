"""Hardware-in-the-loop: the simulator on the host, every action from the emulated STM32F405 over the serial link."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import require_tools

from sim2real.firmware_export.c_codegen import generate_c
from sim2real.firmware_export.c_host import HostPolicy
from sim2real.firmware_export.firmware import build_firmware
from sim2real.firmware_export.hil import DevicePolicy, HILConfig, HILError, run_hil
from sim2real.firmware_export.onnx_export import OnnxPolicy
from sim2real.firmware_export.qemu import QemuSerial
from sim2real.firmware_export.serial_link import SerialLink

TRAINED = Path(__file__).parent / "data" / "quadrotor_hover.onnx"
BOARD = "netduinoplus2"  # STM32F405, the Crazyflie 2.x MCU


@pytest.fixture(scope="module")
def c_dir(tmp_path_factory):
    require_tools("gcc", "arm-none-eabi-gcc", "qemu-system-arm")
    out = tmp_path_factory.mktemp("hil") / "c"
    generate_c(TRAINED, out, target="cortex-m4")
    return out


@pytest.fixture(scope="module")
def device(c_dir):
    """The trained policy's firmware running in QEMU, with a connected link (shared by the module's tests)."""
    fw = build_firmware(c_dir, BOARD, c_dir.parent / "fw")
    with QemuSerial(fw.elf, BOARD) as qemu, SerialLink(qemu.url, timeout=0.5, retries=2) as link:
        link.wait_ready()
        yield link
        link.quit()
        assert qemu.wait(10) == 0  # the firmware returned from main: nothing crashed during the flight


def test_hil_hovers_10s_with_every_action_from_the_mcu(device):
    before = device.counters.frames_received
    res = run_hil(device, TRAINED, HILConfig(duration_s=10.0, start="nominal", seed=0))
    assert res.ticks == 1000 and res.fallbacks == 0
    assert device.counters.frames_received - before >= 1000  # an ACT frame for every control tick
    assert device.counters.timeouts == 0 and not device.counters.naks
    # the foundation's criterion on this flight: never leaves the 0.6 m box, mean error over the last 2 s < 0.10 m
    assert res.metrics["left_box_fraction"] == 0.0 and res.metrics["pos_error_last2s_m"] < 0.10 and res.passed
    assert res.max_abs_diff_vs_onnx <= 1e-5  # the MCU computes the exported policy
    assert res.device["golden_status"] == 0 and res.device_ticks_mean > 1000 and res.device_tick_hz == 168_000_000
    assert res.traj["pos"].shape == (1001, 1, 3)


def test_hil_refuses_a_device_running_another_policy(device, tmp_path):
    other = tmp_path / "other.onnx"
    data = TRAINED.read_bytes()
    other.write_bytes(bytes(data))
    model = onnx.load(other)  # same graph ...
    model.doc_string = "retrained"  # ... but another file: another hash
    onnx.save(model, other)
    with pytest.raises(HILError, match="model hash"):
        run_hil(device, other, HILConfig(duration_s=0.1))


def test_silent_device_falls_back_to_the_safe_action():
    """A device that accepts the connection and never answers (the connection stays open)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port, conns = srv.getsockname()[1], []  # conns keeps the accepted socket alive for the whole test
    threading.Thread(target=lambda: conns.append(srv.accept()), daemon=True).start()
    try:
        with SerialLink(f"socket://127.0.0.1:{port}", timeout=0.05, retries=1) as link:
            policy = DevicePolicy(link, OnnxPolicy(TRAINED), safe_action=-1.0)
            act = policy(torch.zeros(3, 146))
            assert torch.equal(act, torch.full((3, 4), -1.0))
            assert policy.fallbacks == 3 and link.counters.timeouts == 6 and link.counters.retries == 3
    finally:
        srv.close()


def test_device_policy_matches_onnxruntime_row_by_row(device):
    x = OnnxPolicy(TRAINED)
    obs = torch.from_numpy(np.random.default_rng(0).standard_normal((4, 146)).astype(np.float32) * 0.1)
    policy = DevicePolicy(device, x, safe_action=-1.0)
    got = policy(obs).numpy()
    assert policy.fallbacks == 0 and np.abs(got - x(obs.numpy())).max() <= 1e-5


def test_mcu_kernel_is_bit_identical_to_the_host_build(device, c_dir):
    """The Cortex-M4F assembly kernel does the portable C loop's operations in the same order and rounding."""
    host = HostPolicy(c_dir, 146, 4)
    obs = np.random.default_rng(1).standard_normal((8, 146)).astype(np.float32)
    got = np.stack([device.infer(row).actions for row in obs])
    assert np.array_equal(got, host(obs))
