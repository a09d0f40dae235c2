"""Flights of a quadrotor from the policy node's recordings, for system identification and finetuning.

The policy node publishes, every tick that ran the policy, the observation it fed the policy (``~/obs``) and the
action it commanded (``~/action``); :func:`~sim2real.ros_nodes.mcap_log.read_transitions` pairs them. The
observation holds the sensed state in the quadrotor layout (:mod:`sim2real.sim.quadrotor_obs`), from which the
odometry is read back; its position error plus the set-point in force (``~/setpoint_active``, latched, recorded
whenever it changes) is the position. All times are the messages' publish times (when the policy node wrote them,
not when a possibly busy recorder received them). The chain of ticks is cut where a tick is missing (a gap in the
publish times longer than ``max_gap`` control periods, or a tick without an action), so every
:class:`~sim2real.policies.world_model.Flight` is contiguous. Closed chunks of a recording still being written are
read too (the reader tolerates a torn end).

Not a module of the policy node: it loads the learning code (the ``Flight`` type) and is for the learning side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sim2real.policies.world_model import Flight
from sim2real.ros_nodes.mcap_log import ReadReport, read_messages, read_transitions
from sim2real.sim.quadrotor_obs import odometry_from_policy_obs, sensor_group

DEFAULT_OBS_TOPIC = "/cf1/policy/obs"
DEFAULT_ACTION_TOPIC = "/cf1/policy/action"
DEFAULT_SETPOINT_TOPIC = "/cf1/policy/setpoint_active"


@dataclass
class RecordingReport:
    """What was read: transitions, the control period found, the flights, the cuts and the file's state."""

    transitions: int = 0
    dt: float = 0.0
    flights: int = 0
    gaps: int = 0
    """Transitions dropped because ticks were missed inside them."""
    setpoints: int = 0
    """Set-point messages found (0: the position error is taken as the position, a constant set-point)."""
    complete: bool = True
    topics: dict[str, int] = field(default_factory=dict)


def flights_from_recording(
    path: str | Path, obs_topic: str = DEFAULT_OBS_TOPIC, action_topic: str = DEFAULT_ACTION_TOPIC,
    dt: float | None = None, max_gap: float = 1.5, setpoint_topic: str | None = DEFAULT_SETPOINT_TOPIC,
    since_ns: int = 0, until_ns: int | None = None,
) -> tuple[list[Flight], RecordingReport]:  # fmt: skip
    """The contiguous flights in an MCAP recording of the policy node.

    Args:
        path: the ``.mcap`` file (the recorder's; a rosbag2 directory's ``.mcap`` works the same).
        obs_topic: the policy node's ``~/obs`` as recorded.
        action_topic: the policy node's ``~/action`` as recorded.
        dt: the control period [s]; default: the median spacing of the published observations.
        max_gap: a spacing above ``max_gap * dt`` (a missed tick, a pause) ends a flight.
        setpoint_topic: the policy node's ``~/setpoint_active``; None (or absent from the file): positions are the
            position errors.
        since_ns: only the ticks published at or after this time (ns since the epoch).
        until_ns: only the ticks published before this time (None: to the end).

    Raises:
        FileNotFoundError: missing file. ValueError: not an MCAP file, no transition on the topics, or an
        observation that is not a quadrotor one.
    """
    read = ReadReport()
    data = read_transitions(path, obs_topic, action_topic, read)
    if since_ns or until_ns is not None:
        t = data["publish_time_ns"]
        keep = (t >= since_ns) & (t < (until_ns if until_ns is not None else np.iinfo(np.int64).max))
        data = {k: v[keep] for k, v in data.items()}
    t_ns = data["publish_time_ns"]
    steps = np.diff(t_ns) / 1e9
    period = float(dt if dt is not None else (np.median(steps) if len(steps) else 0.0))
    if not period > 0:
        raise ValueError(f"{path}: cannot tell the control period from {len(t_ns)} transition(s); pass dt")
    obs = torch.as_tensor(data["obs"])
    nxt = torch.as_tensor(data["next_obs"])
    act = torch.as_tensor(data["action"])
    # transition i is (obs_i, action_i, next_obs_i); transition i + 1 continues it when obs_{i+1} is next_obs_i, and
    # then their publish times tell how long transition i took: longer than max_gap periods means missed ticks inside
    follows = (obs[1:] == nxt[:-1]).all(1).numpy()  # (n - 1,)
    valid = np.ones(len(obs), bool)
    valid[:-1] = ~follows | (steps <= max_gap * period)
    target = torch.zeros(len(obs) + 1, 3)  # the set-point in force at obs_i (and, last, at the final next_obs)
    found = sorted((x.publish_time_ns, (x.msg.point.x, x.msg.point.y, x.msg.point.z))
                   for x in (read_messages(path, {setpoint_topic}) if setpoint_topic else ()))  # fmt: skip
    sp_t, sp = [t for t, _ in found], [p for _, p in found]
    if sp:  # the set-point in force at each observation (the latest one published at or before it)

        def origin(times: np.ndarray) -> torch.Tensor:
            k = np.searchsorted(np.asarray(sp_t), times, side="right") - 1
            return torch.tensor(np.asarray(sp)[np.maximum(k, 0)], dtype=obs.dtype)

        obs, nxt, pos = obs.clone(), nxt.clone(), sensor_group().slice("position_error")
        obs[:, pos] += origin(t_ns)
        nxt[:, pos] += origin(t_ns + int(period * 1e9))
        target = torch.cat((origin(t_ns), origin(t_ns[-1:] + int(period * 1e9)))).float()
    flights, start = [], None
    for i in range(len(obs) + 1):
        cont = i < len(obs) and valid[i] and start is not None and follows[i - 1] and valid[i - 1]
        if start is not None and not cont:  # the run [start, i) ends
            rows = torch.cat((obs[start:i], nxt[i - 1 : i]))
            goal = torch.cat((target[start:i], target[i : i + 1] if i < len(obs) else target[-1:]))
            flights.append(Flight(odometry_from_policy_obs(rows), act[start:i], period, goal))
            start = None
        if i < len(obs) and valid[i] and start is None:
            start = i
    report = RecordingReport(transitions=len(obs), dt=period, flights=len(flights), gaps=int((~valid).sum()),
                             setpoints=len(sp), complete=read.complete, topics=dict(read.topics))  # fmt: skip
    return flights, report
