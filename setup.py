"""Build script: one package that is both a pip-installable distribution and a ROS 2 ament_python package.

* pip: ``pip install torch==2.13.0 && pip install -e '.[dev]'`` (install torch first: a bare ``torch``
  requirement would pull the multi-GB CUDA build).
* ROS 2: ``colcon build`` (setup.cfg puts the console scripts in ``lib/sim2real``; the ament index marker,
  ``package.xml``, launch and config files go to ``share/``).

The version lives only in ``package.xml``; it is read from there.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "sim2real"
HERE = os.path.dirname(os.path.abspath(__file__))


def _package_xml(tag: str) -> str:
    """Return the text of a top-level tag of package.xml (single source of name, version, license)."""
    node = ET.parse(os.path.join(HERE, "package.xml")).getroot().find(tag)
    if node is None or not (node.text or "").strip():
        raise RuntimeError(f"package.xml has no <{tag}>")
    return " ".join(node.text.split())


def _files(*patterns: str) -> list[str]:
    """Files matching the patterns, relative to this directory (setuptools wants relative data_files paths)."""
    found: set[str] = set()
    for pattern in patterns:
        found.update(p for p in glob(os.path.join(HERE, pattern)) if os.path.isfile(p))
    return sorted(os.path.relpath(p, HERE) for p in found)


def _data_files() -> list[tuple[str, list[str]]]:
    """The ament layout under the install prefix; empty launch/ or config/ directories are skipped."""
    entries = [
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", _files("launch/*.xml", "launch/*.yaml", "launch/*.yml", "launch/*.py")),
        (f"share/{PACKAGE}/config", _files("config/*.yaml", "config/*.yml")),
        (f"share/{PACKAGE}/config/shifts", _files("config/shifts/*.yaml")),
    ]
    return [(dest, files) for dest, files in entries if files]


def _package_data() -> list[str]:
    """Every non-Python file inside the package (py.typed, C firmware templates, models, ...)."""
    root = os.path.join(HERE, PACKAGE)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.startswith(".")]
        for name in filenames:
            if name.endswith((".py", ".pyc", ".pyo")) or name.startswith("."):
                continue
            out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(out)


def _readme() -> tuple[str, str]:
    path = os.path.join(HERE, "README.md")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read(), "text/markdown"
    return "", "text/plain"


INSTALL_REQUIRES = [
    # Install torch==2.13.0 (CPU wheel) before this package; any torch>=2.4 already present is kept.
    "torch>=2.4",
    "numpy>=1.24",
    "onnx>=1.16",
    "onnxruntime>=1.18",
    "onnxscript>=0.1",
    "rich>=13",
    "tensorboard>=2.14",
    "gymnasium>=1.0",
    "matplotlib>=3.7",
    "pyyaml>=6.0",
    "pyserial>=3.5",  # sim2real hil: the serial link to a microcontroller (real port or QEMU socket)
]

EXTRAS_REQUIRE = {
    "mujoco": ["mujoco>=3.1", "gymnasium[mujoco]>=1.0"],
    "pybullet": ["pybullet>=3.2.6"],
    "ros2": ["cyclonedds>=0.10.5", "mcap>=1.1", "mcap-ros2-support>=0.5", "rosbags>=0.9.20"],
    "mcu": ["emlearn>=0.20"],
    "rsl_rl": ["rsl-rl-lib>=3.0"],  # sim2real.sim.rsl_rl_wrapper: rsl_rl's runners on our envs
    # backend="warp" of the MuJoCo tasks (sim2real.sim.mujoco.warp); mujoco-warp needs Python >= 3.11
    "warp": ["mujoco-warp>=4.0; python_version >= '3.11'", "warp-lang>=1.15; python_version >= '3.11'"],
    # basedpyright: pyright as a Python package with its own Node.js (`make lint` type-checks the package)
    "dev": ["pytest>=8", "ruff>=0.6", "basedpyright>=1.20", "stable-baselines3>=2.3", "rltools", "emlearn>=0.20"],
}
EXTRAS_REQUIRE["dev"] += EXTRAS_REQUIRE["ros2"]  # the ROS 2 tests run on Cyclone DDS, rosbags and MCAP here
EXTRAS_REQUIRE["dev"] += EXTRAS_REQUIRE["mujoco"]  # the MuJoCo tests compare with Gymnasium's v5 envs
EXTRAS_REQUIRE["dev"] += EXTRAS_REQUIRE["rsl_rl"]  # rsl_rl's PPO runner is tested on our envs
EXTRAS_REQUIRE["dev"] += EXTRAS_REQUIRE["warp"]  # the warp backend's tests run its kernels on Warp's CPU device
EXTRAS_REQUIRE["dev"] += EXTRAS_REQUIRE["pybullet"]  # the quadrotor in PyBullet (sim-to-sim evaluation)
# The packaging test builds this repository with colcon as a ROS 2 workspace would (no ROS needed).
EXTRAS_REQUIRE["dev"] += [
    "colcon-core", "colcon-ros", "colcon-python-setup-py", "colcon-package-information", "colcon-recursive-crawl",
    "colcon-output", "colcon-parallel-executor", "colcon-library-path", "colcon-bash",
]
EXTRAS_REQUIRE["all"] = sorted({req for reqs in EXTRAS_REQUIRE.values() for req in reqs})

long_description, long_description_content_type = _readme()

setup(
    name=PACKAGE,
    version=_package_xml("version"),
    description=_package_xml("description"),
    long_description=long_description,
    long_description_content_type=long_description_content_type,
    license=_package_xml("license"),
    maintainer="sim2real maintainers",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: _package_data()},
    data_files=_data_files(),
    zip_safe=False,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": [
        f"{PACKAGE}={PACKAGE}.cli.main:main",
        # ROS 2 executables (lib/sim2real/<name> under colcon; `ros2 run sim2real <name>`)
        f"policy_node={PACKAGE}.ros_nodes.policy_node:main",
        f"sim_robot_node={PACKAGE}.ros_nodes.sim_robot_node:main",
        f"recorder_node={PACKAGE}.ros_nodes.recorder_node:main",
        f"finetune_node={PACKAGE}.ros_nodes.finetune_node:main",
        f"legged_policy_node={PACKAGE}.ros_nodes.legged_policy_node:main",
        f"legged_sim_node={PACKAGE}.ros_nodes.legged_sim_node:main",
    ]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Operating System :: POSIX :: Linux",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
