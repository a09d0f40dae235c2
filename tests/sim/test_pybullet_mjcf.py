"""MuJoCo locomotion tasks with PyBullet's physics: the same robot, the task's contract, DR, sim-to-sim, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

mujoco = pytest.importorskip("mujoco")
pb = pytest.importorskip("pybullet")

from pybullet_utils.bullet_client import BulletClient  # noqa: E402

from sim2real.sim.pybullet_mjcf import load_robot  # noqa: E402
from sim2real.sim.registry import make  # noqa: E402

TASKS = ("mujoco-halfcheetah", "mujoco-hopper")


@pytest.mark.parametrize("task", TASKS)
def test_the_pybullet_robot_is_mujocos_model(task: str) -> None:
    """Masses and, at random joint configurations, every body's centre of mass agree with MuJoCo's to 1e-6 m."""
    env = make(task, num_envs=1, num_threads=1, engine="pybullet")
    try:
        m, c, r = env.model, env.client, env.robots[0]
        d = mujoco.MjData(m)
        gen = np.random.default_rng(0)
        for _ in range(5):
            q = m.qpos0 + gen.uniform(-0.5, 0.5, m.nq)
            env.set_state(torch.as_tensor(q)[None], torch.zeros(1, m.nv))
            d.qpos[:] = q
            mujoco.mj_forward(m, d)
            for b, link in env._body_links.items():
                assert c.getDynamicsInfo(r, link)[0] == pytest.approx(m.body_mass[b], rel=1e-9)
                com = np.asarray(c.getLinkState(r, link, computeForwardKinematics=True)[0])
                np.testing.assert_allclose(com, d.xipos[b], atol=1e-6, err_msg=m.body(b).name)
    finally:
        env.close()


@pytest.mark.parametrize("task", TASKS)
def test_open_loop_flight_stays_close_to_mujoco(task: str) -> None:
    """Airborne (1 m up), the same moderate random torques for 0.2-0.25 s: joint states agree within the README's
    figures (the armature rotor's coupling, hard limits and explicit damping make up the gap)."""
    mj = make(task, num_envs=8, num_threads=1)
    bu = make(task, num_envs=8, num_threads=1, engine="pybullet")
    try:
        mj.reset(seed=0)
        bu.reset(seed=0)
        q, v = mj.get_state()
        q[:, 1] += 1.0  # rootz: no contact
        mj.set_state(q, v)
        bu.set_state(q, v)
        np.testing.assert_allclose(bu.get_state()[0].numpy(), q.numpy(), atol=1e-9)
        gen = torch.Generator().manual_seed(1)
        for _ in range(5):
            a = (torch.rand(8, mj.spec.action_dim, generator=gen) * 2 - 1) * 0.2
            o1, *_ = mj.step(a)
            o2, *_ = bu.step(a)
        (q1, v1), (q2, v2) = mj.get_state(), bu.get_state()
        dq, dv = float((q1 - q2).abs().max()), float((v1 - v2).abs().max())
        assert dq < 0.15 and dv < 8.0, (dq, dv)  # measured: HalfCheetah 0.081 rad, 2.0; Hopper 0.12, 6.3
        assert dq > 1e-4  # two engines, not one run twice
    finally:
        mj.close()
        bu.close()


def test_contract_termination_and_auto_reset() -> None:
    env = make("mujoco-hopper", num_envs=4, num_threads=1, engine="pybullet")
    try:
        obs = env.reset(seed=0)
        assert obs["policy"].shape == (4, 11) and env.spec.obs_dims == {"policy": 11, "critic": 11}
        gen = torch.Generator().manual_seed(0)
        ended = 0
        for _ in range(200):
            a = torch.rand(4, 3, generator=gen) * 2 - 1
            obs, reward, terminated, truncated, info = env.step(a)
            assert torch.isfinite(obs["policy"]).all() and torch.isfinite(reward).all()
            if terminated.any():
                i = int(terminated.nonzero()[0])
                final, new = info["final_obs"]["policy"][i], obs["policy"][i]
                unhealthy = final[0] <= 0.7 or final[1].abs() >= 0.2  # z, torso angle
                assert unhealthy and new[0] == pytest.approx(1.25, abs=0.01)  # reset to qpos0 + noise
                ended += int(terminated.sum())
        assert ended > 0  # random hopping falls over
    finally:
        env.close()


def test_domain_randomisation_and_pushes() -> None:
    from sim2real.sim.mujoco.env import MujocoDRConfig

    dr = MujocoDRConfig(enabled=True, push_prob=1.0, push_force_std=200.0, push_steps=3)
    env = make("mujoco-halfcheetah", num_envs=3, num_threads=1, engine="pybullet", dr=dr)
    still = make("mujoco-halfcheetah", num_envs=3, num_threads=1, engine="pybullet")
    try:
        env.reset(seed=0)
        still.reset(seed=0)
        params = env.get_params()
        assert params["body_mass"][:, 1:].std(0).min() > 0 and params["actuator_gain"].std(0).min() > 0
        link = env._body_links[2]
        masses = [env.client.getDynamicsInfo(r, link)[0] for r in env.robots]
        np.testing.assert_allclose(masses, params["body_mass"][:, 2].numpy(), rtol=1e-9)  # PyBullet has the draws
        for _ in range(3):
            env.step(torch.zeros(3, 6))
            still.step(torch.zeros(3, 6))
        assert (env.get_state()[1] - still.get_state()[1]).abs().max() > 0.1  # pushed and randomised
    finally:
        env.close()
        still.close()


def test_bad_input_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown engine 'bullet'"):
        make("mujoco-halfcheetah", num_envs=1, engine="bullet")
    with pytest.raises(ValueError, match="runs on the CPU"):
        make("mujoco-halfcheetah", num_envs=1, engine="pybullet", backend="warp")
    with pytest.raises(ValueError, match="root slide joints"):
        make("mujoco-ant", num_envs=1, engine="pybullet")
    c = BulletClient(connection_mode=pb.DIRECT)
    try:
        with pytest.raises(FileNotFoundError, match="robot file not found: .*missing.urdf"):
            load_robot(c, tmp_path / "missing.urdf")
        bad = tmp_path / "bad.xml"
        bad.write_text("<mujoco><worldbody><body><geom type='sphere'/></body>")
        with pytest.raises(ValueError, match="cannot compile robot file"):
            load_robot(c, bad)
    finally:
        c.disconnect()


def test_a_urdf_robot_loads_with_its_masses(tmp_path: Path) -> None:
    urdf = tmp_path / "arm.urdf"
    urdf.write_text("""<robot name="arm">
  <link name="base"><inertial><mass value="2.0"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial>
    <collision><geometry><box size="0.2 0.2 0.1"/></geometry></collision></link>
  <link name="upper"><inertial><origin xyz="0 0 0.25"/><mass value="0.7"/>
    <inertia ixx="0.004" iyy="0.004" izz="0.0005" ixy="0" ixz="0" iyz="0"/></inertial>
    <collision><origin xyz="0 0 0.25"/><geometry><cylinder radius="0.03" length="0.5"/></geometry></collision></link>
  <joint name="shoulder" type="revolute"><parent link="base"/><child link="upper"/><origin xyz="0 0 0.05"/>
    <axis xyz="0 1 0"/><limit lower="-1.5" upper="1.5" effort="10" velocity="5"/></joint>
</robot>""")
    c = BulletClient(connection_mode=pb.DIRECT)
    try:
        robot, m = load_robot(c, urdf)
        masses = sorted(c.getDynamicsInfo(robot, j)[0] for j in range(c.getNumJoints(robot)))
        # MuJoCo's URDF import fixes the root link to the world: the arm is the one moving body, on its hinge
        assert masses[-1] == pytest.approx(0.7) and m.njnt == 1 and m.jnt_range[0].tolist() == [-1.5, 1.5]
    finally:
        c.disconnect()


def test_a_mujoco_policy_is_evaluated_in_pybullet_from_the_command_line(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import json

    from sim2real.cli.main import main
    from sim2real.core.config import apply_overrides
    from sim2real.export.onnx import export_onnx
    from sim2real.policies.runner import Runner
    from sim2real.tasks.gym_mujoco import locomotion_defaults

    cfg = apply_overrides(locomotion_defaults("mujoco-halfcheetah"), {
        "num_envs": 2, "total_env_steps": 300, "warmup_env_steps": 200, "sac.batch_size": 32, "log_interval": 200,
        "env.episode_steps": 100, "log_dir": str(tmp_path)})  # fmt: skip
    runner = Runner(cfg, quiet=True)
    runner.train()
    policy = export_onnx(runner.run_dir)
    figures = {}
    for engine in ("mujoco", "pybullet"):
        assert main(["eval", str(policy), "--sim", engine, "--episodes", "3", "--json", "--out", str(tmp_path / engine)]) == 0
        figures[engine] = json.loads(capsys.readouterr().out)
    assert figures["mujoco"]["episodes"] == figures["pybullet"]["episodes"] == 3
    assert figures["mujoco"]["return_mean"] != figures["pybullet"]["return_mean"]  # two engines, two figures
    assert main(["eval", str(policy), "--sim", "torch", "--episodes", "1"]) == 2
    assert "unknown engine 'torch' for the MuJoCo tasks" in capsys.readouterr().err
