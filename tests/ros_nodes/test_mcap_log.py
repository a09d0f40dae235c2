"""MCAP robot logs: rosbag2 layout checked by an independent decoder, crash safety under SIGKILL, transitions."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mcap", reason="the [ros2] extra (mcap) is not installed")
pytest.importorskip("cyclonedds", reason="the [ros2] extra (cyclonedds) is not installed")

from sim2real.ros_nodes import messages as m  # noqa: E402
from sim2real.ros_nodes.mcap_log import McapLogWriter, ReadReport, read_messages, read_transitions  # noqa: E402


def _odom(i: int) -> m.Odometry:
    pose = m.PoseWithCovariance(m.Pose(m.Point(0.01 * i, 0.0, 1.0), m.Quaternion(0.0, 0.0, 0.0, 1.0)))
    return m.Odometry(m.Header(m.Time(i, 5), "world"), "base_link", pose)


def test_rosbag2_layout_read_by_the_mcap_ros2_decoder(tmp_path: Path) -> None:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    path = tmp_path / "log.mcap"
    with McapLogWriter(path) as w:
        for i in range(50):
            w.write("/cf/odom", _odom(i), log_time_ns=1_000 + i)
            w.write("/cf/rpm", m.Float32MultiArray.vector([float(i)] * 4, "motor"), log_time_ns=1_000 + i)
        w.write("/diagnostics", m.DiagnosticArray(m.Header(), [m.DiagnosticStatus(m.DiagnosticStatus.WARN, "p", "x")]))
    with path.open("rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == "ros2" and reader.get_summary().statistics.message_count == 101
        decoded = list(reader.iter_decoded_messages())
    schemas = {s.name: s.encoding for s, *_ in decoded}
    assert schemas == {"nav_msgs/msg/Odometry": "ros2msg", "std_msgs/msg/Float32MultiArray": "ros2msg",
                       "diagnostic_msgs/msg/DiagnosticArray": "ros2msg"}  # fmt: skip
    odom = [d for s, c, _, d in decoded if c.topic == "/cf/odom"]
    assert [o.header.stamp.sec for o in odom] == list(range(50)) and odom[7].pose.pose.position.x == pytest.approx(0.07)
    assert all(c.message_encoding == "cdr" for _, c, _, _ in decoded)
    report = ReadReport()
    ours = list(read_messages(path, report=report))
    assert report.complete and report.messages == 101 and ours[0].msg == _odom(0) and ours[0].log_time_ns == 1_000


def test_transitions_pair_obs_action_next_obs(tmp_path: Path) -> None:
    path = tmp_path / "t.mcap"
    with McapLogWriter(path) as w:
        for i in range(10):
            w.write("/p/obs", m.Float32MultiArray.vector([float(i)] * 3), log_time_ns=10 * i)
            if i != 4:  # tick 4: no command (e.g. the watchdog held the safe output)
                w.write("/p/action", m.Float32MultiArray.vector([-float(i)] * 2), log_time_ns=10 * i + 1)
    tr = read_transitions(path, "/p/obs", "/p/action")
    ticks = [0, 1, 2, 3, 5, 6, 7, 8]  # the last observation has no successor, tick 4 no action
    assert tr["obs"][:, 0].tolist() == ticks and tr["next_obs"][:, 0].tolist() == [t + 1 for t in ticks]
    assert tr["action"][:, 0].tolist() == [-t for t in ticks] and tr["log_time_ns"].tolist() == [10 * t for t in ticks]
    with pytest.raises(ValueError, match="no \\(obs, action, next_obs\\)"):
        read_transitions(path, "/p/obs", "/nothing")


WRITER = textwrap.dedent(
    """
    import sys
    from sim2real.ros_nodes import messages as m
    from sim2real.ros_nodes.mcap_log import McapLogWriter
    w = McapLogWriter(sys.argv[1], chunk_bytes=1 << 20, flush_interval_s=0.02)
    flushes, i = 0, 0
    while True:
        w.write("/odom", m.Odometry(m.Header(m.Time(i, 0), "world")), log_time_ns=i)
        i += 1
        if w.flushes != flushes:  # everything before this message is in the OS now
            flushes = w.flushes
            print(i, flush=True)
    """
)


def test_sigkill_loses_at_most_the_chunk_in_progress(tmp_path: Path) -> None:
    path = tmp_path / "killed.mcap"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        flushed = 0
        while flushed < 2000:
            line = proc.stdout.readline()
            assert line, "the writer died"
            flushed = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    report = ReadReport()
    secs = [msg.msg.header.stamp.sec for msg in read_messages(path, report=report)]
    assert not report.complete and report.error  # no footer: the process never closed the file
    assert len(secs) >= flushed and secs == list(range(len(secs)))  # every flushed message, in order, intact


def test_truncated_file_reads_up_to_the_last_complete_chunk(tmp_path: Path) -> None:
    path = tmp_path / "full.mcap"
    with McapLogWriter(path, chunk_bytes=2_000) as w:
        for i in range(300):
            w.write("/odom", _odom(i), log_time_ns=i)
    data = path.read_bytes()
    rng = np.random.default_rng(0)
    for cut in sorted(rng.integers(200, len(data) - 1, 8)):
        torn = tmp_path / f"torn_{cut}.mcap"
        torn.write_bytes(data[:cut])
        report = ReadReport()
        secs = [msg.msg.header.stamp.sec for msg in read_messages(torn, report=report)]
        assert not report.complete and secs == list(range(len(secs)))
    full = ReadReport()
    assert len(list(read_messages(path, report=full))) == 300 and full.complete


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(read_messages(tmp_path / "missing.mcap"))
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not an mcap file at all")
    with pytest.raises(ValueError, match="not an MCAP file"):
        list(read_messages(junk))
    with pytest.raises(FileExistsError):
        McapLogWriter(junk)
    with McapLogWriter(tmp_path / "x.mcap") as w:
        w.write("/a", m.Bool(True))
        with pytest.raises(TypeError, match="recorded as Bool"):
            w.write("/a", m.String("x"))
    with pytest.raises(ValueError, match="closed"):
        w.write("/a", m.Bool(False))
