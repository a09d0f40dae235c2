"""Asymmetric actor-critic distillation: what the student takes from its teacher, frozen vs finetuned critics,
DAgger, joined observation groups, and the student's policy file (tactile metadata, eval, the C export's refusal)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

pytest.importorskip("mujoco", reason="the [mujoco] extra is not installed")

from sim2real.core.files import CheckpointError  # noqa: E402
from sim2real.core.obs import joined_layout, select  # noqa: E402
from sim2real.policies import distill  # noqa: E402
from sim2real.policies.distill import DistillConfig  # noqa: E402
from sim2real.policies.runner import Runner, TrainConfig  # noqa: E402
from sim2real.policies.sac import SAC, SACConfig  # noqa: E402
from sim2real.sim.registry import get_task  # noqa: E402
from sim2real.tasks.peg_insert import PegInsertConfig  # noqa: E402

DIMS = {"policy": 3, "tactile": 4, "critic": 6}


def _batch(n: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"obs_actor": torch.randn(n, 7, generator=g), "obs_critic": torch.randn(n, 6, generator=g),
            "action": torch.rand(n, 2, generator=g) * 2 - 1, "reward": torch.randn(n, generator=g),
            "next_obs_actor": torch.randn(n, 7, generator=g), "next_obs_critic": torch.randn(n, 6, generator=g),
            "terminated": torch.zeros(n)}  # fmt: skip


def test_joined_groups_concatenate_in_order_and_name_what_is_missing() -> None:
    obs = {"policy": torch.ones(2, 3), "tactile": torch.zeros(2, 4)}
    assert torch.equal(select(obs, "policy+tactile"), torch.cat((obs["policy"], obs["tactile"]), -1))
    assert select(obs, "policy") is obs["policy"]
    with pytest.raises(KeyError, match="'critic' not provided"):
        select(obs, "policy+critic")
    with pytest.raises(ValueError, match="malformed"):
        select(obs, "policy+")
    groups = get_task("peg-insert").make(PegInsertConfig(num_envs=1)).spec.obs_groups
    layout = joined_layout(groups, "policy+tactile")
    assert layout.dim == groups["policy"].dim + groups["tactile"].dim and layout.names[-1] == "force_field"


def test_a_frozen_critic_stays_as_loaded_while_the_actor_learns() -> None:
    cfg = SACConfig(actor_obs="policy+tactile", critic_obs="critic", batch_size=64, freeze_critic=True)
    agent = SAC(DIMS, 2, cfg)
    critic, target = copy.deepcopy(agent.critic.state_dict()), copy.deepcopy(agent.critic_target.state_dict())
    actor = copy.deepcopy(agent.actor.state_dict())
    agent.observe({"policy": torch.randn(8, 3), "tactile": torch.randn(8, 4), "critic": 5 + torch.randn(8, 6)})
    for i in range(5):
        agent.update(_batch(seed=i))
    assert all(torch.equal(v, agent.critic.state_dict()[k]) for k, v in critic.items())
    assert all(torch.equal(v, agent.critic_target.state_dict()[k]) for k, v in target.items())
    assert float(agent.critic_norm.count) == 0  # its normaliser is frozen too
    assert any(not torch.equal(v, agent.actor.state_dict()[k]) for k, v in actor.items())
    finetuned = SAC(DIMS, 2, replace(cfg, freeze_critic=False))
    before = copy.deepcopy(finetuned.critic.state_dict())
    finetuned.update(_batch())
    assert any(not torch.equal(v, finetuned.critic.state_dict()[k]) for k, v in before.items())


def test_dagger_loss_pulls_the_students_action_to_the_teachers() -> None:
    agent = SAC(DIMS, 2, SACConfig(actor_obs="policy+tactile", critic_obs="critic", actor_lr=3e-3, freeze_critic=True))
    batch = _batch(256)
    target = torch.tanh(batch["obs_actor"][:, :2])  # a function of what the student sees
    def err() -> float:
        with torch.no_grad():
            return float((agent.actor.deterministic(agent.actor_norm(batch["obs_actor"])) - target).square().mean())

    err0 = err()
    for _ in range(300):
        agent.update({**batch, "bc_target": target})
    assert err() < 0.1 * err0, (err0, err())


def test_dagger_beta_decays_to_zero() -> None:
    d = DistillConfig(dagger_env_steps=1000, dagger_beta=0.5)
    assert distill.dagger_beta(d, 0) == 0.5 and distill.dagger_beta(d, 500) == 0.25 and distill.dagger_beta(d, 1000) == 0
    with pytest.raises(ValueError, match="critic must be one of"):
        DistillConfig(critic="warm")


def _teacher(tmp_path: Path) -> Runner:
    cfg = replace(get_task("peg-insert").train_defaults(), num_envs=4, total_env_steps=400, warmup_env_steps=200,
                  eval_interval=0, log_dir=str(tmp_path), sac=replace(get_task("peg-insert").train_defaults().sac,
                  actor_hidden=(32, 32), critic_hidden=(32, 32)))  # fmt: skip
    runner = Runner(cfg, quiet=True)
    runner.train()
    return runner


def _student(tmp_path: Path, teacher: Runner, critic: str, **kw: object) -> TrainConfig:
    base = get_task("peg-insert").student_defaults
    assert base is not None
    cfg = base()
    return replace(cfg, num_envs=4, total_env_steps=240, warmup_env_steps=80, eval_interval=0, log_dir=str(tmp_path),
                   distill=DistillConfig(teacher=str(teacher.run_dir), critic=critic), **kw)  # fmt: skip


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    return _teacher(tmp_path_factory.mktemp("teacher"))


def test_the_student_starts_from_the_teachers_critic_and_trains_a_new_actor(teacher: Runner, tmp_path: Path) -> None:
    t = teacher.agent.state_dict()
    for mode in ("frozen", "finetune", "scratch"):
        runner = Runner(_student(tmp_path, teacher, mode), quiet=True)
        a = runner.agent
        same = all(torch.equal(v, a.critic.state_dict()[k]) for k, v in t["critic"].items())
        assert same == (mode != "scratch") and a.cfg.freeze_critic == (mode == "frozen"), mode
        assert a.cfg.critic_hidden == (32, 32) or mode == "scratch"  # the teacher's critic shape
        assert a.actor.obs_dim == 9 + 840  # policy + force field: a new actor
    with pytest.raises(ValueError, match="must not read the privileged"):
        Runner(replace(_student(tmp_path, teacher, "frozen"), sac=replace(teacher.cfg.sac)), quiet=True)
    with pytest.raises(CheckpointError, match="teacher"):
        Runner(replace(_student(tmp_path, teacher, "frozen"), distill=DistillConfig(teacher=str(tmp_path / "none"))))


def test_student_run_exports_its_tactile_input_and_evaluates(teacher: Runner, tmp_path: Path) -> None:
    from sim2real.eval.policy import evaluate_policy_file
    from sim2real.export.onnx import export_onnx
    from sim2real.mcu.mlp_ir import mlp_from_onnx

    runner = Runner(replace(_student(tmp_path, teacher, "finetune"), distill=DistillConfig(
        teacher=str(teacher.run_dir), critic="finetune", dagger_env_steps=120)), quiet=True)  # fmt: skip
    summary = runner.train()
    assert summary["env_steps"] == 240
    path = export_onnx(runner.run_dir, tmp_path / "student.onnx")
    from sim2real.core.policy_file import OnnxPolicy, read_metadata

    meta = read_metadata(path)
    assert meta.obs_group == "policy+tactile" and meta.obs_dim == 849
    tac = meta.sensors["tactile"]
    assert tac["shape"] == [2, 14, 10, 3] and tac["channels"] == ["pressure", "shear_x", "shear_y"]
    assert tac["order"] == ["pad", "row", "col", "channel"] and len(tac["pads"]) == 2
    assert meta.obs_layout.slice("force_field") == slice(9, 849)
    _, res = evaluate_policy_file(path, episodes=8, seed=3, out_dir=tmp_path / "eval")
    assert res["episodes"] == 8 and 0.0 <= res["success_rate"] <= 1.0
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["success_rate"] == res["success_rate"]
    assert mlp_from_onnx(path).obs_dim == 849  # an MLP student can go to C

    # a policy file whose tactile description the env does not build is refused, naming the sensor
    import onnx

    from sim2real.core.policy_file import METADATA_KEY

    model = onnx.load(str(path))
    for p in model.metadata_props:
        if p.key == METADATA_KEY:
            d = json.loads(p.value)
            d["sensors"]["tactile"]["normalization"] = "newtons x 1"
            p.value = json.dumps(d)
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    OnnxPolicy(bad)  # loads: the file itself is fine
    with pytest.raises(CheckpointError, match="tactile sensor"):
        evaluate_policy_file(bad, episodes=2, seed=0, out_dir=tmp_path / "bad")


def test_an_image_student_has_a_cnn_that_exports_but_not_to_c(teacher: Runner, tmp_path: Path) -> None:
    from sim2real.export.onnx import export_onnx
    from sim2real.mcu.mlp_ir import UnsupportedGraph, mlp_from_onnx

    cfg = _student(tmp_path, teacher, "frozen")
    cfg = replace(cfg, env=PegInsertConfig(tactile="image"), replay_size=400, total_env_steps=120, warmup_env_steps=40,
                  sac=replace(cfg.sac, actor_encoder="cnn", batch_size=16))  # fmt: skip
    runner = Runner(cfg, quiet=True)
    assert runner.agent.actor.encoder is not None and runner.agent.image_shape == (2, 3, 80, 60)
    runner.train()
    path = export_onnx(runner.run_dir, tmp_path / "image.onnx", parity_samples=64)
    with pytest.raises(UnsupportedGraph, match="Conv"):
        mlp_from_onnx(path)
    with pytest.raises(ValueError, match="needs tactile images"):
        SAC(DIMS, 2, SACConfig(actor_obs="policy+tactile", actor_encoder="cnn"))
