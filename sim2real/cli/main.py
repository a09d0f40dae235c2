"""``sim2real`` command line: parse the arguments, run the verb's handler, turn user errors into ``error: ...``.

The handlers live in :mod:`.train` (list, train, demo), :mod:`.evaluate` (eval), :mod:`.sysid` (sysid) and
:mod:`.deploy` (export, hil, launch), imported only for the command that runs, so ``sim2real --help`` loads no
torch. Every failure the user can cause (bad arguments, unknown task, missing/corrupt files, unwritable
directories, NaN policies) ends with one ``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Callable

from sim2real.cli.parser import build_parser


def _handler(command: str) -> Callable[[argparse.Namespace], int]:
    """The function that runs ``command`` (its module is imported now, not at start-up)."""
    if command in ("list", "train", "demo"):
        from sim2real.cli import train as module
    elif command == "eval":
        from sim2real.cli import evaluate as module
    elif command == "sysid":
        from sim2real.cli import sysid as module
    elif command == "finetune":
        from sim2real.cli import finetune as module
    else:
        from sim2real.cli import deploy as module
    return getattr(module, f"cmd_{command}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sim2real`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    if str(getattr(args, "task", "")).startswith("isaacgym-") and "torch" not in sys.modules:
        with contextlib.suppress(ImportError):  # Isaac Gym must be imported before torch; absent: the task says how
            importlib.import_module("isaacgym")
    try:
        return _handler(args.command)(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (KeyError, ValueError, TypeError, OSError, RuntimeError, ImportError) as e:  # CheckpointError: a ValueError
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
