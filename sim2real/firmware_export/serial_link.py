"""Host side of the policy firmware's framed serial protocol (pyserial: real ports and ``socket://`` URLs).

Frame, both directions, integers little-endian::

    0xA5 | type u8 | seq u8 | len u16 | payload[len] | crc u16

``crc`` is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR; "123456789"
-> 0x29B1) over ``type``, ``seq``, ``len`` and the payload. ``len`` <= 1024. A reply echoes its request's ``seq``.

=========  =======================================  ==========================================================
request    payload                                  reply
=========  =======================================  ==========================================================
OBS 0x01   float32[obs_dim]                         ACT 0x81: u32 device ticks of the inference, float32[act]
PING 0x02  any bytes                                PONG 0x82: the same bytes
INFO 0x03  empty                                    INFO 0x83: see below
RESET 0x04 empty                                    ACK 0x84 (empty), then the MCU resets (AIRCR)
QUIT 0x7F  empty                                    ACK 0x84, then the firmware's main returns 0 (QEMU exits 0)
=========  =======================================  ==========================================================

INFO reply payload: ``obs_dim u16 | act_dim u16 | tick_hz u32 | golden u8 | protocol version u8 |
max payload u16 | board name length u8 | board name | model hash length u8 | model hash`` (ASCII strings;
``golden`` is the firmware's self-test at boot: 0 pass, 1 mismatch, 2 policy_eval error).

Errors come back as NAK 0xFF with payload ``code u8 | type u8`` (the offending frame's type): 1 bad CRC,
2 length above the maximum (sent right after the header), 3 unknown type, 4 wrong payload size for the type,
5 non-finite observation or ``policy_eval`` error. The bench firmware sends one unsolicited BENCH 0x85 frame
(see :func:`.qemu.run_bench`).

The device drops a partial frame after 50 ms of silence and, like :class:`FrameDecoder`, re-scans the bytes
after a false start byte (bad CRC, oversize length) so a good frame right behind garbage is still found.
:class:`SerialLink` never blocks longer than ``timeout * (retries + 1)``: each attempt gets a fresh ``seq``, a
reply with another ``seq`` is a stale one (counted, dropped), and transient NAKs (1, 2) are retried.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np
import serial

START = 0xA5
HEADER_LEN = 5  # start, type, seq, len (u16)
CRC_LEN = 2
MAX_PAYLOAD = 1024
PROTOCOL_VERSION = 1

MSG_OBS, MSG_PING, MSG_INFO, MSG_RESET, MSG_QUIT = 0x01, 0x02, 0x03, 0x04, 0x7F
MSG_ACT, MSG_PONG, MSG_INFO_REPLY, MSG_ACK, MSG_BENCH, MSG_NAK = 0x81, 0x82, 0x83, 0x84, 0x85, 0xFF

NAK_BAD_CRC, NAK_OVERSIZE, NAK_UNKNOWN_TYPE, NAK_BAD_SIZE, NAK_EVAL_ERROR = 1, 2, 3, 4, 5
NAK_NAMES = {NAK_BAD_CRC: "bad CRC", NAK_OVERSIZE: "length above maximum", NAK_UNKNOWN_TYPE: "unknown type",
             NAK_BAD_SIZE: "wrong payload size", NAK_EVAL_ERROR: "non-finite observation or policy_eval error"}
_RETRYABLE_NAKS = (NAK_BAD_CRC, NAK_OVERSIZE)  # line corruption: the same request may well succeed again
_INFO_HEAD = "<HHIBBH"  # obs_dim, act_dim, tick_hz, golden status, protocol version, max payload


def _crc_table() -> tuple[int, ...]:
    """CRC of every byte value fed into a zero register: the 256-entry table of the MSB-first algorithm."""
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)  # shift; XOR the polynomial on carry
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_ccitt_false(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data``, continuing from ``crc`` (0xFFFF starts a new one)."""
    for byte in bytes(data):
        # The top byte of the register meets the next data byte; the table gives the 8 shifted-out XORs at once.
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ byte]
    return crc


@dataclass(frozen=True)
class Frame:
    """A decoded frame: message type, sequence number, payload."""

    type: int
    seq: int
    payload: bytes


def encode_frame(ftype: int, seq: int, payload: bytes = b"", max_payload: int = MAX_PAYLOAD) -> bytes:
    """Bytes on the wire for one frame (start byte, header, payload, CRC)."""
    if not (0 <= ftype <= 0xFF and 0 <= seq <= 0xFF):
        raise ValueError(f"type and seq must be bytes, got {ftype}, {seq}")
    if len(payload) > max_payload:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the maximum of {max_payload}")
    body = struct.pack("<BBH", ftype, seq, len(payload)) + bytes(payload)
    return bytes([START]) + body + struct.pack("<H", crc16_ccitt_false(body))


class FrameDecoder:
    """Streaming frame decoder: feed it bytes as they arrive, get complete, CRC-checked frames back.

    Bytes before a start byte are discarded. After a bad CRC or a length above ``max_payload`` only the false
    start byte is dropped and the bytes after it are scanned again, so a frame hidden behind garbage survives.

    Attributes:
        crc_errors: candidate frames whose CRC did not match.
        length_errors: headers with a length above ``max_payload``.
        bytes_discarded: bytes thrown away (garbage, false starts, :meth:`clear`).
        resyncs: times sync was lost (garbage before a start byte, a bad CRC, an oversize length); bytes
            skipped while hunting for the next start byte belong to the same loss.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self._in_sync = True  # False from a loss of sync until the next good frame
        self.crc_errors = self.length_errors = self.bytes_discarded = self.resyncs = 0

    @property
    def pending(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buf)

    def clear(self) -> None:
        """Forget a partial frame (counted as discarded)."""
        self.bytes_discarded += len(self._buf)
        self._buf.clear()

    def _drop(self, n: int) -> None:
        self.bytes_discarded += n
        self.resyncs += self._in_sync
        self._in_sync = False
        del self._buf[:n]

    def feed(self, data: bytes | bytearray) -> list[Frame]:
        """Add received bytes; return the frames they complete, in order."""
        self._buf += data
        frames: list[Frame] = []
        while self._buf:
            start = self._buf.find(START)
            if start != 0:  # garbage before the next start byte (or no start byte at all)
                self._drop(len(self._buf) if start < 0 else start)
                continue
            if len(self._buf) < HEADER_LEN:
                break
            ftype, seq, length = struct.unpack_from("<BBH", self._buf, 1)
            if length > self.max_payload:
                self.length_errors += 1
                self._drop(1)  # false start: rescan from the next byte
                continue
            total = HEADER_LEN + length + CRC_LEN
            if len(self._buf) < total:
                break
            (crc,) = struct.unpack_from("<H", self._buf, total - CRC_LEN)
            if crc != crc16_ccitt_false(memoryview(self._buf)[1:total - CRC_LEN]):
                self.crc_errors += 1
                self._drop(1)
                continue
            frames.append(Frame(ftype, seq, bytes(self._buf[HEADER_LEN:total - CRC_LEN])))
            del self._buf[:total]
            self._in_sync = True
        return frames


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
    retries: int = 0
    timeouts: int = 0
    crc_errors: int = 0
    naks: dict[int, int] = field(default_factory=dict)
    stale_replies: int = 0
    bytes_discarded: int = 0
    resyncs: int = 0


@dataclass(frozen=True)
class DeviceInfo:
    """The INFO reply: dimensions, clock, boot self-test, board and model identity."""

    obs_dim: int
    act_dim: int
    tick_hz: int
    golden_status: int
    protocol_version: int
    max_payload: int
    board: str
    model_hash: str

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
    def request(self, ftype: int, payload: bytes = b"", expect: int | None = None) -> tuple[Frame, float]:
        """Send a request and wait for the reply with the same ``seq``, retrying as configured.

        Args:
            ftype: request type.
            payload: request payload.
            expect: required reply type (``None``: any non-NAK type).

        Returns:
            the reply frame and the round-trip time in seconds of the successful attempt.

        Raises:
            LinkNak: the device answered with a non-transient NAK, or a transient one on the last attempt.
            LinkTimeout: no reply after ``retries + 1`` attempts.
            LinkError: a reply of an unexpected type, or an I/O error.
        """
        nak: LinkNak | None = None
        for attempt in range(self.retries + 1):
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
        raise LinkTimeout(f"no reply to type 0x{ftype:02X} from {self.url} after {self.retries + 1} attempts "
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
        except (struct.error, IndexError, UnicodeDecodeError) as e:
            raise LinkError(f"malformed INFO reply ({len(p)} bytes): {e}") from e
        obs_dim, act_dim, tick_hz, golden, version, max_payload = head
        self._info = DeviceInfo(obs_dim, act_dim, tick_hz, golden, version, max_payload, *strings)
        return self._info

    def infer(self, obs: np.ndarray) -> InferReply:
        """Run the policy on the device.

        Args:
            obs: observation, shape ``(obs_dim,)``, any floating dtype (sent as little-endian float32).

        Returns:
            actions, shape ``(act_dim,)`` float32, with the device's tick count for the inference.

        Raises:
            ValueError: wrong shape or a non-floating dtype.
            LinkNak: code 5 when the device finds a NaN/Inf (the host does not filter them).
        """
        info = self._info or self.info()
        obs = np.asarray(obs)
        if not np.issubdtype(obs.dtype, np.floating):
            raise ValueError(f"obs must be a floating array, got dtype {obs.dtype}")
        if obs.shape != (info.obs_dim,):
            raise ValueError(f"obs must have shape ({info.obs_dim},) for this device, got {obs.shape}")
        reply, rtt = self.request(MSG_OBS, obs.astype("<f4").tobytes(), expect=MSG_ACT)
        if len(reply.payload) != 4 + 4 * info.act_dim:
            raise LinkError(f"ACT payload of {len(reply.payload)} bytes, expected {4 + 4 * info.act_dim}")
        (ticks,) = struct.unpack_from("<I", reply.payload)
        actions = np.frombuffer(reply.payload, dtype="<f4", offset=4).astype(np.float32)
        return InferReply(actions=actions, ticks=ticks, tick_hz=info.tick_hz, rtt=rtt)

    def reset(self, wait: bool = True) -> None:
        """Reset the device (ACK first); with ``wait``, return once it answers a PING again (:meth:`wait_ready`)."""
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
