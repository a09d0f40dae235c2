"""The package's structure: layers import in one direction, no import cycles, a light robot side.

Every ``import`` statement of the package is read (module level, inside functions and under ``TYPE_CHECKING``
alike), so a lazy import cannot hide an upward dependency or a cycle. The layers, bottom up, are those of
``docs/architecture.md``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, TRAINED_POLICY

PACKAGE = REPO / "sim2real"
#: Top-level sub-package -> layer (a module imports only from its own layer or below).
LAYERS = {
    "core": 1,
    "sim": 2,
    "policies": 3,
    "tasks": 4,
    "export": 5,
    "eval": 6,
    "mcu": 6,
    "ros_nodes": 6,
    "cli": 7,
}
#: What the robot side (ROS 2 nodes, HIL) must never load: the learning code, the exporter, physics engines.
ROBOT_FORBIDDEN = ("sim2real.policies", "sim2real.export", "mujoco", "mujoco_warp", "warp", "tensorboard")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The sim2real modules that ``name`` imports (``from pkg import mod`` resolves to the module)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t.split(".")[0] == "sim2real" and t != name)
    return found


GRAPH = {name: {t for t in _imports(name, path) if t in MODULES} for name, path in MODULES.items()}


def _layer(module: str) -> tuple[int, str]:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    if top not in LAYERS:  # the package root (its version) and nothing else lives at the bottom
        assert module == "sim2real", f"{module} is in no layer: add its package to LAYERS and docs/architecture.md"
        return 0, ""
    return LAYERS[top], top


def test_every_subpackage_has_a_layer() -> None:
    tops = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert tops == set(LAYERS), f"packages without a layer: {tops - set(LAYERS)}; stale layers: {set(LAYERS) - tops}"


def test_layers_import_downward_only() -> None:
    bad = []
    for src, targets in GRAPH.items():
        (ls, ps) = _layer(src)
        for dst in targets:
            (ld, pd) = _layer(dst)
            if ld > ls or (ld == ls == 6 and pd != ps):  # the layer-6 packages are independent of one another
                bad.append(f"{src} (layer {ls}) imports {dst} (layer {ld})")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over every import of the package: each must be one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_layer_check_sees_lazy_and_upward_imports(tmp_path: Path) -> None:
    """The checker itself: a function-level import is an edge, and an upward one would be reported."""
    assert "sim2real.policies.runner" in GRAPH["sim2real.tasks.quadrotor_hover"]  # lazy, inside train_defaults
    assert _layer("sim2real.tasks.gym_mujoco") > _layer("sim2real.policies.sac")


def _run_isolated(code: str, timeout: float = 120.0) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


_REPORT = (
    "import json, sys; "
    f"bad = sorted(m for m in sys.modules if m.startswith({ROBOT_FORBIDDEN!r})); "
    "print(json.dumps({'rc': rc, 'bad': bad, 'tasks': sorted(m for m in sys.modules if m.startswith('sim2real.tasks'))}))"
)


def test_policy_node_starts_without_training_code_or_a_physics_engine() -> None:
    """The real node process: started with a policy, run for a second, stopped; what did it import?"""
    pytest.importorskip("cyclonedds", reason="the [ros2] extra (cyclonedds) is not installed")
    code = (
        "import os, signal, threading\n"
        "from sim2real.ros_nodes import policy_node\n"
        "threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()\n"
        f"rc = policy_node.main(['--ros-args', '-p', 'policy_path:={TRAINED_POLICY}', '-r', '__ns:=/arch_test'])\n"
        + _REPORT
    )
    report = _run_isolated(code)
    assert report["rc"] == 0 and report["bad"] == [], report
    assert report["tasks"] == [], report  # the observation builder comes from the light sim module


def test_hil_and_the_simulated_robot_load_no_training_code() -> None:
    code = "import sim2real.mcu.hil, sim2real.ros_nodes.sim_robot_node, sim2real.ros_nodes.recorder_node\nrc = 0\n"
    pytest.importorskip("cyclonedds", reason="the [ros2] extra (cyclonedds) is not installed")
    report = _run_isolated(code + _REPORT)
    assert report["bad"] == [], report


def test_policy_file_module_imports_no_torch() -> None:
    """The robot's reader of policy.onnx stays light: no torch, no training code (onnx only when a file is read)."""
    report = _run_isolated(
        "import sys, json; import sim2real.core.policy_file; "
        "print(json.dumps({'torch': 'torch' in sys.modules, 'onnx': 'onnx' in sys.modules, "
        "'sim2real': sorted(m for m in sys.modules if m.startswith('sim2real'))}))"
    )
    assert report == {"torch": False, "onnx": False,
                      "sim2real": ["sim2real", "sim2real.core", "sim2real.core.files", "sim2real.core.obs",
                                   "sim2real.core.policy_file"]}  # fmt: skip


def test_readme_map_and_docs_name_every_module_and_package() -> None:
    """The README's architecture map lists every module, docs/architecture.md every package with its layer."""
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index("## Architecture") :]
    block = block[: block.index("\n## ", 1)]
    missing = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                     if p.name != "__init__.py" and p.name not in block)  # fmt: skip
    assert not missing, f"modules missing from the README's architecture map: {missing}"
    doc = (REPO / "docs" / "architecture.md").read_text()
    for top in LAYERS:
        assert f"`{top}/`" in doc, f"docs/architecture.md does not describe {top}/"
