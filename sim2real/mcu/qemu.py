"""Run the policy firmware (:mod:`.firmware`) under ``qemu-system-arm``.

Every run uses ``-M <machine> -display none -monitor none -semihosting-config enable=on,target=native
-icount shift=0 -kernel firmware.elf``: semihosting turns the firmware's exit (main's return value, 3 for a
fault) into QEMU's exit status, and ``-icount shift=0`` makes the virtual clock advance exactly 1 ns per guest
instruction, so SysTick readings are deterministic instruction counts rather than host wall-clock:
``instructions = ticks * 1e9 / tick_hz`` (40 per tick at 25 MHz on mps2-an386, 5.95 at 168 MHz on
netduinoplus2). The bench firmware checks this with a calibration loop of known length; both boards follow it
in QEMU 7.2. While the guest sleeps in WFI the virtual clock follows real time (icount ``sleep=on``), so the
firmware's 50 ms inter-byte timeout is roughly 50 ms of wall-clock.

* :func:`run_selftest` returns the exit status of a ``selftest`` image (0 pass, 1 mismatch, 2 eval error).
* :func:`run_bench` reads the ``BENCH`` frame of a ``bench`` image from the UART (``-serial stdio``).
* :class:`QemuSerial` serves the first UART on a local TCP port for :class:`.serial_link.SerialLink`.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sim2real.mcu.build import get_board
from sim2real.mcu.serial_link import MSG_BENCH, FrameDecoder

QEMU = "qemu-system-arm"
_BENCH_FIELDS = "<7I"  # runs, ticks_total, tick_overhead, calib_insns, calib_ticks, tick_hz, golden status


class QemuError(RuntimeError):
    """QEMU is missing, failed to start, timed out, or the firmware did not report what was expected."""


def require_qemu() -> str:
    """Path of ``qemu-system-arm``; :class:`QemuError` when it is not installed."""
    path = shutil.which(QEMU)
    if path is None:
        raise QemuError(f"{QEMU} not found on PATH: install it with `make mcu-deps`")
    return path


def qemu_command(elf: Path, board: str, serial: str = "null") -> list[str]:
    """Command line that boots ``elf`` on ``board`` with the first UART connected to ``serial``.

    Args:
        elf: firmware image.
        board: a key of :data:`.firmware.BOARDS`.
        serial: a QEMU ``-serial`` backend (``null``, ``stdio``, ``tcp:...``).
    """
    machine = get_board(board).qemu_machine
    return [require_qemu(), "-M", machine, "-display", "none", "-monitor", "none",
            "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
            "-serial", serial, "-kernel", str(elf)]


def _check_elf(elf: Path) -> Path:
    elf = Path(elf)
    if not elf.is_file():
        raise QemuError(f"firmware image {elf} does not exist")
    return elf


def run_selftest(elf: Path, board: str, timeout: float = 20) -> int:
    """Boot a ``selftest`` image and return QEMU's exit status.

    0 = the policy reproduces its golden pair, 1 = mismatch, 2 = ``policy_eval`` error, 3 = CPU fault.

    Raises:
        QemuError: QEMU missing, or no exit within ``timeout`` seconds (the process is killed).
    """
    cmd = qemu_command(_check_elf(elf), board, "null")
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise QemuError(f"self-test of {elf} on {board} did not finish within {timeout} s") from None
    return proc.returncode


@dataclass(frozen=True)
class BenchResult:
    """Cost of one golden inference measured by the bench firmware under ``-icount shift=0``.

    Attributes:
        board: board name.
        runs: inferences timed.
        ticks_per_inference: mean SysTick ticks per ``policy_eval`` call (timing overhead removed).
        tick_hz: SysTick clock.
        instructions_per_inference: ``ticks_per_inference * 1e9 / tick_hz`` (1 instruction = 1 ns).
        calibration_instructions: length of the firmware's calibration loop in instructions.
        calibration_ticks: ticks it took.
        golden_status: the firmware's self-test result (0 pass).
    """

    board: str
    runs: int
    ticks_per_inference: float
    tick_hz: int
    instructions_per_inference: float
    calibration_instructions: int
    calibration_ticks: int
    golden_status: int

    @property
    def instructions_per_tick(self) -> float:
        """Nominal instructions per tick under icount: 1e9 / tick_hz."""
        return 1e9 / self.tick_hz

    @property
    def measured_instructions_per_tick(self) -> float:
        """Instructions per tick measured by the calibration loop (should equal the nominal value)."""
        return self.calibration_instructions / max(self.calibration_ticks, 1)

    @property
    def device_seconds(self) -> float:
        """Inference time at the board's clock if the core ran 1 instruction per cycle."""
        return self.instructions_per_inference / self.tick_hz


def run_bench(elf: Path, board: str, timeout: float = 20, tolerance: float = 0.02) -> BenchResult:
    """Boot a ``bench`` image, read its ``BENCH`` frame from the UART and compute the cost per inference.

    The calibration loop's ticks are compared with the nominal ``1e9 / tick_hz`` instructions per tick; when
    they differ by more than ``tolerance`` (SysTick not driven by the icount clock) the measured ratio is used
    for ``instructions_per_inference`` instead of the nominal one.

    Raises:
        QemuError: QEMU missing, timeout, nonzero exit or no valid ``BENCH`` frame.
    """
    cmd = qemu_command(_check_elf(elf), board, "stdio")
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise QemuError(f"bench of {elf} on {board} did not finish within {timeout} s") from None
    frames = [f for f in FrameDecoder().feed(proc.stdout) if f.type == MSG_BENCH]
    if proc.returncode != 0 or not frames:
        raise QemuError(f"bench of {elf} on {board}: exit status {proc.returncode}, {len(frames)} BENCH frames; "
                        f"stderr: {proc.stderr.decode(errors='replace').strip()}")
    payload = frames[-1].payload
    if len(payload) != struct.calcsize(_BENCH_FIELDS):
        raise QemuError(f"BENCH frame of {len(payload)} bytes, expected {struct.calcsize(_BENCH_FIELDS)}")
    runs, total, _overhead, calib_insns, calib_ticks, tick_hz, status = struct.unpack(_BENCH_FIELDS, payload)
    ticks = total / runs
    nominal = 1e9 / tick_hz
    measured = calib_insns / max(calib_ticks, 1)
    per_tick = nominal if abs(measured / nominal - 1.0) <= tolerance else measured
    return BenchResult(board=board, runs=runs, ticks_per_inference=ticks, tick_hz=tick_hz,
                       instructions_per_inference=ticks * per_tick, calibration_instructions=calib_insns,
                       calibration_ticks=calib_ticks, golden_status=status)


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (QEMU binds it; a lost race is retried)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QemuSerial:
    """QEMU running a ``serial`` image with its first UART served on ``tcp:127.0.0.1:PORT``.

    ``wait=on`` holds the guest until the first client connects, so no byte the firmware sends is lost;
    ``nodelay=on`` disables Nagle's algorithm (otherwise every small frame waits ~40 ms for a delayed ACK).
    The guest boots when the client connects, and QEMU's STM32 USART (netduinoplus2) drops bytes that arrive
    before the firmware has enabled it, so start with :meth:`.SerialLink.wait_ready`. QEMU feeds the guest
    UART one byte per main-loop pass (~30-60 us per byte here), which dominates the round trip of large
    frames. Use as a context manager; on exit QEMU is killed (if still running) and reaped::

        with QemuSerial(elf, "mps2-an386") as qemu, SerialLink(qemu.url) as link:
            link.wait_ready()
            link.ping()

    Args:
        elf: firmware image built with ``mode="serial"``.
        board: a key of :data:`.firmware.BOARDS`.
        startup_timeout: seconds to wait for QEMU to listen.
    """

    def __init__(self, elf: Path, board: str, startup_timeout: float = 10.0) -> None:
        self.elf = _check_elf(elf)
        self.board = board
        self.startup_timeout = startup_timeout
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None
        self._final_log = ""

    @property
    def url(self) -> str:
        """The emulated UART as a pyserial URL."""
        return f"socket://127.0.0.1:{self.port}"

    @property
    def returncode(self) -> int | None:
        """QEMU's exit status (the firmware's semihosting exit), or ``None`` while it runs."""
        return None if self.proc is None else self.proc.poll()

    def log(self) -> str:
        """What QEMU wrote to stderr so far."""
        if self._log is None:
            return self._final_log
        return Path(self._log.name).read_text(errors="replace")

    def start(self) -> QemuSerial:
        """Start QEMU and wait until it listens on its port (retries a port taken in the meantime)."""
        last = ""
        for _ in range(3):
            self.port = _free_port()
            self._log = tempfile.NamedTemporaryFile(prefix="qemu-", suffix=".log")
            serial = f"tcp:127.0.0.1:{self.port},server=on,wait=on,nodelay=on"
            self.proc = subprocess.Popen(qemu_command(self.elf, self.board, serial), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=self._log)
            if self._wait_listening():
                return self
            last = self.log()
            self.stop()
        raise QemuError(f"QEMU did not start listening for {self.elf} on {self.board}: {last.strip()}")

    def _wait_listening(self) -> bool:
        # QEMU prints "QEMU waiting for connection on: ...,server=on" once the socket listens.
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if "waiting for connection" in self.log():
                return True
            if self.proc is None or self.proc.poll() is not None:
                return False
            time.sleep(0.005)
        return False

    def wait(self, timeout: float) -> int:
        """Wait for QEMU to exit by itself (after QUIT); :class:`QemuError` on timeout."""
        assert self.proc is not None, "QEMU was not started"
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise QemuError(f"QEMU did not exit within {timeout} s") from None

    def stop(self) -> None:
        """Kill QEMU if it still runs, reap it and remove its log."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        if self._log is not None:
            self._final_log = self.log()
            self._log.close()
            self._log = None

    def __enter__(self) -> QemuSerial:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
