"""Where a package's files and executables are, for ``sim2real launch`` (no ROS installation needed).

``$(find-pkg-share sim2real)`` is looked up, in order, in

1. the ament index: the first prefix of ``AMENT_PREFIX_PATH`` holding
   ``share/ament_index/resource_index/packages/<pkg>`` (a colcon install, or a sourced ROS 2 workspace);
2. the interpreter's prefix: ``<sys.prefix>/share/<pkg>/package.xml`` (a wheel installs the data files there);
3. the source checkout holding the imported ``sim2real`` package (``package.xml`` beside it): editable installs
   do not install data files, so the launch and config files are read from the repository.

Executables of ``<node pkg="sim2real" exec="X">`` are the distribution's ``console_scripts`` entry points, run as
``python -c "from MODULE import FUNC; ..."`` with this interpreter (so they work whether or not the virtualenv's
``bin`` is on ``PATH``), or, with :class:`AmentExecutables`, the scripts colcon installed in ``<prefix>/lib/<pkg>``.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sim2real.ros_nodes.launch.substitutions import LaunchError

__all__ = [
    "AmentExecutables",
    "ExecutableResolver",
    "PackageLocation",
    "console_scripts",
    "entry_point_command",
    "locate_package",
]

PACKAGE = "sim2real"
log = logging.getLogger("sim2real.launch")

ExecutableResolver = Callable[[str, str], list[str]]
"""``(package, executable) -> command`` (the program and its leading arguments, before the node's own)."""


@dataclass(frozen=True)
class PackageLocation:
    """A package's install prefix and share directory, and how they were found.

    Attributes:
        name: The package name.
        prefix: ``$(find-pkg-prefix)``.
        share: ``$(find-pkg-share)``.
        source: ``ament index (AMENT_PREFIX_PATH)``, ``installed data files (sys.prefix)`` or ``source checkout``.
    """

    name: str
    prefix: Path
    share: Path
    source: str


def _checkout_root() -> Path | None:
    """The repository root when ``sim2real`` is imported from a source checkout (``package.xml`` beside it)."""
    import sim2real

    root = Path(sim2real.__file__).resolve().parent.parent
    return root if (root / "package.xml").is_file() and (root / "launch").is_dir() else None


def locate_package(name: str = PACKAGE, environ: Mapping[str, str] | None = None) -> PackageLocation:
    """Find a package's share directory (see the module docstring for the search order).

    Args:
        name: Package name; only ``sim2real`` is looked for outside the ament index.
        environ: Environment to read ``AMENT_PREFIX_PATH`` from (default ``os.environ``).

    Raises:
        LaunchError: If the package is found nowhere.
    """
    env = os.environ if environ is None else environ
    prefixes = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for prefix in prefixes:
        if (Path(prefix) / "share" / "ament_index" / "resource_index" / "packages" / name).is_file():
            found = PackageLocation(name, Path(prefix), Path(prefix) / "share" / name, "ament index (AMENT_PREFIX_PATH)")
            break
    else:
        found = None
        if name == PACKAGE:
            share = Path(sys.prefix) / "share" / name
            root = _checkout_root()
            if (share / "package.xml").is_file():
                found = PackageLocation(name, Path(sys.prefix), share, "installed data files (sys.prefix)")
            elif root is not None:
                found = PackageLocation(name, root, root, "source checkout")
    if found is None:
        where = f"AMENT_PREFIX_PATH={env.get('AMENT_PREFIX_PATH', '')!r}"
        if name == PACKAGE:
            where += f", {Path(sys.prefix) / 'share' / name} or a source checkout"
        raise LaunchError(f"package {name!r} not found ({where})")
    log.debug("find-pkg-share %s -> %s (%s)", name, found.share, found.source)
    return found


# ------------------------------------------------------------------------------------------------ executables
def console_scripts(dist: str = PACKAGE) -> dict[str, importlib.metadata.EntryPoint]:
    """The ``console_scripts`` entry points of a distribution, by script name.

    Every installed metadata directory of the distribution is read (the first one on ``sys.path`` wins for a
    name): a stale ``*.egg-info`` left in a checkout can shadow the installed metadata and hide newer scripts.
    """
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for distribution in importlib.metadata.distributions(name=dist):
        for ep in distribution.entry_points:
            if ep.group == "console_scripts":
                found.setdefault(ep.name, ep)
    return found


def entry_point_command(package: str, executable: str) -> list[str]:
    """The command running a console script of ``package`` with this interpreter.

    Returns:
        ``[sys.executable, "-c", "import sys; sys.argv[0] = NAME; from MODULE import FUNC; sys.exit(FUNC())"]``.

    Raises:
        LaunchError: If the distribution is not installed or has no such script.
    """
    scripts = console_scripts(package)
    if executable not in scripts:
        if not scripts:
            raise LaunchError(f"package {package!r} is not installed in {sys.prefix} (pip install -e .)")
        raise LaunchError(
            f"package {package!r} has no executable {executable!r} (console scripts: {', '.join(sorted(scripts))}); "
            "if setup.py declares it, reinstall the package (pip install -e .) to refresh its metadata"
        )
    ep = scripts[executable]
    head, _, rest = ep.attr.partition(".")
    call = f"{head}.{rest}" if rest else head
    code = f"import sys; sys.argv[0] = {json.dumps(executable)}; from {ep.module} import {head}; sys.exit({call}())"
    return [sys.executable, "-c", code]


class AmentExecutables:
    """Resolve executables as ``ros2 launch`` does: ``<prefix>/lib/<package>/<executable>`` in the ament index.

    Args:
        environ: Environment to read ``AMENT_PREFIX_PATH`` from (default ``os.environ``).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def __call__(self, package: str, executable: str) -> list[str]:
        location = locate_package(package, self.environ)
        path = location.prefix / "lib" / package / executable
        if not path.is_file() or not os.access(path, os.X_OK):
            raise LaunchError(f"no executable {path} (package {package!r} found via {location.source})")
        return [str(path)]
