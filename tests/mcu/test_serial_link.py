"""Framed serial protocol: host codec, timeouts, and the firmware's answers (and NAKs) over QEMU's UART."""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import TRAINED_POLICY, FakeDevice, info_payload, require_tools

from sim2real.mcu import serial_link as sl
from sim2real.mcu.serial_link import FrameDecoder, LinkError, LinkNak, LinkTimeout, SerialLink

POLICY_ONNX = TRAINED_POLICY
TICK_HZ = {"mps2-an386": 25_000_000, "netduinoplus2": 168_000_000}


# ------------------------------------------------------------------------------------------------- host codec
def test_crc16_ccitt_false_check_value():
    assert sl.crc16_ccitt_false(b"123456789") == 0x29B1
    assert sl.crc16_ccitt_false(b"") == 0xFFFF
    assert sl.crc16_ccitt_false(b"56789", sl.crc16_ccitt_false(b"1234")) == 0x29B1  # incremental


def test_encode_decode_round_trip():
    frames = [sl.Frame(sl.MSG_PING, 7, b""), sl.Frame(sl.MSG_OBS, 255, bytes(range(256)) * 4),
              sl.Frame(sl.MSG_NAK, 0, b"\x01\x02")]
    wire = b"".join(sl.encode_frame(f.type, f.seq, f.payload) for f in frames)
    assert wire[:5] == bytes([0xA5, sl.MSG_PING, 7, 0, 0])
    assert FrameDecoder().feed(wire) == frames
    dec = FrameDecoder()  # byte by byte: same frames, nothing lost at the boundaries
    assert [f for b in wire for f in dec.feed(bytes([b]))] == frames
    assert dec.pending == 0 and dec.bytes_discarded == 0
    with pytest.raises(ValueError, match="exceeds the maximum of 1024"):
        sl.encode_frame(sl.MSG_PING, 1, bytes(1025))
    with pytest.raises(ValueError):
        sl.encode_frame(256, 1)


def test_decoder_resyncs_after_garbage_bad_crc_and_oversize_length():
    good = sl.encode_frame(sl.MSG_PONG, 3, b"abc")
    bad_crc = bytearray(sl.encode_frame(sl.MSG_PONG, 4, b"xyz"))
    bad_crc[-1] ^= 0xFF
    oversize = bytes([0xA5, 0x01, 0x05, 0xFF, 0x7F])  # length 32767
    # A false start byte whose "frame" swallows the start of the good frame: the rescan must find it again.
    false_start = bytes([0xA5, 0x01, 0x06, 0x02, 0x00])
    dec = FrameDecoder()
    frames = dec.feed(b"\x00\x13garbage" + good + bytes(bad_crc) + good + oversize + good + false_start + good)
    assert frames == [sl.Frame(sl.MSG_PONG, 3, b"abc")] * 4
    assert dec.crc_errors == 2 and dec.length_errors == 1 and dec.pending == 0
    assert dec.resyncs == 4
    assert dec.bytes_discarded == 9 + len(bad_crc) + len(oversize) + len(false_start)


# ---------------------------------------------------------------------------------------- fake, silent devices
def _serve(behaviour):
    """A TCP server on a free port running ``behaviour(conn)`` for one client; returns (url, thread)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def run():
        conn, _ = srv.accept()
        with conn:
            behaviour(conn)
        srv.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return f"socket://127.0.0.1:{srv.getsockname()[1]}", thread


def test_silent_device_times_out_after_retries():
    done = threading.Event()
    url, thread = _serve(lambda conn: done.wait(5))  # accepts, reads nothing, never answers
    with SerialLink(url, timeout=0.15, retries=2) as link:
        t0 = time.monotonic()
        with pytest.raises(LinkTimeout, match="after 3 attempts"):
            link.ping()
        elapsed = time.monotonic() - t0
        with pytest.raises(LinkTimeout):
            link.wait_ready(timeout=0.2, attempt_timeout=0.05)
    done.set()
    thread.join(2)
    assert 0.4 < elapsed < 1.5
    c = link.counters
    assert (c.timeouts, c.retries, c.frames_received) == (3, 2, 0)
    assert c.frames_sent >= 4  # 3 pings + the wait_ready attempts


def test_device_that_answers_wrongly_or_disconnects():
    def stale_then_nak(conn):
        req = conn.recv(64)
        seq = req[2]
        # a stale reply (old seq), then garbage, then a NAK 3 for the request
        conn.sendall(sl.encode_frame(sl.MSG_PONG, (seq - 1) & 0xFF, b"old") + b"\x00\x01"
                     + sl.encode_frame(sl.MSG_NAK, seq, bytes([sl.NAK_UNKNOWN_TYPE, req[1]])))
        conn.recv(64)  # then hang up on the next request

    url, thread = _serve(stale_then_nak)
    with SerialLink(url, timeout=1.0, retries=0) as link:
        with pytest.raises(LinkNak, match="NAK 3 .unknown type. for type 0x02") as exc:
            link.ping()
        assert exc.value.code == sl.NAK_UNKNOWN_TYPE
        with pytest.raises(LinkError, match="read from .* failed"):
            link.ping()
    thread.join(2)
    c = link.counters
    assert c.stale_replies == 1 and c.naks == {3: 1} and c.bytes_discarded == 2 and c.frames_received == 2


def _act_frame(seq: int, actions=(0.0, 0.0, 0.0, 0.0)) -> bytes:
    return sl.encode_frame(sl.MSG_ACT, seq, struct.pack("<I4f", 7, *actions))


def test_obs_state_is_never_retried_and_forgets_the_history():
    """OBS_STATE is not idempotent: one attempt whatever ``retries`` says, for a timeout and a NAK 1 alike;
    the full OBS stays retried (here its first attempt is lost)."""
    seen = {"obs": 0, "state": 0}

    def device(frame):
        if frame.type == sl.MSG_INFO:
            return sl.encode_frame(sl.MSG_INFO_REPLY, frame.seq, info_payload())
        if frame.type == sl.MSG_OBS:
            seen["obs"] += 1
            return None if seen["obs"] == 1 else _act_frame(frame.seq, (0.5, -0.5, 0.25, 1.0))
        seen["state"] += 1  # the 1st OBS_STATE: no answer; the 2nd: NAK 1 (bad CRC); the 3rd: ACT
        if seen["state"] == 2:
            return sl.encode_frame(sl.MSG_NAK, frame.seq, bytes([sl.NAK_BAD_CRC, frame.type]))
        return None if seen["state"] == 1 else _act_frame(frame.seq, (1.0, 1.0, 1.0, -1.0))

    with FakeDevice(device) as fake, SerialLink(fake.url, timeout=0.1, retries=2) as link:
        assert link.device_history is None
        obs = np.arange(146, dtype=np.float32)
        link.infer(obs)  # lost once, then answered
        assert (link.counters.timeouts, link.counters.retries) == (1, 1)
        want = np.concatenate((obs[22:], [0.5, -0.5, 0.25, 1.0])).astype(np.float32)
        assert np.array_equal(link.device_history, want)
        with pytest.raises(LinkTimeout, match="after 1 attempts"):
            link.infer_state(obs[:18])
        assert link.device_history is None  # the device may or may not have shifted its history
        assert (link.counters.timeouts, link.counters.retries) == (2, 1)
        with pytest.raises(LinkNak) as exc:
            link.infer_state(obs[:18])
        assert exc.value.code == sl.NAK_BAD_CRC and link.counters.retries == 1
        reply = link.infer_state(obs[:18])  # served; the host no longer knows the device's history
        assert np.array_equal(reply.actions, [1.0, 1.0, 1.0, -1.0]) and link.device_history is None
        with pytest.raises(ValueError, match=r"state must have shape \(18,\)"):
            link.infer_state(obs)
    assert [f.type for f in fake.requests].count(sl.MSG_OBS_STATE) == 3


def test_info_of_a_version_1_device_and_a_bad_history():
    replies = iter([info_payload(version=1, history=None), info_payload(history=(18, 126))])
    with FakeDevice(lambda f: sl.encode_frame(sl.MSG_INFO_REPLY, f.seq, next(replies))) as fake, \
            SerialLink(fake.url, timeout=0.5, retries=0) as link:
        info = link.info()
        assert (info.protocol_version, info.history_offset, info.history_len) == (1, 146, 0)
        with pytest.raises(LinkError, match="does not end an observation"):
            link.info()


def test_unreachable_port_is_a_link_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens once this socket is closed
    with pytest.raises(LinkError, match="cannot open"):
        SerialLink(f"socket://127.0.0.1:{port}")


# ------------------------------------------------------------------------------------ firmware under QEMU
@pytest.fixture(scope="module")
def export(tmp_path_factory):
    from sim2real.mcu.c_codegen import generate_c

    return generate_c(POLICY_ONNX, tmp_path_factory.mktemp("policy"))


@pytest.fixture(scope="module")
def reference():
    from sim2real.core.policy_file import OnnxPolicy

    return OnnxPolicy(POLICY_ONNX)


@pytest.fixture(scope="module", params=sorted(TICK_HZ))
def firmware(request, export, tmp_path_factory):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    from sim2real.mcu.build import build_firmware

    return build_firmware(export.header.parent, request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def device(firmware):
    """One emulated device per board shared by the tests that leave it running."""
    from sim2real.mcu.qemu import QemuSerial

    with QemuSerial(firmware.elf, firmware.board) as q, SerialLink(q.url, timeout=2.0, retries=1) as link:
        link.wait_ready()
        yield link
        assert q.returncode is None, f"the firmware exited: {q.log()}"


def _reply(link: SerialLink, seq: int, timeout: float = 2.0) -> tuple[sl.Frame | None, list[sl.Frame]]:
    """The first frame with ``seq``, and the frames with other sequence numbers seen before it."""
    others = []
    deadline = time.monotonic() + timeout
    while (frame := link.receive(deadline - time.monotonic())) is not None:
        if frame.seq == seq:
            return frame, others
        others.append(frame)
    return None, others


def test_ping_and_info(device, firmware, export):
    assert device.ping() < 1.0
    assert device.ping(bytes(range(256)) * 4) < 2.0  # the largest payload
    info = device.info()
    assert (info.obs_dim, info.act_dim) == (146, 4)
    assert info.model_hash == export.manifest["model_hash"] and len(info.model_hash) == 16
    assert info.board == firmware.board and info.tick_hz == TICK_HZ[firmware.board]
    assert info.golden_ok and info.protocol_version == sl.PROTOCOL_VERSION and info.max_payload == sl.MAX_PAYLOAD
    assert sl.PROTOCOL_VERSION == 2 and (info.history_offset, info.history_len) == (18, 128)


def test_infer_matches_onnxruntime(device, export, reference):
    obs = export.model.normalizer_samples(6, seed=11).astype(np.float32)
    expected = reference(obs)
    for o, want in zip(obs, expected):
        reply = device.infer(o)
        assert reply.actions.dtype == np.float32 and reply.actions.shape == (4,)
        np.testing.assert_allclose(reply.actions, want, rtol=0, atol=1e-5)
        # Device time under -icount shift=0: 1 ns per instruction, a few instructions per MAC.
        insns = reply.ticks * 1e9 / reply.tick_hz
        assert 2 * export.model.macs < insns < 10 * export.model.macs
    reply64 = device.infer(obs[0].astype(np.float64))  # other float dtypes are sent as float32
    np.testing.assert_allclose(reply64.actions, expected[0], rtol=0, atol=1e-5)


def test_compact_frames_give_the_full_frames_actions(device, export, reference):
    """50 ticks of a hand-made episode, once with a full OBS every tick, once with a full OBS then OBS_STATE
    frames: the device-side history must equal the host's, so the actions are bit-identical."""
    states = export.model.normalizer_samples(50, seed=21)[:, :18]
    start = export.model.normalizer_samples(1, seed=22)[0, 18:]

    def episode(compact: bool) -> np.ndarray:
        history, acts = start.copy(), []
        for t, state in enumerate(states):
            obs = np.concatenate((state, history))
            reply = device.infer_state(state) if compact and t else device.infer(obs)
            np.testing.assert_allclose(reply.actions, reference(obs[None])[0], rtol=0, atol=1e-5)
            history = np.concatenate((history[4:], reply.actions))  # the simulator's cat(history[1:], action)
            assert np.array_equal(device.device_history, history)
            acts.append(reply.actions)
        return np.stack(acts)

    full_sent = device.counters.bytes_sent
    full = episode(compact=False)
    compact_sent = device.counters.bytes_sent
    compact = episode(compact=True)
    assert np.array_equal(compact, full)
    assert device.counters.bytes_sent - compact_sent == 591 + 49 * 79 and compact_sent - full_sent == 50 * 591


def test_obs_state_naks(device, export):
    state = export.model.normalizer_samples(2, seed=23)[:, :18]
    obs = export.model.normalizer_samples(1, seed=24)[0]
    for n in (17, 19, 146):  # OBS_STATE carries exactly history_offset floats
        with pytest.raises(LinkNak) as exc:
            device.request(sl.MSG_OBS_STATE, bytes(4 * n))
        assert exc.value.code == sl.NAK_BAD_SIZE and exc.value.request_type == sl.MSG_OBS_STATE
    bad = obs.copy()
    bad[100] = np.nan  # a rejected full OBS leaves no history to continue ...
    with pytest.raises(LinkNak, match="NAK 5"):
        device.infer(bad)
    with pytest.raises(LinkNak, match=r"NAK 6 \(no history: send a full OBS first\)") as exc:
        device.infer_state(state[0])
    assert exc.value.code == sl.NAK_NO_HISTORY
    device.infer(obs)  # ... until a full OBS succeeds
    history = device.device_history
    with pytest.raises(LinkNak, match="NAK 5"):  # a rejected OBS_STATE leaves the history as it was
        device.infer_state(np.full(18, np.inf, np.float32))
    compact = device.infer_state(state[1]).actions
    assert np.array_equal(compact, device.infer(np.concatenate((state[1], history))).actions)


def test_obs_is_validated_on_the_host(device):
    sent = device.counters.frames_sent
    with pytest.raises(ValueError, match=r"shape \(146,\)"):
        device.infer(np.zeros((1, 146), np.float32))
    with pytest.raises(ValueError, match="floating"):
        device.infer(np.zeros(146, np.int32))
    assert device.counters.frames_sent == sent


def test_garbage_and_oversize_length_before_a_frame(device):
    seq = device.next_seq()
    device.send_raw(b"\x00\x13\x37\xff" * 8 + sl.encode_frame(sl.MSG_PING, seq, b"after garbage"))
    reply, others = _reply(device, seq)
    assert reply == sl.Frame(sl.MSG_PONG, seq, b"after garbage") and others == []
    # A header with a length above the maximum is NAKed at once; the frame right behind it is still served.
    seq = device.next_seq()
    device.send_raw(bytes([0xA5, sl.MSG_OBS, 0x63, 0xFF, 0xFF]) + sl.encode_frame(sl.MSG_PING, seq, b"x"))
    reply, others = _reply(device, seq)
    assert others == [sl.Frame(sl.MSG_NAK, 0x63, bytes([sl.NAK_OVERSIZE, sl.MSG_OBS]))]
    assert reply == sl.Frame(sl.MSG_PONG, seq, b"x")


def test_truncated_frames(device):
    # (a) the line goes quiet mid-frame: the device drops it after its 50 ms inter-byte timeout, silently.
    device.send_raw(sl.encode_frame(sl.MSG_OBS, 0x21, bytes(584))[:40])
    time.sleep(0.15)
    seq = device.next_seq()
    device.send_raw(sl.encode_frame(sl.MSG_PING, seq, b"after a pause"))
    reply, others = _reply(device, seq)
    assert reply is not None and reply.type == sl.MSG_PONG and others == []
    # (b) a short truncated frame swallows the head of the next one: bad CRC -> NAK 1, then the device
    # rescans the buffered bytes from the byte after the false start and still serves the good frame.
    truncated = bytes([0xA5, sl.MSG_PING, 0x22, 4, 0, 0x10, 0x11])
    seq = device.next_seq()
    device.send_raw(truncated + sl.encode_frame(sl.MSG_PING, seq, b"hello"))
    reply, others = _reply(device, seq)
    assert others == [sl.Frame(sl.MSG_NAK, 0x22, bytes([sl.NAK_BAD_CRC, sl.MSG_PING]))]
    assert reply == sl.Frame(sl.MSG_PONG, seq, b"hello")
    # (c) a long truncated frame swallows a whole request: it times out, the retry (after > 50 ms) is served.
    timeouts, retries = device.counters.timeouts, device.counters.retries
    device.send_raw(sl.encode_frame(sl.MSG_OBS, 0x23, bytes(584))[:100])
    device.timeout, device.retries = 0.3, 2
    try:
        device.ping()
    finally:
        device.timeout, device.retries = 2.0, 1
    assert (device.counters.timeouts - timeouts, device.counters.retries - retries) == (1, 1)


def test_naks(device):
    frame = bytearray(sl.encode_frame(sl.MSG_PING, 0x31, b"crc"))
    frame[-2] ^= 0x01
    device.send_raw(bytes(frame))
    reply, _ = _reply(device, 0x31)
    assert reply == sl.Frame(sl.MSG_NAK, 0x31, bytes([sl.NAK_BAD_CRC, sl.MSG_PING]))
    naks = dict(device.counters.naks)
    for ftype, payload, code in [(0x55, b"", sl.NAK_UNKNOWN_TYPE), (sl.MSG_ACT, b"", sl.NAK_UNKNOWN_TYPE),
                                 (sl.MSG_OBS, bytes(8), sl.NAK_BAD_SIZE), (sl.MSG_INFO, b"x", sl.NAK_BAD_SIZE),
                                 (sl.MSG_QUIT, b"now", sl.NAK_BAD_SIZE)]:
        with pytest.raises(LinkNak) as exc:
            device.request(ftype, payload)
        assert exc.value.code == code and exc.value.request_type == ftype
    for bad in (np.nan, np.inf, -np.inf):
        obs = np.zeros(146, np.float32)
        obs[17] = bad
        with pytest.raises(LinkNak, match="NAK 5") as exc:
            device.infer(obs)
        assert exc.value.code == sl.NAK_EVAL_ERROR
    got = device.counters.naks
    assert got[3] - naks.get(3, 0) == 2 and got[4] - naks.get(4, 0) == 3 and got[5] - naks.get(5, 0) == 3
    assert np.isfinite(device.infer(np.zeros(146, np.float32)).actions).all()  # still serving


def test_reset_then_ping(firmware):
    from sim2real.mcu.qemu import QemuSerial

    with QemuSerial(firmware.elf, firmware.board) as q, SerialLink(q.url, timeout=1.0) as link:
        link.wait_ready()
        with pytest.raises(LinkNak, match="NAK 6"):  # no history at boot; NAK 6 is not retried
            link.infer_state(np.zeros(18, np.float32))
        assert link.counters.retries == 0
        link.infer(np.zeros(146, np.float32))
        link.infer_state(np.zeros(18, np.float32))
        link.reset()  # ACK, AIRCR reset, then a PING is answered by the rebooted firmware
        assert link.ping() < 1.0 and link.info().golden_ok
        assert link.device_history is None
        with pytest.raises(LinkNak, match="NAK 6"):  # the reset forgot the history
            link.infer_state(np.zeros(18, np.float32))
        assert q.returncode is None


def test_quit_exits_qemu_with_zero(firmware):
    from sim2real.mcu.qemu import QemuSerial

    with QemuSerial(firmware.elf, firmware.board) as q, SerialLink(q.url, timeout=1.0) as link:
        link.wait_ready()
        link.quit()
        assert q.wait(5) == 0
    assert q.returncode == 0


def test_bench_frame_layout_matches_firmware():
    # qemu.run_bench unpacks 7 u32; main.c sends uint32_t report[7] (a cheap guard against drift).
    src = (Path(sl.__file__).parent / "firmware" / "main.c").read_text()
    assert "uint32_t report[7]" in src and struct.calcsize("<7I") == 28


def test_real_tty_device_path(firmware, export, reference):
    """The same client on a real serial device node: QEMU's UART on a pseudo-terminal (/dev/pts/N), opened by
    pyserial's POSIX serial backend (termios, baud rate set) as it would open /dev/ttyACM0."""
    import re
    import select
    import subprocess

    from sim2real.mcu.qemu import qemu_command

    proc = subprocess.Popen(qemu_command(firmware.elf, firmware.board, "pty"), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert select.select([proc.stdout], [], [], 10)[0], "QEMU printed no pty path within 10 s"
        line = proc.stdout.readline()  # QEMU 7.2 prints "char device redirected to /dev/pts/N (label serial0)"
        match = re.search(r"(/dev/pts/\d+)", line)
        assert match, line
        with SerialLink(match.group(1), timeout=1.0, retries=1, baudrate=1_000_000) as link:
            assert link._ser.__class__.__name__ == "Serial"  # pyserial's real port class, not a URL handler
            link.wait_ready()
            assert link.info().model_hash == export.manifest["model_hash"]
            obs = export.model.normalizer_samples(3, seed=9)
            got = np.stack([link.infer(row).actions for row in obs])
            assert np.abs(got - reference(obs)).max() <= 1e-5
            link.quit()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
