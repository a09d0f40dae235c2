"""The safety limits: margins of states, set-points inside the set-point box, files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sim2real.sim.quadrotor import OMEGA, POS, QUAT, VEL
from sim2real.sim.safety import SafetyLimits


def _hover(n: int = 1) -> torch.Tensor:
    s = torch.zeros(n, 13)
    s[:, QUAT.start] = 1.0
    return s


def test_margin_is_one_at_home_and_crosses_zero_at_each_limit() -> None:
    lim, home = SafetyLimits(), torch.zeros(3)
    assert float(lim.margins(_hover(), home)[0]) == pytest.approx(1.0)
    s = _hover(5)
    s[0, POS.start + 1] = 1.2 * lim.position_box_m  # beyond the box on y
    s[1, POS.start] = 0.5 * lim.position_box_m  # inside: half the margin left
    angle = math.radians(1.1 * lim.max_tilt_deg)  # tilted about x beyond the limit
    s[2, QUAT] = torch.tensor([math.cos(angle / 2), math.sin(angle / 2), 0.0, 0.0])
    s[3, VEL] = torch.tensor([1.0, 1.0, 1.0]) * lim.max_speed_mps  # |v| = sqrt(3) x the limit
    s[4, OMEGA.start + 2] = -1.5 * lim.max_body_rate_radps
    m = lim.margins(s, home)
    assert m[1] == pytest.approx(0.5) and bool((m[[0, 2, 3, 4]] < 0).all())
    assert float(lim.margins(_hover(), torch.tensor([0.0, 0.0, 2 * lim.position_box_m]))[0]) < 0  # relative to home


def test_non_finite_states_have_no_margin() -> None:
    s = _hover(2)
    s[1, VEL.start] = math.nan
    m = SafetyLimits().margins(s, torch.zeros(3))
    assert m[0] == pytest.approx(1.0) and m[1] == -math.inf


def test_setpoints_outside_the_setpoint_box_are_refused() -> None:
    lim, home = SafetyLimits(), torch.tensor([1.0, 2.0, 1.0])
    assert lim.setpoint_problem(home + 0.9 * lim.setpoint_box_m, home) == ""
    assert "setpoint_box_m" in lim.setpoint_problem(home + torch.tensor([0.0, 0.0, 1.1 * lim.setpoint_box_m]), home)
    assert "finite" in lim.setpoint_problem(torch.tensor([math.nan, 0.0, 0.0]), home)


@pytest.mark.parametrize(
    ("text", "message"),
    [("max_tilt_deg: -5\n", "must be > 0"), ("speed: 3\n", "expected a mapping"), ("position_box_m: .nan\n", "finite"),
     ("setpoint_box_m: 0.9\n", "smaller than position_box_m"), ("action_min: 0.5\naction_max: 0.2\n", "action_min"),
     ("[\n", "not YAML")],
)  # fmt: skip
def test_bad_limit_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "limits.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        SafetyLimits.from_yaml(path)


def test_a_limits_file_overrides_some_fields(tmp_path: Path) -> None:
    path = tmp_path / "limits.yaml"
    path.write_text("max_speed_mps: 1.5\n")
    assert SafetyLimits.from_yaml(path) == SafetyLimits(max_speed_mps=1.5)
    with pytest.raises(FileNotFoundError):
        SafetyLimits.from_yaml(tmp_path / "none.yaml")
