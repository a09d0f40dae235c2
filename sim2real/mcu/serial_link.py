"""Host side of the policy firmware's framed serial protocol (pyserial: real ports and ``socket://`` URLs).

Frame, both directions, integers little-endian (codec in :mod:`.frames`, re-exported here)::

    0xA5 | type u8 | seq u8 | len u16 | payload[len] | crc u16

``crc`` is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR; "123456789"
-> 0x29B1) over ``type``, ``seq``, ``len`` and the payload. ``len`` <= 1024. A reply echoes its request's ``seq``.

==============  ===========================  ==========================================================
request         payload                      reply
==============  ===========================  ==========================================================
OBS 0x01        float32[obs_dim]             ACT 0x81: u32 device ticks of the inference, float32[act]
OBS_STATE 0x05  float32[history_offset]      ACT 0x81, the rest of the observation from the device
PING 0x02       any bytes                    PONG 0x82: the same bytes
INFO 0x03       empty                        INFO 0x83: see below
RESET 0x04      empty                        ACK 0x84 (empty), then the MCU resets (AIRCR)
QUIT 0x7F       empty                        ACK 0x84, then the firmware's main returns 0 (QEMU exits 0)
==============  ===========================  ==========================================================

INFO reply payload: ``obs_dim u16 | act_dim u16 | tick_hz u32 | golden u8 | protocol version u8 |
max payload u16 | board name length u8 | board name | model hash length u8 | model hash | history_offset u16 |
history_len u16`` (ASCII strings; ``golden`` is the firmware's self-test at boot: 0 pass, 1 mismatch,
2 policy_eval error; the history fields since protocol version 2, a version-1 device has none: offset
``obs_dim``, length 0).

Device-side action history (version 2): ``obs[history_offset:]`` are the policy's own last
``history_len / act_dim`` actions, oldest first. The device keeps the last observation it evaluated and after
every successful inference (OBS or OBS_STATE) shifts that history by one action and appends the actions it
returned, as the simulator does (``history = cat(history[1:], action)``). OBS_STATE sends only
``obs[:history_offset]`` (the quadrotor policy: 79-byte frames instead of 591). A full OBS overwrites
everything and is idempotent, so it is retried like any request; an OBS_STATE is not (if the device evaluated
it and the ACT was lost, a resend would shift the history twice), so :meth:`SerialLink.infer_state` never
retries: the caller resynchronises with a full OBS. Until a full OBS has been evaluated after boot or RESET,
and after an OBS rejected with NAK 5, an OBS_STATE gets NAK 6. History length 0: OBS_STATE = OBS.

Errors come back as NAK 0xFF with payload ``code u8 | type u8`` (the offending frame's type): 1 bad CRC,
2 length above the maximum (sent right after the header), 3 unknown type, 4 wrong payload size for the type,
5 non-finite observation or ``policy_eval`` error, 6 OBS_STATE without a device-side history (send a full
OBS first). The bench firmware sends one unsolicited BENCH 0x85 frame (see :func:`.qemu.run_bench`).

The device drops a partial frame after 50 ms of silence and, like :class:`FrameDecoder`, re-scans the bytes
after a false start byte (bad CRC, oversize length) so a good frame right behind garbage is still found.
:class:`SerialLink` never blocks longer than ``timeout * (retries + 1)``: each attempt gets a fresh ``seq``, a
reply with another ``seq`` is a stale one (counted, dropped), and transient NAKs (1, 2) are retried (never
for OBS_STATE, see above).
"""

from __future__ import annotations

import struct
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np
import serial

from sim2real.mcu.frames import (
    CRC_LEN,
    HEADER_LEN,
    MAX_PAYLOAD,
    START,
    Frame,
    FrameDecoder,
    crc16_ccitt_false,
    encode_frame,
)

# The frame codec lives in .frames and is re-exported: everything the protocol needs is importable from here.
__all__ = ["CRC_LEN", "HEADER_LEN", "MAX_PAYLOAD", "START", "Frame", "FrameDecoder", "crc16_ccitt_false",
           "encode_frame", "PROTOCOL_VERSION", "MSG_OBS", "MSG_PING", "MSG_INFO", "MSG_RESET", "MSG_OBS_STATE",
           "MSG_QUIT", "MSG_ACT", "MSG_PONG", "MSG_INFO_REPLY", "MSG_ACK", "MSG_BENCH", "MSG_NAK", "NAK_BAD_CRC",
           "NAK_OVERSIZE", "NAK_UNKNOWN_TYPE", "NAK_BAD_SIZE", "NAK_EVAL_ERROR", "NAK_NO_HISTORY", "NAK_NAMES",
           "LinkError", "LinkTimeout", "LinkNak", "LinkCounters", "DeviceInfo", "InferReply", "SerialLink"]  # fmt: skip

PROTOCOL_VERSION = 2

MSG_OBS, MSG_PING, MSG_INFO, MSG_RESET, MSG_OBS_STATE, MSG_QUIT = 0x01, 0x02, 0x03, 0x04, 0x05, 0x7F
MSG_ACT, MSG_PONG, MSG_INFO_REPLY, MSG_ACK, MSG_BENCH, MSG_NAK = 0x81, 0x82, 0x83, 0x84, 0x85, 0xFF

NAK_BAD_CRC, NAK_OVERSIZE, NAK_UNKNOWN_TYPE, NAK_BAD_SIZE, NAK_EVAL_ERROR, NAK_NO_HISTORY = 1, 2, 3, 4, 5, 6
NAK_NAMES = {NAK_BAD_CRC: "bad CRC", NAK_OVERSIZE: "length above maximum", NAK_UNKNOWN_TYPE: "unknown type",
             NAK_BAD_SIZE: "wrong payload size", NAK_EVAL_ERROR: "non-finite observation or policy_eval error",
             NAK_NO_HISTORY: "no history: send a full OBS first"}
_RETRYABLE_NAKS = (NAK_BAD_CRC, NAK_OVERSIZE)  # line corruption: the same request may well succeed again
_INFO_HEAD = "<HHIBBH"  # obs_dim, act_dim, tick_hz, golden status, protocol version, max payload
_INFO_HISTORY = "<HH"  # protocol version 2, after the strings: history_offset, history_len


class LinkError(RuntimeError):
    """The device could not be reached or answered something unusable."""


class LinkTimeout(LinkError):
    """No matching reply after all the retries."""


class LinkNak(LinkError):
    """The device rejected the request with a NAK; ``code`` is the NAK code (see :data:`NAK_NAMES`)."""

    def __init__(self, code: int, request_type: int) -> None:
        self.code = code
        self.request_type = request_type
        super().__init__(f"device NAK {code} ({NAK_NAMES.get(code, 'unknown code')}) for type 0x{request_type:02X}")


@dataclass
class LinkCounters:
    """Traffic statistics of a :class:`SerialLink` (``naks`` maps NAK code -> count, whatever the seq)."""

    frames_sent: int = 0
    frames_received: int = 0
    bytes_sent: int = 0  # everything written, frames and raw bytes alike
    bytes_received: int = 0  # everything read, garbage included
    retries: int = 0
    timeouts: int = 0
    crc_errors: int = 0
    naks: dict[int, int] = field(default_factory=dict)
    stale_replies: int = 0
    bytes_discarded: int = 0
    resyncs: int = 0


@dataclass(frozen=True)
class DeviceInfo:
    """The INFO reply: dimensions, clock, boot self-test, board and model identity, device-side history.

    ``history_offset``/``history_len`` (floats): ``obs[history_offset:]`` is the action history the device keeps
    itself (protocol version 2); ``obs_dim``/0 when it keeps none (and for a version-1 device).
    """

    obs_dim: int
    act_dim: int
    tick_hz: int
    golden_status: int
    protocol_version: int
    max_payload: int
    board: str
    model_hash: str
    history_offset: int
    history_len: int

    @property
    def golden_ok(self) -> bool:
        """Whether the firmware reproduced its golden input/output pair at boot."""
        return self.golden_status == 0


@dataclass(frozen=True)
class InferReply:
    """One inference: ``actions`` float32 ``(act_dim,)``, device ``ticks`` of ``policy_eval``, host round trip."""

    actions: np.ndarray
    ticks: int
    tick_hz: int
    rtt: float

    @property
    def device_seconds(self) -> float:
        """Inference time on the device clock (under QEMU icount: virtual time)."""
        return self.ticks / self.tick_hz


def _float_vector(x: np.ndarray, n: int, what: str) -> np.ndarray:
    """``x`` as float32 ``(n,)``; ValueError for another shape or a non-floating dtype (nothing is sent)."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{what} must be a floating array, got dtype {x.dtype}")
    if x.shape != (n,):
        raise ValueError(f"{what} must have shape ({n},) for this device, got {x.shape}")
    return x.astype(np.float32)


class SerialLink:
    """Request/response client of the policy firmware.

    Args:
        url: a pyserial port or URL: ``/dev/ttyACM0``, ``socket://127.0.0.1:4321``, ...
        timeout: seconds to wait for each reply.
        retries: extra attempts after a timeout or a transient NAK (each with a new ``seq``).
        baudrate: for real serial ports (ignored by ``socket://``).
        max_payload: largest payload either side accepts.
    """

    def __init__(self, url: str, *, timeout: float = 1.0, retries: int = 2, baudrate: int = 115200,
                 max_payload: int = MAX_PAYLOAD) -> None:
        if timeout <= 0 or retries < 0:
            raise ValueError(f"need timeout > 0 and retries >= 0, got {timeout}, {retries}")
        self.url, self.timeout, self.retries = url, timeout, retries
        self.counters = LinkCounters()
        self._decoder = FrameDecoder(max_payload)
        self._pending: deque[Frame] = deque()
        self._seq = 0
        self._info: DeviceInfo | None = None
        self._history: np.ndarray | None = None  # see device_history
        try:
            self._ser = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout, write_timeout=timeout)
        except (serial.SerialException, OSError, ValueError) as e:
            raise LinkError(f"cannot open {url}: {e}") from e

    # ------------------------------------------------------------------------------------------------ raw I/O
    def next_seq(self) -> int:
        """The sequence number for the next frame (0..255, wrapping)."""
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (a whole frame, a broken one, or garbage)."""
        try:
            self._ser.write(data)
            self._ser.flush()
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"write to {self.url} failed: {e}") from e
        self.counters.bytes_sent += len(data)

    def send(self, ftype: int, payload: bytes = b"", seq: int | None = None) -> int:
        """Encode and send one frame; returns its ``seq``."""
        seq = self.next_seq() if seq is None else seq
        self.send_raw(encode_frame(ftype, seq, payload, self._decoder.max_payload))
        self.counters.frames_sent += 1
        return seq

    def receive(self, timeout: float | None = None) -> Frame | None:
        """The next frame from the device (any ``seq``), or ``None`` after ``timeout`` seconds."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._read(remaining)
        return self._pending.popleft()

    def _read(self, wait: float) -> None:
        """Block up to ``wait`` s for one byte, then take whatever else has arrived, and decode it."""
        try:
            self._ser.timeout = wait
            data = self._ser.read(1)
            if data:
                self._ser.timeout = 0  # non-blocking: everything already buffered
                data += self._ser.read(1 << 16)
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"read from {self.url} failed: {e}") from e
        if not data:
            return
        self.counters.bytes_received += len(data)
        frames = self._decoder.feed(data)
        self._sync_decoder_counters()
        for frame in frames:
            self.counters.frames_received += 1
            if frame.type == MSG_NAK and frame.payload:
                code = frame.payload[0]
                self.counters.naks[code] = self.counters.naks.get(code, 0) + 1
            self._pending.append(frame)

    def _sync_decoder_counters(self) -> None:
        c, d = self.counters, self._decoder
        c.crc_errors, c.bytes_discarded, c.resyncs = d.crc_errors, d.bytes_discarded, d.resyncs

    # ----------------------------------------------------------------------------------------- transactions
    def request(self, ftype: int, payload: bytes = b"", expect: int | None = None,
                retries: int | None = None) -> tuple[Frame, float]:  # fmt: skip
        """Send a request and wait for the reply with the same ``seq``, retrying as configured.

        Args:
            ftype: request type.
            payload: request payload.
            expect: required reply type (``None``: any non-NAK type).
            retries: extra attempts for this request (``None``: the link's ``retries``; 0 for a request that
                must not reach the device twice, like OBS_STATE).

        Returns:
            the reply frame and the round-trip time in seconds of the successful attempt.

        Raises:
            LinkNak: the device answered with a non-transient NAK, or a transient one on the last attempt.
            LinkTimeout: no reply after ``retries + 1`` attempts.
            LinkError: a reply of an unexpected type, or an I/O error.
        """
        retries = self.retries if retries is None else retries
        nak: LinkNak | None = None
        for attempt in range(retries + 1):
            if attempt:
                self.counters.retries += 1
            # Whatever is buffered now belongs to earlier requests: a partial frame or a late reply.
            self._decoder.clear()
            self._sync_decoder_counters()
            self.counters.stale_replies += len(self._pending)
            self._pending.clear()
            t0 = time.perf_counter()
            seq = self.send(ftype, payload)
            reply = self._await(seq, time.monotonic() + self.timeout)
            rtt = time.perf_counter() - t0
            if reply is None:
                self.counters.timeouts += 1
                nak = None
                continue
            if reply.type == MSG_NAK:
                nak = LinkNak(reply.payload[0] if reply.payload else 0, ftype)
                if nak.code in _RETRYABLE_NAKS:
                    continue
                raise nak
            if expect is not None and reply.type != expect:
                raise LinkError(f"expected reply type 0x{expect:02X} to 0x{ftype:02X}, got 0x{reply.type:02X}")
            return reply, rtt
        if nak is not None:
            raise nak
        raise LinkTimeout(f"no reply to type 0x{ftype:02X} from {self.url} after {retries + 1} attempts "
                          f"of {self.timeout} s")

    def _await(self, seq: int, deadline: float) -> Frame | None:
        """The first frame with ``seq`` before ``deadline``; other frames are stale replies and dropped."""
        while True:
            frame = self.receive(deadline - time.monotonic())
            if frame is None or frame.seq == seq:
                return frame
            self.counters.stale_replies += 1

    def wait_ready(self, timeout: float = 5.0, attempt_timeout: float = 0.1) -> float:
        """Ping every ``attempt_timeout`` s until the device answers; returns the seconds it took.

        A device that is still booting when the port opens can lose the first bytes (QEMU's STM32 USART drops
        them until the firmware enables it; real boards reset on connect). The unanswered pings are not
        counted as timeouts or retries. ``attempt_timeout`` should exceed the firmware's 50 ms inter-byte
        timeout, so a partial frame left on the device is dropped before the next attempt.

        Raises:
            LinkTimeout: no PONG within ``timeout`` seconds.
        """
        t0 = time.monotonic()
        deadline = t0 + timeout
        self._history = None  # a device that (re)boots keeps no history
        while True:
            self._decoder.clear()
            self._pending.clear()
            seq = self.send(MSG_PING, b"ready")
            reply = self._await(seq, min(deadline, time.monotonic() + attempt_timeout))
            if reply is not None and reply.type == MSG_PONG:
                return time.monotonic() - t0
            if time.monotonic() >= deadline:
                raise LinkTimeout(f"{self.url} did not answer a PING within {timeout} s")

    def ping(self, payload: bytes = b"sim2real-ping") -> float:
        """Round-trip time in seconds of a PING carrying ``payload`` (checked on return)."""
        reply, rtt = self.request(MSG_PING, payload, expect=MSG_PONG)
        if reply.payload != payload:
            raise LinkError(f"PONG payload {reply.payload!r} differs from the PING's {payload!r}")
        return rtt

    def info(self) -> DeviceInfo:
        """Ask the device for its dimensions, clock, boot self-test, board and model hash (cached)."""
        reply, _ = self.request(MSG_INFO, expect=MSG_INFO_REPLY)
        p = reply.payload
        try:
            head = struct.unpack_from(_INFO_HEAD, p)
            off = struct.calcsize(_INFO_HEAD)
            strings = []
            for _ in range(2):
                n = p[off]
                if off + 1 + n > len(p):
                    raise IndexError("string runs past the payload")
                strings.append(p[off + 1:off + 1 + n].decode("ascii"))
                off += 1 + n
            obs_dim, act_dim, tick_hz, golden, version, max_payload = head
            history = (obs_dim, 0)  # a version-1 device keeps no history
            if len(p) >= off + struct.calcsize(_INFO_HISTORY):
                history = struct.unpack_from(_INFO_HISTORY, p, off)
        except (struct.error, IndexError, UnicodeDecodeError) as e:
            raise LinkError(f"malformed INFO reply ({len(p)} bytes): {e}") from e
        offset, length = history
        if offset + length != obs_dim or (length and (act_dim == 0 or length % act_dim)):
            raise LinkError(f"INFO reply: history [{offset}, {offset + length}) does not end an observation of "
                            f"{obs_dim} floats with whole actions of {act_dim}")  # fmt: skip
        board, model_hash = strings
        self._info = DeviceInfo(obs_dim, act_dim, tick_hz, golden, version, max_payload, board, model_hash, offset, length)
        return self._info

    def cached_info(self) -> DeviceInfo:
        """The last INFO reply, asking the device only when there is none yet (or after :meth:`reset`)."""
        return self._info or self.info()

    @property
    def device_history(self) -> np.ndarray | None:
        """The action history the device holds, float32 ``(history_len,)``, as far as this link knows.

        Tracked through :meth:`infer` and :meth:`infer_state`: set from a full observation and extended with
        every action the device returns; ``None`` until then and after any failed or unanswered inference
        (the device's state is unknown: only a full OBS makes it known again) or a :meth:`reset`. Frames sent
        with :meth:`request` or :meth:`send` directly are not tracked.
        """
        return None if self._history is None else self._history.copy()

    def _push_history(self, history: np.ndarray | None, actions: np.ndarray) -> None:
        """Mirror the device's update: drop the oldest action, append ``actions`` ``(act_dim,)``."""
        self._history = None if history is None else np.concatenate((history, actions))[actions.size:]

    def infer(self, obs: np.ndarray) -> InferReply:
        """Run the policy on the device with a full observation (OBS; idempotent, so retried as configured).

        The device's history restarts from ``obs[history_offset:]`` (see :attr:`device_history`).

        Args:
            obs: observation, shape ``(obs_dim,)``, any floating dtype (sent as little-endian float32).

        Returns:
            actions, shape ``(act_dim,)`` float32, with the device's tick count for the inference.

        Raises:
            ValueError: wrong shape or a non-floating dtype.
            LinkNak: code 5 when the device finds a NaN/Inf (the host does not filter them).
        """
        info = self.cached_info()
        obs = _float_vector(obs, info.obs_dim, "obs")
        self._history = None  # from here until the ACT, the device's history is unknown
        reply = self._infer(MSG_OBS, obs, info, self.retries)
        self._push_history(obs[info.history_offset:], reply.actions)
        return reply

    def infer_state(self, state: np.ndarray) -> InferReply:
        """Run the policy on the device with the history it keeps (OBS_STATE): the compact frame.

        The device evaluates ``cat(state, its history)``, then appends the returned actions to that history.
        Never retried (a lost reply would make a resend shift the history twice): on any failure the device's
        history is unknown, and the caller resynchronises with a full :meth:`infer`.

        Args:
            state: the observation without its action history, shape ``(history_offset,)``, any floating dtype.

        Returns:
            actions, shape ``(act_dim,)`` float32, with the device's tick count for the inference.

        Raises:
            ValueError: wrong shape or a non-floating dtype.
            LinkNak: code 6 when the device has no history (no full OBS since boot or reset, or the last one
                failed), 5 for a NaN/Inf, 1 or 2 for a frame damaged on the line (not retried either).
            LinkTimeout: no reply within ``timeout`` (a single attempt).
        """
        info = self.cached_info()
        state = _float_vector(state, info.history_offset, "state")
        history, self._history = self._history, None
        reply = self._infer(MSG_OBS_STATE, state, info, 0)
        self._push_history(history, reply.actions)
        return reply

    def _infer(self, ftype: int, x: np.ndarray, info: DeviceInfo, retries: int) -> InferReply:
        """One OBS or OBS_STATE transaction: send ``x`` as float32, decode the ACT."""
        reply, rtt = self.request(ftype, x.astype("<f4").tobytes(), expect=MSG_ACT, retries=retries)
        if len(reply.payload) != 4 + 4 * info.act_dim:
            raise LinkError(f"ACT payload of {len(reply.payload)} bytes, expected {4 + 4 * info.act_dim}")
        (ticks,) = struct.unpack_from("<I", reply.payload)
        actions = np.frombuffer(reply.payload, dtype="<f4", offset=4).astype(np.float32)
        return InferReply(actions=actions, ticks=ticks, tick_hz=info.tick_hz, rtt=rtt)

    def reset(self, wait: bool = True) -> None:
        """Reset the device (ACK first); with ``wait``, return once it answers a PING again (:meth:`wait_ready`)."""
        self._history = None
        self.request(MSG_RESET, expect=MSG_ACK)
        self._info = None
        if wait:
            self.wait_ready(timeout=self.timeout * (self.retries + 1))

    def quit(self) -> None:
        """Ask the firmware to return from main (under QEMU: exit status 0)."""
        self.request(MSG_QUIT, expect=MSG_ACK)

    def close(self) -> None:
        self._ser.close()

    def __enter__(self) -> SerialLink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
