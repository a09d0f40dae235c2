"""Frame codec of the policy firmware's serial protocol: CRC-16/CCITT-FALSE, frame encoder, streaming decoder.

Frame, both directions, integers little-endian::

    0xA5 | type u8 | seq u8 | len u16 | payload[len] | crc u16

``crc`` is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR; "123456789"
-> 0x29B1) over ``type``, ``seq``, ``len`` and the payload. ``len`` <= :data:`MAX_PAYLOAD`. The message types
and the request/reply rules are in :mod:`.serial_link`, which re-exports everything here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

START = 0xA5
HEADER_LEN = 5  # start, type, seq, len (u16)
CRC_LEN = 2
MAX_PAYLOAD = 1024


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
