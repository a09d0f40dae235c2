"""The finetuning loop on a simulated robot with shifted physics: end to end, the gate, rollback, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import PRETRAINED, TRAINED_POLICY

from sim2real.core.files import CheckpointError
from sim2real.export.onnx import export_onnx
from sim2real.policies.finetune import FinetuneConfig, Finetuner, load_pretrained
from sim2real.policies.world_model import Flight, NotEnoughData, WorldModelConfig
from sim2real.tasks.quadrotor_hover.env import Shift
from sim2real.tasks.quadrotor_hover.flight import SimulatedRobot

HEAVY = Shift(mass=1.25, thrust=0.9)


def _small(**kw) -> FinetuneConfig:
    """A loop that runs in seconds: 2 iterations of 2 s, a few imagined steps and updates."""
    base = dict(max_real_s=4.0, seconds_per_iteration=2.0, imagined_envs=32, imagined_steps=10, updates_per_step=2,
                select_every=5, select_episodes=8, gate_episodes=16, gate_seconds=0.5, horizon=(5, 10), horizon_ramp=1,
                world_model=WorldModelConfig(iterations=2, windows=64, bootstrap=2, burn_in_s=0.5))  # fmt: skip
    return FinetuneConfig(**{**base, **kw})


def _run(tmp_path: Path, cfg: FinetuneConfig) -> tuple[dict, SimulatedRobot]:
    robot = SimulatedRobot(HEAVY, seed=0)
    robot.deploy(TRAINED_POLICY)
    ft = Finetuner(cfg, load_pretrained(PRETRAINED), robot, lambda c, o: export_onnx(c, o), tmp_path, TRAINED_POLICY,
                   quiet=True)  # fmt: skip
    return ft.run(), robot


def test_the_loop_flies_fits_imagines_gates_and_reports(tmp_path: Path) -> None:
    report, robot = _run(tmp_path, _small())
    assert report["real_s"] == pytest.approx(4.0) and len(report["iterations"]) == 2
    assert robot.violation_steps == 0 and report["real_min_margin"] > 0
    first = report["iterations"][0]
    assert all(0.3 < v["mean"] < 3.0 for k, v in first["parameters"].items() if not k.startswith(("force", "torque")))
    for key in ("real_error_m", "gate", "prediction_error", "sac/critic_loss", "imagination/horizon"):
        assert key in first
    assert [r["imagination/horizon"] for r in report["iterations"]] == [5.0, 10.0]  # ramped
    assert (tmp_path / "finetune_report.json").is_file() and (tmp_path / "finetune.png").stat().st_size > 1000
    assert list(tmp_path.glob("events.out.tfevents.*"))
    accepted = [r["iteration"] for r in report["iterations"] if r["gate"]["accepted"]]
    for i in accepted:  # every accepted candidate was exported (parity-checked) and handed over
        assert (tmp_path / "policies" / f"iter{i:02d}.onnx").is_file()
    if accepted:
        assert robot.deployed_file == tmp_path / "policies" / f"iter{accepted[-1]:02d}.onnx"


def test_a_candidate_that_fails_the_gate_is_never_deployed(tmp_path: Path) -> None:
    report, robot = _run(tmp_path, _small(gate_improvement=1.0))  # would need a predicted error of 0
    assert report["accepted"] == 0 and robot.deployed_file == TRAINED_POLICY
    assert all("not 100% below" in " ".join(r["gate"]["reasons"]) for r in report["iterations"])
    assert not (tmp_path / "policies").exists()


def test_a_policy_that_flies_worse_than_its_predecessor_is_rolled_back(tmp_path: Path) -> None:
    # the actor does not move (lr 0), so every candidate passes a gate that asks for no improvement; a rollback
    # threshold of -99 % calls any new policy worse than its predecessor
    cfg = _small(max_real_s=6.0, actor_lr=0.0, gate_improvement=-100.0, gate_min_margin=-100.0, rollback_threshold=-0.99)
    report, robot = _run(tmp_path, cfg)
    rows = report["iterations"]
    assert rows[0]["gate"]["accepted"] and rows[1]["rolled_back"] and report["rollbacks"] >= 1
    assert rows[1]["deployed"].endswith("iter00.onnx")  # iteration 1 flew iteration 0's policy...
    new = [tmp_path / "policies" / f"iter{i:02d}.onnx" for i in range(3)]  # ...each new one rolled back in turn
    assert robot.deployments == [TRAINED_POLICY, new[0], TRAINED_POLICY, new[1], TRAINED_POLICY, new[2]]


def test_a_checkpoint_that_does_not_match_the_policy_is_refused(tmp_path: Path) -> None:
    ckpt = torch.load(PRETRAINED, weights_only=True)
    weight = next(k for k in ckpt["agent"]["actor"] if k.endswith("weight"))
    ckpt["agent"]["actor"][weight] = ckpt["agent"]["actor"][weight] * 1.5
    other = tmp_path / "other.pt"
    torch.save(ckpt, other)
    robot = SimulatedRobot(HEAVY)
    with pytest.raises(CheckpointError, match="does not match the policy"):
        Finetuner(_small(), load_pretrained(other), robot, export_onnx, tmp_path, TRAINED_POLICY)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_pretrained(tmp_path / "junk.pt")


def test_bad_settings_are_clear_errors(tmp_path: Path) -> None:
    robot = SimulatedRobot(HEAVY)
    pre = load_pretrained(PRETRAINED)
    bad = ((_small(seconds_per_iteration=0.0), "seconds_per_iteration"), (_small(real_fraction=1.0), "real_fraction"),
           (_small(setpoint_range_m=0.4), "setpoint_box_m"))  # fmt: skip
    for cfg, message in bad:
        with pytest.raises(ValueError, match=message):
            Finetuner(cfg, pre, robot, export_onnx, tmp_path, TRAINED_POLICY)


def test_twenty_real_seconds_make_the_heavy_quadrotor_fly_better_without_a_violation(tmp_path: Path) -> None:
    """The acceptance in short (the full one is benchmarks/finetune.py): default settings, 20 s of real flight."""
    from sim2real.core.policy_file import OnnxPolicy
    from sim2real.tasks.quadrotor_hover.env import HoverConfig
    from sim2real.tasks.quadrotor_hover.evaluation import hover_metrics, rollout_hover

    report, robot = _run(tmp_path, FinetuneConfig(max_real_s=20.0))

    def error(path: Path) -> float:
        traj = rollout_hover(OnnxPolicy(path), "nominal", 100, 0, HoverConfig(shift=HEAVY))
        return hover_metrics(traj)["pos_error_all_last2s_m"]

    before, after = error(TRAINED_POLICY), error(Path(report["deployed"]))
    assert report["accepted"] >= 1 and robot.violation_steps == 0
    assert after < before - 0.02, (before, after)  # measured: 0.111 m -> 0.07 m


class _ChoppyRobot(SimulatedRobot):
    """Its first flight comes back cut into 20-step pieces (a control loop missing every 21st tick)."""

    def fly(self, schedule):  # noqa: ANN001, ANN201
        flights = super().fly(schedule)
        if len(self.deployments) > 1 or getattr(self, "_chopped", False):
            return flights
        self._chopped = True
        return [Flight(f.odom[a : a + 21], f.action[a : a + 20], f.dt, f.target[a : a + 21])  # type: ignore[index]
                for f in flights for a in range(0, f.steps - 20, 21)]  # fmt: skip


def test_a_flight_too_choppy_to_fit_is_flown_again(tmp_path: Path) -> None:
    robot = _ChoppyRobot(HEAVY, seed=0)
    robot.deploy(TRAINED_POLICY)
    ft = Finetuner(_small(max_real_s=4.0), load_pretrained(PRETRAINED), robot, lambda c, o: export_onnx(c, o), tmp_path,
                   TRAINED_POLICY, quiet=True)  # fmt: skip
    report = ft.run()
    first, second = report["iterations"]
    assert "parameters" not in first and "not fitted: no 10-step window" in first["gate"]["reasons"][0]
    assert "parameters" in second and report["real_s"] == pytest.approx(3.8)
    robot = _ChoppyRobot(HEAVY, seed=0)
    robot.deploy(TRAINED_POLICY)
    with pytest.raises(NotEnoughData, match="no flight of the 2.0 s flown"):  # only the choppy flight: never fitted
        Finetuner(_small(max_real_s=2.0), load_pretrained(PRETRAINED), robot, lambda c, o: export_onnx(c, o),
                  tmp_path / "b", TRAINED_POLICY, quiet=True).run()  # fmt: skip
