"""The policy file reader and runtime: typed metadata, clear errors, no training code needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import TRAINED_POLICY

from sim2real.core.files import CheckpointError
from sim2real.core.obs import ObsGroup, ObsTerm
from sim2real.core.policy_file import (
    FLAT_KEYS,
    METADATA_KEY,
    OnnxPolicy,
    PolicyMetadata,
    metadata_props,
    read_metadata,
)


def test_reads_a_file_written_by_an_earlier_version() -> None:
    """tests/data/quadrotor_hover.onnx was exported before the typed reader existed: its JSON reads as is."""
    meta = read_metadata(TRAINED_POLICY)
    assert meta.task == "quadrotor-hover" and (meta.obs_dim, meta.act_dim) == (146, 4)
    assert meta.control_rate_hz == 100.0 and meta.action_history == (18, 128) and meta.action_history_length == 32
    assert meta.obs_layout.names[-1] == "action_history" and meta.robot["model"] == "crazyflie-paper"
    raw = json.loads({p.key: p.value for p in onnx.load(TRAINED_POLICY).metadata_props}[METADATA_KEY])
    assert meta.to_json() == raw  # nothing lost or reordered: the writer produces exactly this JSON
    props = metadata_props(meta)
    assert set(props) == {METADATA_KEY, *FLAT_KEYS} and props["obs_dim"] == "146"
    policy = OnnxPolicy(TRAINED_POLICY)
    out = policy(np.zeros((3, 146), np.float32))
    assert out.shape == (3, 4) and out.dtype == np.float32 and policy.metadata == meta


def _meta(**changes: object) -> dict:
    d = read_metadata(TRAINED_POLICY).to_json()
    d.update(changes)
    return d


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": 99}, "newer"),
        ({"obs_dim": 145}, "obs_layout covers 146 values, obs_dim is 145"),
        ({"control_rate_hz": 500.0}, "does not match control_dt"),
        ({"control_dt": 0.0}, "control_dt > 0"),
        ({"obs_layout": [{"name": "x", "start": 1, "size": 146}]}, "not contiguous"),
        ({"robot": [1, 2]}, "robot must be an object"),
        ({"action_bounds": "wide"}, "invalid"),
    ],
)
def test_bad_metadata_is_a_clear_error(changes: dict, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        PolicyMetadata.from_json(_meta(**changes), "f.onnx")


def test_missing_keys_and_files(tmp_path: Path) -> None:
    d = _meta()
    del d["task"], d["control_dt"]
    with pytest.raises(CheckpointError, match="lacks task, control_dt"):
        PolicyMetadata.from_json(d)
    with pytest.raises(CheckpointError, match="not found"):
        read_metadata(tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        OnnxPolicy(tmp_path / "junk.onnx")


def test_action_history_needs_whole_actions_at_the_end() -> None:
    def meta(*terms: tuple[str, int]) -> PolicyMetadata:
        g = ObsGroup.of(*(ObsTerm(n, s) for n, s in terms))
        return PolicyMetadata(task="t", obs_dim=g.dim, obs_layout=g, act_dim=4, control_dt=0.02)

    assert meta(("s", 2), ("action_history", 8)).action_history == (2, 8)
    assert meta(("action_history", 8), ("s", 2)).action_history is None
    assert meta(("s", 4), ("action_history", 6)).action_history is None
    assert meta(("s", 4)).action_history_length is None and meta(("s", 4)).control_rate_hz == 50.0
