"""Flights from the policy node's recordings, and ``sim2real sysid`` on an MCAP file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import TRAINED_POLICY

pytest.importorskip("mcap", reason="the [ros2] extra (mcap) is not installed")
pytest.importorskip("cyclonedds", reason="the [ros2] extra (cyclonedds) is not installed")

from sim2real.cli.main import main  # noqa: E402
from sim2real.core.policy_file import OnnxPolicy  # noqa: E402
from sim2real.policies.world_model import Flight  # noqa: E402
from sim2real.ros_nodes import messages as m  # noqa: E402
from sim2real.ros_nodes.mcap_log import McapLogWriter  # noqa: E402
from sim2real.ros_nodes.recordings import flights_from_recording  # noqa: E402
from sim2real.sim.quadrotor import quat_to_rotmat  # noqa: E402
from sim2real.sim.quadrotor_obs import build_policy_obs  # noqa: E402
from sim2real.tasks.quadrotor_hover.env import Shift  # noqa: E402
from sim2real.tasks.quadrotor_hover.flight import fly

OBS, ACT, SETPOINT = "/cf1/policy/obs", "/cf1/policy/action", "/cf1/policy/setpoint_active"


def record(flight: Flight, path: Path, skip: tuple[int, ...] = (), setpoints: dict[int, tuple] | None = None,
           busy: range = range(0)) -> None:  # fmt: skip
    """The flight as the policy node logs it: each tick its observation, then its action (10 ms apart).

    ``setpoints`` {tick: point}: set-points taking effect at those ticks (logged on ``~/setpoint_active`` before
    the tick's observation, at its time, as the origin of its position error). ``busy``: ticks the recorder
    received late, in one burst after them, first all observations and then all actions (their publish times
    are still the ticks').
    """
    o = flight.odom
    setpoints = setpoints or {}
    origin = torch.zeros(o.shape[0], 3)
    for tick, point in sorted(setpoints.items()):
        origin[tick:] = torch.tensor(point)
    history = torch.full((o.shape[0], 32, 4), -1.0)
    for t in range(1, o.shape[0]):
        history[t] = torch.cat((history[t - 1, 1:], flight.action[t - 1][None]))
    obs = build_policy_obs(o[:, 0:3] - origin, quat_to_rotmat(o[:, 3:7]), o[:, 7:10], o[:, 10:13], history)
    backlog: dict[str, list] = {OBS: [], ACT: []}
    with McapLogWriter(path) as log:

        def write(topic: str, msg: object, ns: int, tick: int) -> None:
            if tick in busy:
                backlog[topic].append((msg, ns))
            else:
                log.write(topic, msg, log_time_ns=ns)
            if busy and tick == busy[-1]:  # the recorder takes one topic's queue, then the other's
                late = 10_000_000 * (busy[-1] + 1)
                for k, (queued, sent) in enumerate(backlog[OBS] + backlog[ACT]):
                    log.write(OBS if k < len(backlog[OBS]) else ACT, queued, log_time_ns=late + k, publish_time_ns=sent)

        for t in range(flight.steps + 1):
            if t in skip:
                continue
            ns = 10_000_000 * t
            if t in setpoints:
                log.write(SETPOINT, m.PointStamped(m.Header(frame_id="world"), m.Point(*setpoints[t])), log_time_ns=ns)
            write(OBS, m.Float32MultiArray.vector(obs[t].tolist(), "obs"), ns, t if t < flight.steps else -1)
            if t < flight.steps:
                write(ACT, m.Float32MultiArray.vector(flight.action[t].tolist(), "action"), ns + 1, t)


@pytest.fixture(scope="module")
def flight() -> Flight:
    return fly(OnnxPolicy(TRAINED_POLICY), 20.0, Shift(mass=1.25, thrust=0.9), seed=5)


def test_flights_are_read_back_and_cut_at_missed_ticks(flight: Flight, tmp_path: Path) -> None:
    path = tmp_path / "flight.mcap"
    record(flight, path, skip=(1200,))
    flights, report = flights_from_recording(path, OBS, ACT)
    assert report.dt == pytest.approx(0.01) and report.flights == 2 and report.gaps == 1 and report.complete
    assert [f.steps for f in flights] == [1199, flight.steps - 1201]  # the transition 1199 -> 1201 is dropped
    assert torch.allclose(flights[0].odom, flight.odom[:1200], atol=2e-6)  # the quaternion back from R
    assert torch.equal(flights[1].action, flight.action[1201:])


def test_a_busy_recorders_burst_is_read_in_publish_order(flight: Flight, tmp_path: Path) -> None:
    path = tmp_path / "burst.mcap"
    record(flight, path, busy=range(700, 720))  # 0.2 s of ticks received at once, topic after topic
    (whole,), report = flights_from_recording(path, OBS, ACT)
    assert report.gaps == 0 and report.dt == pytest.approx(0.01)
    assert torch.equal(whole.action, flight.action) and torch.allclose(whole.odom, flight.odom, atol=2e-6)


def test_positions_are_the_errors_plus_the_setpoint_in_force(flight: Flight, tmp_path: Path) -> None:
    path = tmp_path / "moving.mcap"
    record(flight, path, setpoints={0: (0.0, 0.0, 0.0), 500: (0.1, -0.1, 0.05), 1500: (-0.2, 0.0, 0.0)})
    (moving,), report = flights_from_recording(path, OBS, ACT, setpoint_topic=SETPOINT)
    assert report.setpoints == 3 and torch.allclose(moving.odom, flight.odom, atol=2e-6)
    (errors,), _ = flights_from_recording(path, OBS, ACT, setpoint_topic=None)  # without it: the position errors
    assert torch.allclose(errors.odom[600, :3], flight.odom[600, :3] - torch.tensor([0.1, -0.1, 0.05]), atol=1e-6)


def test_sysid_command_on_a_recording(flight: Flight, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "flight.mcap"
    record(flight, path)
    assert main(["sysid", str(path), "--bootstrap", "2", "--out", str(tmp_path / "sysid")]) == 0
    printed = capsys.readouterr().out
    assert "2000 transitions at 100 Hz in 1 flight(s)" in printed and "mass" in printed
    result = json.loads((tmp_path / "sysid" / "sysid.json").read_text())
    p = result["parameters"]
    assert p["mass"]["mean"] == pytest.approx(1.25, rel=0.05) and p["thrust"]["mean"] == pytest.approx(0.9, rel=0.05)
    assert result["prediction_error"]["fitted"]["50_step_m"] < 0.1 * result["prediction_error"]["prior"]["50_step_m"]


def test_sysid_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sysid", str(tmp_path / "none.mcap")]) == 2
    (tmp_path / "junk.mcap").write_bytes(b"not an mcap file")
    assert main(["sysid", str(tmp_path / "junk.mcap")]) == 2
    with McapLogWriter(tmp_path / "other.mcap") as log:
        log.write("/other", m.Bool(True), log_time_ns=1)
    assert main(["sysid", str(tmp_path / "other.mcap")]) == 2
    assert main(["sysid", str(tmp_path / "other.mcap"), "--horizon", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 4 and "no (obs, action, next_obs) triple" in err
