"""Shifted quadrotors (config/shifts/) and their flights, the stand-in for a real robot."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import REPO

from sim2real.tasks.quadrotor_hover.env import (
    DisturbanceConfig,
    DomainRandomization,
    HoverConfig,
    QuadrotorHoverEnv,
    Shift,
)
from sim2real.tasks.quadrotor_hover.flight import fly


def test_shipped_shifts_load_and_apply() -> None:
    shifts = {p.stem: Shift.from_yaml(p) for p in sorted((REPO / "config" / "shifts").glob("*.yaml"))}
    assert set(shifts) == {"all", "heavy_weak", "slow_motors", "wind", "wind_strong"}
    assert shifts["all"] == Shift(mass=1.25, thrust=0.9, motor_tau=1.6, wind=(0.08, 0.0, 0.0))
    calm = HoverConfig(num_envs=2, dr=DomainRandomization(enabled=False), disturbance=DisturbanceConfig(0.0, 0.0))
    nominal = QuadrotorHoverEnv(calm)
    shifted = QuadrotorHoverEnv(calm, shift=shifts["all"])
    ratio = shifted.get_params()[0, [0, 6, 8]] / nominal.get_params()[0, [0, 6, 8]]
    assert torch.allclose(ratio, torch.tensor([1.25, 0.9, 1.6]))
    weight = nominal.model.mass * nominal.model.gravity
    assert torch.allclose(shifted.f_dist, torch.tensor([[0.08 * weight, 0.0, 0.0]] * 2))  # the wind, every episode


@pytest.mark.parametrize(
    ("text", "message"),
    [("mass: -1\n", "positive factor"), ("colour: red\n", "unexpected keyword"), ("[1, 2]\n", "mapping"),
     ("wind: [1, 2]\n", "3 finite numbers"), ("mass: [\n", "not YAML")],
)  # fmt: skip
def test_bad_shift_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "shift.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        Shift.from_yaml(path)
    with pytest.raises(FileNotFoundError):
        Shift.from_yaml(tmp_path / "none.yaml")


def test_a_flight_logs_odometry_and_the_commands_actually_sent() -> None:
    calls = []

    def policy(obs: torch.Tensor) -> torch.Tensor:
        calls.append(obs.shape)
        return torch.full((1, 4), 2.0)  # out of range: the flight logs what the motors got

    flight = fly(policy, 0.5, Shift(wind=(0.0, 0.05, 0.0)), seed=1)
    assert flight.odom.shape == (51, 13) and flight.action.shape == (50, 4) and flight.dt == 0.01
    assert bool((flight.action == 1.0).all()) and calls[0] == (1, 146)
    with pytest.raises(ValueError, match="seconds"):
        fly(policy, 0.0)
