"""ROS 2 packaging: colcon sees an ament_python package, builds it, and the install tree is what ros2 launch needs.

Runs colcon (pip packages, no ROS installation) from a temporary workspace, so the repository gets no build/,
install/ or log/. Skipped when colcon is not installed, failed under CI (``CI=true``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO

from sim2real.ros_nodes.launch.package import AmentExecutables, locate_package
from sim2real.ros_nodes.launch.parser import ParamFile, load_launch
from sim2real.ros_nodes.launch.runner import plan_processes

COLCON_PACKAGES = (
    "colcon-core colcon-ros colcon-python-setup-py colcon-package-information colcon-recursive-crawl colcon-output "
    "colcon-parallel-executor colcon-library-path colcon-bash"
)
SCRIPTS = ("policy_node", "sim_robot_node", "recorder_node", "sim2real")
LAUNCH_FILES = ("quadrotor_sim.launch.xml", "quadrotor_robot.launch.xml")


def _colcon() -> str:
    """The colcon executable beside this interpreter (the virtualenv's bin need not be on PATH), else on PATH."""
    beside = Path(sys.executable).parent / "colcon"
    found = str(beside) if beside.is_file() else shutil.which("colcon")
    if found:
        return found
    msg = f"colcon is not installed (pip install {COLCON_PACKAGES})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must provide colcon: {msg}")
    pytest.skip(msg)


def _env(workspace: Path) -> dict[str, str]:
    """colcon's defaults, logs and any sourced ROS workspace kept out of the way."""
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "COLCON_PREFIX_PATH", "CMAKE_PREFIX_PATH")}
    return {**env, "COLCON_HOME": str(workspace / "colcon_home"), "COLCON_LOG_PATH": str(workspace / "log")}


def _run(cmd: list[str], workspace: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=workspace, env=_env(workspace), capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``colcon build`` of the repository into a temporary workspace; returns ``<ws>/install/sim2real``."""
    colcon = _colcon()
    ws = tmp_path_factory.mktemp("colcon_ws")
    before = set(os.listdir(REPO))
    t0 = time.perf_counter()
    done = _run([colcon, "build", "--base-paths", str(REPO), "--build-base", str(ws / "build"),
                 "--install-base", str(ws / "install")], ws)  # fmt: skip
    print(f"colcon build: {time.perf_counter() - t0:.2f} s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Finished <<< sim2real" in done.stdout
    created = set(os.listdir(REPO)) - before - {".pytest_cache", "__pycache__"}
    assert not created, f"colcon build left {sorted(created)} in the repository"
    return ws / "install" / "sim2real"


def test_colcon_lists_an_ament_python_package(tmp_path: Path) -> None:
    done = _run([_colcon(), "list", "--base-paths", str(REPO)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["sim2real", str(REPO), "(ros.ament_python)"]


def test_install_tree_has_scripts_share_files_and_index(install: Path) -> None:
    for name in SCRIPTS:
        script = install / "lib" / "sim2real" / name
        assert script.is_file() and os.access(script, os.X_OK), script
    share = install / "share" / "sim2real"
    for rel in (*(f"launch/{f}" for f in LAUNCH_FILES), "config/quadrotor.yaml", "package.xml"):
        assert (share / rel).is_file(), rel
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "sim2real").is_file()


def test_installed_script_runs(install: Path) -> None:
    site = next((install / "lib").glob("python3*/site-packages"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([str(install / "lib" / "sim2real" / "sim2real"), "launch", "--help"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--exit-on-failure" in done.stdout


@pytest.mark.parametrize("launch_file", LAUNCH_FILES)
def test_installed_launch_files_resolve_in_the_install_tree(install: Path, launch_file: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(install))
    location = locate_package()
    assert location.source == "ament index (AMENT_PREFIX_PATH)" and location.share == install / "share" / "sim2real"
    desc = load_launch(location.share / "launch" / launch_file, {"policy": "/tmp/policy.onnx"})
    assert desc.packages["sim2real"].share == location.share
    processes = plan_processes(desc, AmentExecutables())
    assert len(processes) == (3 if "sim" in launch_file else 2)
    for proc in processes:
        script = install / "lib" / "sim2real" / proc.node.executable
        assert proc.cmd[0] == str(script) and os.access(script, os.X_OK)
        files = [p.path for p in proc.node.params if isinstance(p, ParamFile)]
        assert files == [str(location.share / "config" / "quadrotor.yaml")]
        assert all(Path(f).is_file() for f in files)
