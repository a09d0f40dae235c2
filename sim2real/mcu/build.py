"""Build the policy firmware for an emulated Cortex-M4F board with arm-none-eabi-gcc.

The firmware sources live in ``firmware/`` beside this module (startup, semihosting exit, framed UART
protocol, main loop, one ``board_<machine>.c`` and ``link_<machine>.ld`` per board); the policy comes from a
directory holding a generated ``policy.h`` + ``policy.c`` with this contract:

* ``policy.h`` defines ``POLICY_OBS_DIM`` and ``POLICY_ACT_DIM`` (integers), ``POLICY_MODEL_HASH`` (string
  literal, 16 hex characters) and ``POLICY_GOLDEN_ATOL`` (float literal), and declares
  ``const float policy_golden_obs[POLICY_OBS_DIM]``, ``const float policy_golden_act[POLICY_ACT_DIM]`` and
  ``int policy_eval(const float *obs, float *actions)`` (0 on success, nonzero for a NaN/Inf observation).
  Optionally ``POLICY_HISTORY_OFFSET`` and ``POLICY_HISTORY_LEN``: the observation ends with that many floats
  of the policy's own past actions, which the serial firmware keeps itself (OBS_STATE frames); without them
  (or with length 0) there is no such history.
* ``policy.c`` defines them without libc or libm.

Three firmware modes: ``serial`` serves the framed protocol of :mod:`.serial_link` on the board's UART,
``selftest`` exits (through semihosting, i.e. QEMU's exit status) with 0 when ``policy_eval`` reproduces the
golden pair within ``POLICY_GOLDEN_ATOL``, 1 on a mismatch and 2 when ``policy_eval`` fails, and ``bench`` times
the golden inference with SysTick and reports over the UART (see :func:`.qemu.run_bench`).

Compile flags: ISO ``-std=c11`` implies ``-ffp-contract=off`` (separate VMUL + VADD, no fused multiply-add), so
the device reproduces a host float32 build bit for bit. Our own sources build with ``-O2 -Werror``; the
generated ``policy.c`` with ``-O3 -funroll-loops``. The link uses no C library at all (``-nostdlib -lgcc``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent / "firmware"
GCC = "arm-none-eabi-gcc"
SIZE = "arm-none-eabi-size"
OBJCOPY = "arm-none-eabi-objcopy"
MODES = {"serial": 1, "selftest": 2, "bench": 3}  # -> -DFW_MODE=<n> (firmware/main.c)
SELFTEST_PASS, SELFTEST_MISMATCH, SELFTEST_EVAL_ERROR, FAULT_EXIT = 0, 1, 2, 3

# Cortex-M4F with the single-precision FPU, hard-float ABI.
_M4F = ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard")
# Common to every object: ISO C11 (no FMA contraction), warnings, one section per function/object so the
# linker drops what is unused, no tentative definitions.
_COMMON_FLAGS = ("-std=c11", "-g", "-Wall", "-Wextra", "-Wdouble-promotion", "-ffunction-sections",
                 "-fdata-sections", "-fno-common")
FIRMWARE_CFLAGS = (*_COMMON_FLAGS, "-O2", "-ffreestanding", "-Werror")
POLICY_CFLAGS = (*_COMMON_FLAGS, "-O3", "-funroll-loops")
LDFLAGS = ("-nostartfiles", "-nostdlib", "-Wl,--gc-sections")
# Our firmware sources, compiled for every board and mode (plus board_<machine>.c).
COMMON_SOURCES = ("startup.c", "semihost.c", "cortexm.c", "mini_libc.c", "crc16.c", "protocol.c", "main.c")


@dataclass(frozen=True)
class Board:
    """A QEMU machine the firmware supports.

    Attributes:
        name: the QEMU ``-M`` machine name (also the board name the firmware reports).
        cpu_flags: arm-none-eabi-gcc CPU/ABI flags.
        flash_origin: address of the boot flash (vector table) in the linker script.
        description: the emulated hardware in words.
    """

    name: str
    cpu_flags: tuple[str, ...]
    flash_origin: int
    description: str

    @property
    def qemu_machine(self) -> str:
        return self.name

    @property
    def slug(self) -> str:
        """File-name form of the name: ``board_<slug>.c``, ``link_<slug>.ld``."""
        return self.name.replace("-", "_")


BOARDS: dict[str, Board] = {
    "mps2-an386": Board("mps2-an386", _M4F, 0x0000_0000,
                        "ARM MPS2 AN386: Cortex-M4F, SysTick 25 MHz, CMSDK UART0 @0x40004000 (RX IRQ 0)"),
    "netduinoplus2": Board("netduinoplus2", _M4F, 0x0800_0000,
                           "STM32F405RG (Crazyflie 2.x MCU): Cortex-M4F 168 MHz, USART1 @0x40011000 (IRQ 37)"),
}


class FirmwareError(RuntimeError):
    """The firmware could not be built: toolchain missing, compiler/linker error, bad input."""


@dataclass(frozen=True)
class MemorySizes:
    """Section sizes in bytes as ``arm-none-eabi-size`` reports them (Berkeley format).

    ``text`` = code + constants (the weights), ``data`` = initialised RAM (its initial values sit in flash
    too), ``bss`` = zeroed RAM including the reserved 4 KB stack.
    """

    text: int
    data: int
    bss: int

    @property
    def flash(self) -> int:
        """Flash footprint: code, constants and the initial values of ``.data``."""
        return self.text + self.data

    @property
    def ram(self) -> int:
        """Static RAM: ``.data`` + ``.bss`` (stack included for a linked image)."""
        return self.data + self.bss


@dataclass(frozen=True)
class FirmwareBuild:
    """A built firmware image.

    Attributes:
        elf: the linked ELF (what QEMU's ``-kernel`` loads).
        bin: raw flash image (``objcopy -O binary``), for flashing silicon.
        board: board name (key of :data:`BOARDS`).
        mode: ``serial``, ``selftest`` or ``bench``.
        sizes: sizes of the whole image.
        policy_sizes: sizes of ``policy.o`` alone (before the linker's garbage collection).
    """

    elf: Path
    bin: Path
    board: str
    mode: str
    sizes: MemorySizes
    policy_sizes: MemorySizes


def get_board(board: str) -> Board:
    """Look up a board by name; :class:`FirmwareError` listing the known boards otherwise."""
    try:
        return BOARDS[board]
    except KeyError:
        raise FirmwareError(f"unknown board {board!r}; known boards: {', '.join(sorted(BOARDS))}") from None


def require_toolchain() -> None:
    """Raise :class:`FirmwareError` unless the arm-none-eabi compiler and binutils are on ``PATH``."""
    missing = [t for t in (GCC, SIZE, OBJCOPY) if shutil.which(t) is None]
    if missing:
        raise FirmwareError(f"{', '.join(missing)} not found on PATH: install the ARM toolchain with `make mcu-deps`")


def _run(cmd: list[str], what: str) -> str:
    """Run a toolchain command; :class:`FirmwareError` with its stderr when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FirmwareError(f"{what} failed (exit {proc.returncode}):\n$ {' '.join(cmd)}\n{proc.stderr.strip()}")
    return proc.stdout


def _sizes(path: Path) -> MemorySizes:
    """Berkeley-format ``arm-none-eabi-size`` of an ELF or object: text, data, bss (first three columns)."""
    out = _run([SIZE, "-B", str(path)], "arm-none-eabi-size").splitlines()
    text, data, bss = (int(v) for v in out[1].split()[:3])
    return MemorySizes(text=text, data=data, bss=bss)


def build_firmware(c_dir: Path, board: str, out_dir: Path, mode: str = "serial", *, bench_runs: int = 16,
                   include_dirs: tuple[Path, ...] = (), libs: tuple[str, ...] = ()) -> FirmwareBuild:
    """Compile and link the firmware for ``board`` around the policy in ``c_dir``.

    Writes ``firmware.elf``, ``firmware.bin`` and ``firmware.map`` into ``out_dir``; each is built in a temporary
    directory inside ``out_dir`` and moved into place atomically, so a failed build leaves no partial image.

    Args:
        c_dir: directory holding the generated ``policy.h`` and ``policy.c``.
        board: a key of :data:`BOARDS`.
        out_dir: output directory (created if missing).
        mode: ``serial`` (protocol loop), ``selftest`` (golden check as the exit status) or ``bench``.
        bench_runs: inferences timed by the bench firmware.
        include_dirs: extra header directories for ``policy.c`` (e.g. a third-party library's).
        libs: extra libraries linked before libgcc, e.g. ``("m", "c", "nosys")`` for code that needs newlib
            (our generated policy needs none).

    Returns:
        the image paths and its sizes.

    Raises:
        FirmwareError: toolchain missing, unknown board or mode, missing policy files, compile or link error.
    """
    spec = get_board(board)
    if mode not in MODES:
        raise FirmwareError(f"unknown firmware mode {mode!r}; modes: {', '.join(MODES)}")
    if bench_runs < 1:
        raise FirmwareError(f"bench_runs must be >= 1, got {bench_runs}")
    c_dir, out_dir = Path(c_dir).resolve(), Path(out_dir).resolve()
    missing = [f for f in ("policy.h", "policy.c") if not (c_dir / f).is_file()]
    if missing:
        raise FirmwareError(f"{c_dir} lacks {', '.join(missing)} (generate them with c_codegen.generate_c)")
    require_toolchain()
    out_dir.mkdir(parents=True, exist_ok=True)

    defines = [f"-DFW_MODE={MODES[mode]}", f"-DFW_BENCH_RUNS={bench_runs}"]
    includes = [f"-I{FIRMWARE_DIR}", f"-I{c_dir}"]
    sources = [str(FIRMWARE_DIR / s) for s in (*COMMON_SOURCES, f"board_{spec.slug}.c")]
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp_name:
        tmp = Path(tmp_name)
        fw_dir, policy_dir = tmp / "fw", tmp / "policy"
        fw_dir.mkdir()
        policy_dir.mkdir()
        # Two compiler runs in parallel (one gcc driver each): our sources, and the generated policy.
        fw_cmd = [GCC, *spec.cpu_flags, *FIRMWARE_CFLAGS, *defines, *includes, "-c", *sources]
        extra_inc = [f"-I{Path(d).resolve()}" for d in include_dirs]
        policy_cmd = [GCC, *spec.cpu_flags, *POLICY_CFLAGS, f"-I{c_dir}", *extra_inc, "-c", str(c_dir / "policy.c"),
                      "-o", str(policy_dir / "policy.o")]
        with ThreadPoolExecutor(max_workers=2) as pool:
            jobs = [pool.submit(_compile, fw_cmd, fw_dir, "compiling the firmware"),
                    pool.submit(_compile, policy_cmd, policy_dir, "compiling policy.c")]
            for job in jobs:
                job.result()
        objects = sorted(str(p) for p in fw_dir.glob("*.o")) + [str(policy_dir / "policy.o")]
        elf, binary, mapfile = tmp / "firmware.elf", tmp / "firmware.bin", tmp / "firmware.map"
        _run([GCC, *spec.cpu_flags, f"-L{FIRMWARE_DIR}", f"-T{FIRMWARE_DIR / f'link_{spec.slug}.ld'}", *LDFLAGS,
              f"-Wl,-Map={mapfile}", *objects, *(f"-l{lib}" for lib in libs), "-lgcc", "-o", str(elf)],
             "linking the firmware")
        _run([OBJCOPY, "-O", "binary", str(elf), str(binary)], "arm-none-eabi-objcopy")
        sizes, policy_sizes = _sizes(elf), _sizes(policy_dir / "policy.o")
        for f in (mapfile, binary, elf):  # the ELF last: its presence means the rest is there too
            os.replace(f, out_dir / f.name)
    return FirmwareBuild(elf=out_dir / "firmware.elf", bin=out_dir / "firmware.bin", board=board, mode=mode,
                         sizes=sizes, policy_sizes=policy_sizes)


def _compile(cmd: list[str], cwd: Path, what: str) -> None:
    """Run one compiler command in ``cwd`` (``-c`` without ``-o`` puts the objects there)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise FirmwareError(f"{what} failed (exit {proc.returncode}):\n$ {' '.join(cmd)}\n{proc.stderr.strip()}")
