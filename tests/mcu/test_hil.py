"""Hardware-in-the-loop: the simulator on the host, every action from the emulated STM32F405 over the serial link."""

from __future__ import annotations

import socket
import threading

import numpy as np
import onnx
import pytest
import torch
from helpers import TRAINED_POLICY, FakeDevice, info_payload, require_tools

from sim2real.core.policy_file import OnnxPolicy
from sim2real.mcu import serial_link as sl
from sim2real.mcu.build import build_firmware
from sim2real.mcu.c_codegen import generate_c
from sim2real.mcu.c_host import HostPolicy
from sim2real.mcu.hil import DevicePolicy, HILConfig, HILError, run_hil
from sim2real.mcu.qemu import QemuSerial
from sim2real.mcu.serial_link import SerialLink
from sim2real.sim.registry import policy_env_config
from sim2real.tasks.quadrotor_hover.evaluation import rollout_hover

TRAINED = TRAINED_POLICY
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
    # compact frames: one full OBS starts the episode, then the device continues the action history itself
    assert res.compact and res.compact_frames >= 990 and res.full_frames + res.compact_frames == 1000
    assert res.resyncs == 0 and res.bytes_sent_per_tick < 100  # 79-byte OBS_STATE frames instead of 591
    # the foundation's criterion on this flight: never leaves the 0.6 m box, mean error over the last 2 s < 0.10 m
    assert res.metrics["left_box_fraction"] == 0.0 and res.metrics["pos_error_last2s_m"] < 0.10 and res.passed
    assert res.max_abs_diff_vs_onnx <= 1e-5  # the MCU computes the exported policy ...
    assert res.reference_deviation_m < 1e-3  # ... and flies the same episode as onnxruntime in the simulator
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


def test_hil_refuses_a_device_whose_history_is_elsewhere():
    """A device that would keep obs[22:146] as its history while the simulator writes actions to obs[18:146]."""
    reply = info_payload(history=(22, 124))
    with FakeDevice(lambda f: sl.encode_frame(sl.MSG_INFO_REPLY, f.seq, reply)) as dev, \
            SerialLink(dev.url, timeout=0.5, retries=0) as link:
        with pytest.raises(HILError, match=r"action history in obs\[22:146\]"):
            run_hil(link, TRAINED, HILConfig(duration_s=0.1, check_hash=False))


def _hover_rollout(policy: DevicePolicy, ticks: int) -> dict[str, torch.Tensor]:
    reference = OnnxPolicy(TRAINED)
    _, base = policy_env_config(reference.metadata)
    return rollout_hover(policy, "nominal", 1, 0, base, duration_s=ticks * base.dt)


def test_compact_and_full_frames_fly_bit_identical(device):
    """50 ticks of the real hover env: the device-side history reproduces the simulator's exactly."""
    full = DevicePolicy(device, OnnxPolicy(TRAINED), safe_action=-1.0, compact=False)
    compact = DevicePolicy(device, OnnxPolicy(TRAINED), safe_action=-1.0)
    traj_full, traj_compact = _hover_rollout(full, 50), _hover_rollout(compact, 50)
    assert traj_full["action"].shape == (50, 1, 4) and torch.equal(traj_compact["action"], traj_full["action"])
    assert (full.full_frames, full.compact_frames) == (50, 0)
    assert (compact.full_frames, compact.compact_frames, compact.resyncs, compact.fallbacks) == (1, 49, 0, 0)
    assert compact.max_diff <= 1e-5  # onnxruntime sees the full observation


@pytest.mark.parametrize("state_reply", ["silent", "nak6"])
def test_failed_compact_frame_resyncs_with_a_full_obs(state_reply):
    """A device that answers full OBS frames (with onnxruntime's actions) but never an OBS_STATE: a lost reply
    or a device that lost its history (NAK 6, e.g. after a reboot). Every tick after the first tries one
    OBS_STATE, never resends it, and gets its action from a full OBS in the same tick: no fallback."""
    reference = OnnxPolicy(TRAINED)

    def fake(frame):
        if frame.type == sl.MSG_INFO:
            return sl.encode_frame(sl.MSG_INFO_REPLY, frame.seq, info_payload())
        if frame.type == sl.MSG_OBS:
            act = reference(np.frombuffer(frame.payload, "<f4")[None])[0]
            return sl.encode_frame(sl.MSG_ACT, frame.seq, np.uint32(1).tobytes() + act.astype("<f4").tobytes())
        if state_reply == "nak6":
            return sl.encode_frame(sl.MSG_NAK, frame.seq, bytes([sl.NAK_NO_HISTORY, frame.type]))
        return None

    with FakeDevice(fake) as dev, SerialLink(dev.url, timeout=0.05, retries=2) as link:
        policy = DevicePolicy(link, reference, safe_action=-1.0)
        _hover_rollout(policy, 5)
    assert (policy.full_frames, policy.compact_frames, policy.resyncs, policy.fallbacks) == (5, 4, 4, 0)
    assert policy.max_diff == 0.0 and link.counters.retries == 0
    assert link.counters.timeouts == (4 if state_reply == "silent" else 0)
    assert [f.type for f in dev.requests if f.type != sl.MSG_INFO] == [sl.MSG_OBS] + [sl.MSG_OBS_STATE, sl.MSG_OBS] * 4


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
