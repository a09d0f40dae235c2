"""The large-batch SAC knobs: C51 distributional critics and n-step returns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ACT_DIM, make_agent, make_batch, normalised, tiny_cfg

from sim2real.policies import distributional
from sim2real.policies.replay import ReplayBuffer, nstep_batch
from sim2real.policies.runner import Runner


# ----------------------------------------------------------------------------------------------- C51 projection
def test_projection_keeps_mass_and_mean_inside_the_support() -> None:
    atoms = distributional.support(-10.0, 10.0, 21)
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(64, 21, generator=g), -1)
    moved = 0.5 + 0.93 * atoms + 0.0 * probs  # r + gamma z: stays inside [-10, 10]
    out = distributional.project(probs, moved, atoms)
    torch.testing.assert_close(out.sum(-1), torch.ones(64))
    # linear interpolation between neighbouring atoms preserves the mean
    torch.testing.assert_close((out * atoms).sum(-1), (probs * moved).sum(-1), rtol=1e-5, atol=1e-5)
    assert (out >= 0).all()


def test_projection_puts_mass_on_an_exact_atom_whole_and_clamps_outside() -> None:
    atoms = distributional.support(0.0, 4.0, 5)
    probs = torch.tensor([[0.25, 0.25, 0.25, 0.25, 0.0]])
    moved = torch.tensor([[1.0, 2.5, -7.0, 99.0, 3.0]])  # exact atom, between 2 and 3, below, above
    out = distributional.project(probs, moved, atoms)
    torch.testing.assert_close(out, torch.tensor([[0.25, 0.25, 0.125, 0.125, 0.25]]))


def test_support_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="num_atoms"):
        distributional.support(0.0, 1.0, 1)
    with pytest.raises(ValueError, match="v_max > v_min"):
        distributional.support(1.0, 1.0, 11)


# ----------------------------------------------------------------------------------------------- C51 SAC
def c51_agent(**kw) -> object:
    return make_agent(num_atoms=51, v_min=-20.0, v_max=20.0, **kw)


def test_c51_critic_loss_is_cross_entropy_to_the_projected_min_member_target() -> None:
    agent = c51_agent()
    for s in range(3):
        agent.update(make_batch(seed=s))  # critics differ from their targets and from each other
    batch = make_batch(seed=7)
    torch.manual_seed(3)
    _, metrics = agent._losses(*(batch[k] for k in ("obs_actor", "obs_critic", "action", "reward",
                                                   "next_obs_actor", "next_obs_critic", "terminated")))  # fmt: skip
    nb = normalised(agent, batch)
    alpha = agent.log_alpha.exp().detach()
    z = agent.atoms
    torch.manual_seed(3)
    with torch.no_grad():
        next_a, next_logp = agent.actor.sample(nb["next_obs_actor"])
        probs = torch.softmax(agent.critic_target(nb["next_obs_critic"], next_a), -1).numpy()  # (K, B, Z)
        logits = agent.critic(nb["obs_critic"], nb["action"])
    logp_now = torch.log_softmax(logits, -1).numpy()
    expected = 0.0
    for b in range(len(batch["reward"])):
        k = int(np.argmin((probs[:, b] * z.numpy()).sum(-1)))  # smaller expected next value
        d = 0.0 if batch["terminated"][b] else agent.cfg.gamma
        moved = float(batch["reward"][b]) + d * (z - alpha * next_logp[b])
        target = distributional.project(torch.tensor(probs[k, b])[None], moved[None].float(), z)[0].numpy()
        expected += -(target * logp_now[:, b]).sum()  # summed over the ensemble
    assert float(metrics["critic_loss"]) == pytest.approx(expected / len(batch["reward"]), rel=1e-4)
    q = (torch.softmax(logits, -1) * z).sum(-1)
    assert float(metrics["q_mean"]) == pytest.approx(float(q.mean()), rel=1e-5, abs=1e-6)


def test_c51_agent_learns_a_fixed_batch_and_acts() -> None:
    agent = c51_agent(critic_lr=1e-3, actor_lr=1e-4)
    batch = make_batch()
    torch.manual_seed(0)
    losses = [float(agent.update(batch)["critic_loss"]) for _ in range(60)]
    assert np.isfinite(losses).all()
    window = [float(np.mean(losses[i : i + 10])) for i in range(0, 60, 10)]
    assert all(b < a for a, b in zip(window, window[1:])), window  # steadily down
    # cross-entropy has the target's entropy as floor (about 2 log 51 = 7.9 at the uniform start): measure the drop
    assert window[0] - window[-1] > 0.3, window
    a = agent.act({"policy": batch["obs_actor"]}, deterministic=True)
    assert a.shape == (64, ACT_DIM) and a.abs().max() <= 1.0


# ----------------------------------------------------------------------------------------------- n-step
def reference_nstep(
    rows: dict[str, np.ndarray], first: int, n: int, gamma: float, stride: int, newest_pos: int, oldest: int, cap: int
) -> tuple[float, float, float, float]:
    """(return, discount, next_obs, terminated) by walking the ring one step at a time."""
    ret, pos, row = 0.0, (first - oldest) % cap, first
    for k in range(n):
        row = (oldest + pos + k * stride) % cap
        ret += gamma**k * rows["reward"][row]
        if rows["ended"][row] or k == n - 1 or pos + (k + 1) * stride > newest_pos:
            return ret, gamma ** (k + 1), rows["next_obs"][row], rows["terminated"][row]
    raise AssertionError


@pytest.mark.parametrize("steps", [7, 23])  # partly filled; wrapped more than once
def test_nstep_batch_matches_a_step_by_step_reference(steps: int) -> None:
    stride, cap, n, gamma = 3, 30, 4, 0.9
    fields = {k: ((), torch.float32) for k in ("obs", "reward", "next_obs", "terminated", "ended")}
    buf = ReplayBuffer(cap, fields, seed=1)
    g = np.random.default_rng(0)
    for t in range(steps):
        term = g.random(stride) < 0.15
        ended = term | (g.random(stride) < 0.15)
        buf.add(
            obs=torch.tensor(100.0 * t + np.arange(stride)), reward=torch.tensor(g.normal(size=stride)),
            next_obs=torch.tensor(100.0 * (t + 1) + np.arange(stride)), terminated=torch.tensor(term),
            ended=torch.tensor(ended),
        )  # fmt: skip
    rows = {k: v.numpy() for k, v in buf.data.items()}
    batch = nstep_batch(buf, 256, n, gamma, stride)
    oldest = buf.ptr if buf.size == cap else 0
    newest_pos = buf.size - 1
    seen_cut = seen_end = 0
    for i in range(256):
        first = int(np.flatnonzero(rows["obs"] == float(batch["obs"][i]))[0])
        ret, disc, nxt, term = reference_nstep(rows, first, n, gamma, stride, newest_pos, oldest, cap)
        assert float(batch["reward"][i]) == pytest.approx(ret, rel=1e-5, abs=1e-5)
        assert float(batch["discount"][i]) == pytest.approx(disc, rel=1e-6)
        assert float(batch["next_obs"][i]) == nxt and float(batch["terminated"][i]) == term
        seen_cut += disc > gamma**n
        seen_end += bool(term)
    assert seen_cut > 0 and seen_end > 0  # the sample exercised shortened windows and terminations
    assert float(batch["discount"].min()) == pytest.approx(gamma**n)


def test_nstep_batch_sums_rewards_recomputed_from_terms() -> None:
    fields = {"obs": ((), torch.float32), "reward_terms": ((2,), torch.float32), "next_obs": ((), torch.float32),
              "terminated": ((), torch.float32), "ended": ((), torch.float32)}  # fmt: skip
    buf = ReplayBuffer(8, fields, seed=0)
    for t in range(4):  # one env, never ends: every 2-step window from t < 3 sums two rewards
        buf.add(obs=torch.tensor([float(t)]), reward_terms=torch.tensor([[t, 1.0]]),
                next_obs=torch.tensor([t + 1.0]), terminated=torch.zeros(1), ended=torch.zeros(1))  # fmt: skip
    with pytest.raises(ValueError, match="reward_fn"):
        nstep_batch(buf, 4, 2, 0.5, 1)
    batch = nstep_batch(buf, 64, 2, 0.5, 1, reward_fn=lambda terms: terms[:, 0] * terms[:, 1] * 2)
    t = batch["obs"]
    expected = torch.where(t < 3, 2 * t + 0.5 * 2 * (t + 1), 2 * t)
    torch.testing.assert_close(batch["reward"], expected)
    torch.testing.assert_close(batch["next_obs"], torch.where(t < 3, t + 2, t + 1))


def test_discount_of_the_batch_replaces_gamma() -> None:
    agent = make_agent(gamma=0.9)
    batch = make_batch(seed=2)
    keys = ("obs_actor", "obs_critic", "action", "reward", "next_obs_actor", "next_obs_critic", "terminated")
    args = [batch[k] for k in keys]
    losses = {}
    for name, disc in (("none", None), ("gamma", torch.full((64,), 0.9)), ("other", torch.full((64,), 0.5))):
        torch.manual_seed(1)
        losses[name] = float(agent._losses(*args, disc)[1]["critic_loss"])
    assert losses["none"] == pytest.approx(losses["gamma"], rel=1e-6)
    assert losses["other"] != pytest.approx(losses["none"], rel=1e-3)


# ----------------------------------------------------------------------------------------------- runner
@pytest.mark.parametrize("overrides", [{"sac.n_step": 3}, {"sac.n_step": 3, "sac.num_atoms": 21, "sac.v_min": -50.0,
                                                           "sac.v_max": 50.0}])  # fmt: skip
def test_runner_trains_with_nstep_and_c51(tmp_path: Path, overrides: dict) -> None:
    runner = Runner(tiny_cfg(tmp_path, **overrides), quiet=True)
    summary = runner.train()
    assert summary["updates"] > 0
    assert "ended" in runner.replay.data and runner.replay.capacity % runner.cfg.num_envs == 0
    assert all(torch.isfinite(p).all() for p in runner.agent.critic.parameters())
    resumed = Runner.resume(runner.run_dir, total_env_steps=1000, quiet=True)
    assert resumed.train()["env_steps"] == 1000


# ----------------------------------------------------------------------------------------------- bf16 / compile
def test_bf16_runs_hidden_layers_in_bf16_and_keeps_outputs_and_losses_close_to_fp32() -> None:
    agent32, agent16 = make_agent(seed=3), make_agent(seed=3, bf16=True)
    batch = make_batch(seed=5)
    with torch.autocast("cpu", torch.bfloat16):
        q = agent16.critic(batch["obs_critic"], batch["action"])
        h = agent16.actor.net.layers[0](batch["obs_actor"])
    assert h.dtype == torch.bfloat16 and q.dtype == torch.float32
    assert agent16.critic.weights[0].dtype == torch.float32
    torch.manual_seed(0)
    m32 = agent32.update(batch)
    torch.manual_seed(0)
    m16 = agent16.update(batch)
    for k in ("critic_loss", "actor_loss", "q_mean"):
        assert float(m16[k]) == pytest.approx(float(m32[k]), rel=0.03, abs=0.02), k
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in agent16.critic.parameters())


def test_cuda_graph_mode_needs_cuda() -> None:
    with pytest.raises(ValueError, match="CUDA"):
        make_agent(compile=True, compile_mode="reduce-overhead")


def test_deepcopy_gives_an_independent_agent_that_learns() -> None:
    import copy

    agent = make_agent(seed=1)
    agent.update(make_batch(seed=0))
    twin = copy.deepcopy(agent)
    before = [p.detach().clone() for p in agent.critic.parameters()]
    torch.manual_seed(0)
    twin.update(make_batch(seed=1))
    assert twin.num_updates == 2
    assert any(not torch.equal(a, b) for a, b in zip(twin.critic.parameters(), before))  # the copy moved
    assert all(torch.equal(a, b) for a, b in zip(agent.critic.parameters(), before))  # the original did not


@pytest.mark.parametrize("layernorm", [False, True])
def test_critic_per_member_path_at_large_batch_equals_the_batched_path(layernorm: bool) -> None:
    from sim2real.policies.networks import CPU_LOOP_MIN_BATCH, EnsembleCritic

    torch.manual_seed(0)
    critic = EnsembleCritic(9, 3, (32, 32), num_q=2, layernorm=layernorm)
    obs, act = torch.randn(CPU_LOOP_MIN_BATCH, 9), torch.rand(CPU_LOOP_MIN_BATCH, 3) * 2 - 1
    big = critic(obs, act)  # per-member addmm
    halves = torch.cat([critic(obs[i::2], act[i::2]) for i in (0, 1)], 1)  # batched baddbmm, 512 rows each
    order = torch.cat([torch.arange(0, CPU_LOOP_MIN_BATCH, 2), torch.arange(1, CPU_LOOP_MIN_BATCH, 2)])
    torch.testing.assert_close(big[:, order], halves, rtol=1e-5, atol=1e-5)
    g_big = torch.autograd.grad(big.square().sum(), critic.param_list())
    g_halves = torch.autograd.grad(halves.square().sum(), critic.param_list())
    for a, b in zip(g_big, g_halves):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
