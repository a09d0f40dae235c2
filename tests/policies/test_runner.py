"""The SAC training runner: determinism, checkpoints, exact resume, replay semantics, run directory, failures."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from helpers import assert_tree_equal, tiny_cfg

from sim2real.core.config import config_to_dict
from sim2real.core.files import CheckpointError, atomic_torch_save, load_checkpoint
from sim2real.policies.runner import Runner, make_env

TASK = "quadrotor-hover"


def assert_same_training_state(a: Runner, b: Runner) -> None:
    sa, sb = a.agent.state_dict(), b.agent.state_dict()
    assert_tree_equal(sa["actor"], sb["actor"], "actor")
    assert_tree_equal(sa["optimizer"], sb["optimizer"], "optimizer")
    assert_tree_equal(sa, sb, "agent")
    assert_tree_equal(a.replay.state_dict(), b.replay.state_dict(), "replay")
    assert_tree_equal(a.env.state_dict(), b.env.state_dict(), "env")
    assert a.env_steps == b.env_steps and a.update_credit == b.update_credit


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    """One tiny 800-step run (seed 0, replay saved), shared by the read-only tests below."""
    runner = Runner(tiny_cfg(tmp_path_factory.mktemp("runs"), save_replay=True), quiet=True)
    summary = runner.train()
    assert summary["env_steps"] == 800
    return runner


# ----------------------------------------------------------------------------------------------- determinism
def test_same_seed_same_weights_different_seed_different(trained: Runner, tmp_path: Path) -> None:
    again = Runner(tiny_cfg(tmp_path, save_replay=True), quiet=True)
    again.train()
    assert trained.agent.num_updates == again.agent.num_updates == (800 - 200) // 8 + 1  # from env step 200 on
    assert_same_training_state(trained, again)
    other = Runner(tiny_cfg(tmp_path, seed=1), quiet=True)
    other.train()
    actor_a, actor_o = trained.agent.actor.state_dict(), other.agent.actor.state_dict()
    assert any(not torch.equal(actor_a[k], actor_o[k]) for k in actor_a)
    assert again.run_dir != trained.run_dir and other.run_dir != again.run_dir  # separate run directories


# ----------------------------------------------------------------------------------------------- run directory
def test_run_directory_layout(trained: Runner) -> None:
    summary = json.loads((trained.run_dir / "summary.json").read_text())
    run_dir = Path(summary["run_dir"])
    assert run_dir == trained.run_dir
    log_dir = Path(trained.cfg.log_dir)
    assert run_dir.parent == log_dir / TASK
    assert run_dir.name.endswith("_sac_s0")
    events = list(run_dir.glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    cfg_file = run_dir / "config.yaml"
    assert cfg_file.is_file()
    assert yaml.safe_load(cfg_file.read_text()) == config_to_dict(trained.cfg)
    assert (run_dir / "checkpoint.pt").is_file() and (run_dir / "replay.pt").is_file()
    assert summary["env_steps"] == 800 and summary["task"] == TASK and summary["updates"] == 76
    assert summary["replay_ratio"] == 1.0 * 32 / 8  # updates per vector step * batch / envs
    assert [h["env_steps"] for h in trained.history] == [400.0, 800.0]
    assert not list(run_dir.glob(".*.tmp"))  # no temp files left behind by the atomic writes


def test_checkpoint_is_complete(trained: Runner) -> None:
    ckpt = load_checkpoint(trained.run_dir / "checkpoint.pt")
    agent = ckpt["agent"]
    for key in ("actor", "critic", "critic_target", "optimizer", "log_alpha", "actor_norm", "critic_norm"):
        assert key in agent, key
    assert agent["num_updates"] == trained.agent.num_updates == 76
    assert ckpt["env_steps"] == 800
    assert "update_credit" in ckpt and "torch_rng" in ckpt and "env_state" in ckpt and "obs" in ckpt
    assert ckpt["config"] == config_to_dict(trained.cfg)
    assert float(agent["actor_norm"]["count"]) > 0  # normaliser statistics are saved, not defaults
    assert_tree_equal(agent["actor"], trained.agent.actor.state_dict())
    assert_tree_equal(agent["critic_target"], trained.agent.critic_target.state_dict())
    assert not all(torch.equal(agent["critic"][k], agent["critic_target"][k]) for k in agent["critic"])
    replay = load_checkpoint(trained.run_dir / "replay.pt")
    assert replay["size"] == 800


# ----------------------------------------------------------------------------------------------- resume
def _train_resumed(log_dir: Path, **overrides: Any) -> Runner:
    half = Runner(tiny_cfg(log_dir, save_replay=True, total_env_steps=400, **overrides), quiet=True)
    half.train()
    assert half.env_steps == 400
    resumed = Runner.resume(half.run_dir, total_env_steps=800, quiet=True)
    assert resumed.env_steps == 400 and resumed.run_dir == half.run_dir
    resumed.train()
    return resumed


def test_resume_continues_bit_exactly(trained: Runner, tmp_path: Path) -> None:
    resumed = _train_resumed(tmp_path)
    assert_same_training_state(trained, resumed)


def test_resume_continues_bit_exactly_with_fixed_replay_size(tmp_path: Path) -> None:
    # Same as above with a replay capacity (320) that is equal in both runs and wraps before the save at 400.
    full = Runner(tiny_cfg(tmp_path, save_replay=True, replay_size=320), quiet=True)
    full.train()
    resumed = _train_resumed(tmp_path, replay_size=320)
    assert_same_training_state(full, resumed)
    ckpt = load_checkpoint(resumed.run_dir / "checkpoint.pt")
    assert ckpt["env_steps"] == 800 and ckpt["config"]["total_env_steps"] == 800
    assert [h["env_steps"] for h in resumed.history] == [400.0, 800.0]  # history carried over


def test_resume_without_replay_refills_before_learning(tmp_path: Path) -> None:
    half = Runner(tiny_cfg(tmp_path, total_env_steps=400), quiet=True)
    half.train()
    assert not (half.run_dir / "replay.pt").exists()
    updates = half.agent.num_updates
    resumed = Runner.resume(half.run_dir, total_env_steps=800, quiet=True)
    assert_tree_equal(resumed.agent.actor.state_dict(), half.agent.actor.state_dict())
    assert resumed.cfg.warmup_env_steps == 200 and resumed.learn_from == 400 + 200
    resumed.train()
    assert resumed.agent.num_updates == updates + (800 - 600) // 8 + 1


def test_resume_without_replay_keeps_the_configured_warmup(tmp_path: Path) -> None:
    half = Runner(tiny_cfg(tmp_path, total_env_steps=400), quiet=True)
    half.train()
    resumed = Runner.resume(half.run_dir, total_env_steps=480, quiet=True)
    resumed.train()
    saved = load_checkpoint(half.run_dir / "checkpoint.pt")["config"]
    assert saved["warmup_env_steps"] == 200
    assert yaml.safe_load((half.run_dir / "config.yaml").read_text())["warmup_env_steps"] == 200


# ----------------------------------------------------------------------------------------------- replay contents
def test_replay_stores_truncation_as_not_terminated_with_final_obs(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path, num_envs=4, warmup_env_steps=10_000, env={"episode_steps": 3})
    runner = Runner(cfg, quiet=True)
    twin = make_env(cfg)
    for _ in range(2):
        runner.collect()
    twin.load_state_dict(runner.env.state_dict())  # the env just before the truncating step
    obs_before = {k: v.clone() for k, v in runner.obs.items()}
    runner.collect()
    runner.collect()
    data = runner.replay.data
    rows = slice(8, 12)  # the third vector step of 4 envs
    assert torch.equal(data["obs_actor"][rows], obs_before["policy"])
    _, _, terminated, truncated, info = twin.step(data["action"][rows].clone())
    assert truncated.all() and not terminated.any()
    assert torch.equal(data["terminated"][rows], torch.zeros(4))
    final = info["final_obs"]
    assert torch.equal(data["next_obs_actor"][rows], final["policy"])
    assert torch.equal(data["next_obs_critic"][rows], final["critic"])
    # the next stored transition starts from the fresh episode, not from the final observation
    assert not torch.equal(data["obs_critic"][12:16], data["next_obs_critic"][rows])
    # within an episode consecutive rows chain: next_obs of step k is obs of step k + 1
    assert torch.equal(data["next_obs_critic"][0:4], data["obs_critic"][4:8])
    assert torch.equal(data["next_obs_actor"][4:8], data["obs_actor"][8:12])
    assert len(runner.replay) == 16


def test_replay_stores_termination(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path, num_envs=4, warmup_env_steps=10_000)
    runner = Runner(cfg, quiet=True)
    s = runner.env.get_state()
    s[2, 2] = 0.599
    s[2, 9] = 10.0  # env 2 leaves the box in this step
    runner.env.set_state(s)
    runner.obs = runner.env.observe()
    runner.collect()
    assert runner.replay.data["terminated"][:4].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert float(runner.replay.data["next_obs_critic"][2, 2]) > 0.6  # final (out-of-box) observation
    assert float(runner.obs["critic"][2, 0:3].abs().max()) <= 0.2 + 1e-6  # fresh episode for acting


# ----------------------------------------------------------------------------------------------- failures
CORRUPT_CONTENTS = [
    pytest.param(lambda good: good[: len(good) // 2], id="truncated-half"),
    pytest.param(lambda good: good[:10], id="truncated-10-bytes"),
    pytest.param(lambda good: b"", id="empty"),
    pytest.param(lambda good: good[:300] + bytes(b ^ 0xFF for b in good[300:600]) + good[600:], id="bit-flipped"),
    pytest.param(lambda good: b"this is not a checkpoint\x00\x01" * 10, id="garbage-bytes"),
    pytest.param(lambda good: b"hello world\n", id="text-file"),
]


def test_missing_checkpoint_raises_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"not found.*nothing-here"):
        Runner.resume(tmp_path / "nothing-here", quiet=True)


@pytest.mark.parametrize("corrupt", CORRUPT_CONTENTS)
def test_corrupt_checkpoint_raises_checkpoint_error_naming_the_file(
    trained: Runner, tmp_path: Path, corrupt: Any
) -> None:
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(corrupt((trained.run_dir / "checkpoint.pt").read_bytes()))
    with pytest.raises(CheckpointError, match=re.escape(str(ckpt))):
        Runner.resume(tmp_path, quiet=True)


def test_truncated_replay_raises_checkpoint_error_naming_the_file(trained: Runner, tmp_path: Path) -> None:
    shutil.copy(trained.run_dir / "checkpoint.pt", tmp_path / "checkpoint.pt")
    replay = tmp_path / "replay.pt"
    replay.write_bytes((trained.run_dir / "replay.pt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=re.escape(str(replay))):
        Runner.resume(tmp_path, quiet=True)


def edited_run(trained: Runner, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A run directory holding ``trained``'s checkpoint with ``edit`` applied to its saved config."""
    run_dir = tmp_path / "edited"
    run_dir.mkdir()
    ckpt = load_checkpoint(trained.run_dir / "checkpoint.pt")
    edit(ckpt["config"])
    torch.save(ckpt, run_dir / "checkpoint.pt")
    return run_dir


def test_checkpoint_from_incompatible_network_config_is_a_clear_error(trained: Runner, tmp_path: Path) -> None:
    run_dir = edited_run(trained, tmp_path, lambda c: c["sac"].update(actor_hidden=[16, 16]))
    with pytest.raises(ValueError, match=r"does not fit") as err:
        Runner.resume(run_dir, quiet=True)
    assert "checkpoint.pt" in str(err.value)


def test_checkpoint_with_unknown_setting_is_a_clear_error(trained: Runner, tmp_path: Path) -> None:
    run_dir = edited_run(trained, tmp_path, lambda c: c.update(no_such_setting=1))
    with pytest.raises(ValueError, match=r"no_such_setting"):
        Runner.resume(run_dir, quiet=True)


def test_checkpoint_with_different_num_envs_is_a_clear_error(trained: Runner, tmp_path: Path) -> None:
    run_dir = edited_run(trained, tmp_path, lambda c: c.update(num_envs=4))
    with pytest.raises(ValueError, match=r"\(4, 17\)|\(8, 17\)"):
        Runner.resume(run_dir, quiet=True)


def test_output_directory_under_a_regular_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(OSError) as err:  # the run directory is made before any training time is spent
        Runner(tiny_cfg(blocker / "runs", total_env_steps=16, warmup_env_steps=16), quiet=True)
    assert str(blocker) in str(err.value)
    with pytest.raises(OSError) as err:
        atomic_torch_save({"a": 1}, blocker / "sub" / "checkpoint.pt")
    assert str(blocker / "sub") in str(err.value)
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses directory permissions (covered by the test above)")
def test_read_only_output_directory_is_a_clear_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        runner = Runner(tiny_cfg(ro, total_env_steps=16, warmup_env_steps=16), quiet=True)
        with pytest.raises(PermissionError):
            runner.train()
        with pytest.raises(PermissionError, match=r"not writable"):
            atomic_torch_save({"a": 1}, ro / "checkpoint.pt")
    finally:
        ro.chmod(0o700)


def test_failed_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    runner = Runner(tiny_cfg(tmp_path), quiet=True)
    path = runner.save()
    before = path.read_bytes()
    runner.env_steps = 123
    runner.history.append({"not_picklable": lambda: None})  # torch.save fails part-way through pickling
    with pytest.raises(Exception, match=r"(?i)pickl|lambda|local"):
        runner.save()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["env_steps"] == 0
    leftovers = [p.name for p in path.parent.iterdir() if p.name != "checkpoint.pt"]
    assert leftovers == [], leftovers


def test_validation_keeps_the_best_policy_and_export_uses_it(tmp_path: Path) -> None:
    from sim2real.core.policy_file import read_metadata
    from sim2real.export.onnx import export_onnx

    runner = Runner(tiny_cfg(tmp_path, eval_interval=200, eval_start=400, eval_episodes=4), quiet=True)
    summary = runner.train()
    best = summary["best_validation"]
    assert best["env_steps"] >= 400 and 0.0 <= best["nominal_left_box"] <= 1.0 and best["score"] > 0
    saved = load_checkpoint(runner.run_dir / "best.pt")
    assert saved["env_steps"] == best["env_steps"] and saved["best"] == best
    meta = read_metadata(export_onnx(runner.run_dir))
    assert meta.checkpoint_file == "best.pt"


# ----------------------------------------------------------------------------------------------- resume, kills
def test_resume_of_a_complete_run_says_so_and_keeps_its_summary(trained: Runner, tmp_path: Path) -> None:
    from sim2real.cli.main import main
    from sim2real.policies.runner import RunComplete

    run_dir = tmp_path / "done"
    shutil.copytree(trained.run_dir, run_dir)
    summary = (run_dir / "summary.json").read_bytes()
    ckpt = (run_dir / "checkpoint.pt").read_bytes()
    with pytest.raises(RunComplete, match=r"complete \(800 of 800 env steps\).*--total-steps"):
        Runner.resume(run_dir, quiet=True).train()
    assert main(["train", TASK, "--resume", str(run_dir), "--quiet"]) == 0
    assert (run_dir / "summary.json").read_bytes() == summary and (run_dir / "checkpoint.pt").read_bytes() == ckpt
    # extending it trains the new steps only
    assert main(["train", TASK, "--resume", str(run_dir), "--total-steps", "1200", "--quiet"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["env_steps"] == 1200


def test_wall_clock_checkpoint_survives_sigkill_and_resumes(tmp_path: Path) -> None:
    """A run whose step interval is never reached still checkpoints every second; kill -9, then --resume."""
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "sim2real.cli.main", "train", TASK, "--quiet", "--num-envs", "8", "--total-steps",
           "10000000", "--log-dir", str(tmp_path), "--set", "warmup_env_steps=200", "--set", "sac.batch_size=32",
           "--set", "checkpoint_interval=1000000000", "--set", "checkpoint_every_s=1", "--set", "eval_interval=0",
           "--set", "updates_per_step=1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, steps = time.time() + 120, 0
        while time.time() < deadline and steps < 400:  # wait for a checkpoint past the warm-up
            time.sleep(0.5)
            found = list(tmp_path.glob(f"{TASK}/*/checkpoint.pt"))
            if found:
                steps = int(load_checkpoint(found[0])["env_steps"])
        assert steps >= 400, proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint in 120 s"
        time.sleep(1.5)  # let it write at least one more while training on
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    run_dir = found[0].parent
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")  # whole and loadable after the kill (atomic writes)
    killed_at = int(ckpt["env_steps"])
    assert killed_at >= steps
    runner = Runner.resume(run_dir, total_env_steps=killed_at + 160, quiet=True)
    assert runner.env_steps == killed_at and runner.history == ckpt["history"]
    summary = runner.train()
    assert summary["env_steps"] == killed_at + 160


def test_version_1_configs_are_migrated(tmp_path: Path) -> None:
    """Checkpoints written before the typed env config kept ``env`` as dotted overrides of the task defaults."""
    from sim2real.policies.runner import config_from_dict
    from sim2real.tasks.quadrotor_hover.env import HoverConfig

    d = config_to_dict(tiny_cfg(tmp_path))
    d["env"] = {"reward.position_max": 40.0, "action_history": 8}
    cfg = config_from_dict(d, version=1)
    assert isinstance(cfg.env, HoverConfig) and cfg.env.reward.position_max == 40.0 and cfg.env.action_history == 8
    assert (cfg.env.num_envs, cfg.env.reward.position) == (8, HoverConfig().reward.position)
    assert config_from_dict(config_to_dict(cfg)) == cfg  # and the current format round-trips
    with pytest.raises(TypeError, match="takes a HoverConfig env config"):
        type(cfg)(task=TASK, env=object())
