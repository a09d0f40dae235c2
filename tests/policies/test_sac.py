"""Replay buffer, observation normaliser and the SAC update rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ACT_DIM, assert_tree_equal, make_agent, make_batch, normalised

from sim2real.policies.networks import EnsembleCritic, RunningNormalizer, SquashedGaussianActor
from sim2real.policies.replay import ReplayBuffer
from sim2real.policies.sac import SAC, SACConfig

BATCH_KEYS = ("obs_actor", "obs_critic", "action", "reward", "next_obs_actor", "next_obs_critic", "terminated")


# ----------------------------------------------------------------------------------------------- replay
def scalar_buffer(capacity: int, seed: int = 0) -> ReplayBuffer:
    return ReplayBuffer(capacity, {"x": ((), torch.float32), "v": ((2,), torch.float32)}, seed=seed)


def rows(values: list[float]) -> dict[str, torch.Tensor]:
    x = torch.tensor(values, dtype=torch.float32)
    return {"x": x, "v": torch.stack((x, -x), -1)}


def test_replay_ring_wraps_and_keeps_newest_rows() -> None:
    buf = scalar_buffer(10)
    buf.add(**rows([0, 1, 2, 3]))
    assert len(buf) == 4 and buf.ptr == 4
    buf.add(**rows([4, 5, 6, 7]))
    buf.add(**rows([8, 9, 10, 11]))  # wraps: 10, 11 overwrite slots 0, 1
    assert len(buf) == 10 and buf.ptr == 2
    assert buf.data["x"].tolist() == [10, 11, 2, 3, 4, 5, 6, 7, 8, 9]
    assert torch.equal(buf.data["v"][:, 1], -buf.data["x"])
    buf.add(**rows(list(range(12, 22))))  # exactly one capacity more: everything replaced
    assert sorted(buf.data["x"].tolist()) == list(range(12, 22))
    assert buf.ptr == 2
    with pytest.raises(ValueError, match=r"capacity"):
        buf.add(**rows(list(range(11))))
    with pytest.raises(ValueError, match=r"positive"):
        scalar_buffer(0)


def test_replay_samples_only_filled_rows() -> None:
    buf = scalar_buffer(100)
    with pytest.raises(RuntimeError, match=r"empty"):
        buf.sample(4)
    buf.add(**rows([1, 2, 3, 4, 5]))
    s = buf.sample(2000)
    assert s["x"].shape == (2000,) and s["v"].shape == (2000, 2)
    assert set(s["x"].unique().tolist()) == {1, 2, 3, 4, 5}  # never an unfilled (zero) row, all rows reachable
    assert torch.equal(s["v"][:, 0], s["x"]) and torch.equal(s["v"][:, 1], -s["x"])  # fields stay aligned
    counts = torch.bincount(s["x"].long(), minlength=6)[1:].float()
    assert float(counts.min()) > 300  # roughly uniform


def test_replay_rejects_wrong_fields_and_shapes() -> None:
    buf = scalar_buffer(8)
    with pytest.raises(KeyError, match=r"fields"):
        buf.add(x=torch.zeros(2))
    with pytest.raises(KeyError, match=r"fields"):
        buf.add(**rows([1, 2]), extra=torch.zeros(2))
    with pytest.raises(ValueError, match=r"'v'"):
        buf.add(x=torch.zeros(2), v=torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"'v'"):
        buf.add(x=torch.zeros(2), v=torch.zeros(3, 2))
    assert len(buf) == 0 and buf.ptr == 0


def test_replay_state_dict_round_trip_gives_same_samples() -> None:
    a = scalar_buffer(16, seed=3)
    a.add(**rows(list(range(10))))
    a.add(**rows(list(range(10, 20))))  # wrapped: ptr = 4
    a.sample(5)  # advance the generator
    sd = a.state_dict()
    assert sd["size"] == 16 and sd["ptr"] == 4
    b = scalar_buffer(16, seed=99)
    b.load_state_dict(sd)
    for _ in range(3):
        sa, sb = a.sample(7), b.sample(7)
        assert torch.equal(sa["x"], sb["x"]) and torch.equal(sa["v"], sb["v"])
    a.add(**rows([100, 101, 102]))
    b.add(**rows([100, 101, 102]))
    for k in ("x", "v"):
        assert torch.equal(a.data[k], b.data[k])
    # a young buffer saves only its filled part
    young = scalar_buffer(1000)
    young.add(**rows([1, 2, 3]))
    assert young.state_dict()["data"]["x"].shape == (3,)
    smaller = scalar_buffer(8)
    smaller.load_state_dict(sd)  # keeps the newest 8 of the 16 rows, oldest first
    assert len(smaller) == 8 and smaller.ptr == 0
    assert smaller.data["x"].tolist() == [float(v) for v in range(12, 20)]
    with pytest.raises(KeyError, match=r"'v'"):
        ReplayBuffer(16, {"x": ((), torch.float32), "v": ((2,), torch.float32)}).load_state_dict(
            {**sd, "data": {"x": sd["data"]["x"]}}
        )


def test_replay_loaded_into_larger_buffer_keeps_rows_and_appends() -> None:
    small = scalar_buffer(10)
    small.add(**rows(list(range(2, 12))))
    small.add(**rows([12, 13]))  # full ring: slots 0, 1 overwritten, ptr = 2
    big = scalar_buffer(20)
    big.load_state_dict(small.state_dict())
    assert len(big) == 10
    big.add(**rows([14, 15]))
    assert len(big) == 12
    filled = big.data["x"][: len(big)].tolist()
    assert sorted(filled) == list(range(4, 16))  # the 10 saved rows plus the 2 new ones, no unwritten rows


# ----------------------------------------------------------------------------------------------- normaliser
def test_running_normalizer_matches_numpy_over_batches() -> None:
    rng = np.random.default_rng(0)
    batches = [
        rng.normal(3.0, 2.0, size=(17, 4)),
        rng.normal(-1.0, 0.5, size=(5, 4)),
        rng.normal(10.0, 4.0, size=(64, 4)),
        rng.normal(0.0, 1.0, size=(1, 4)),
    ]
    norm = RunningNormalizer(4)
    for b in batches:
        norm.update(torch.tensor(b, dtype=torch.float32))
    allx = np.concatenate([b.astype(np.float32).astype(np.float64) for b in batches])
    np.testing.assert_allclose(norm.mean.numpy(), allx.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.var.numpy(), allx.var(0), rtol=1e-5, atol=1e-6)
    assert float(norm.count) == len(allx)
    x = torch.tensor(allx[:3], dtype=torch.float32)
    expected = (allx[:3] - allx.mean(0)) / np.sqrt(allx.var(0) + 1e-6)
    np.testing.assert_allclose(norm(x).numpy(), expected, rtol=1e-4, atol=1e-5)
    norm.update(torch.zeros(0, 4))  # empty batch: no change
    assert float(norm.count) == len(allx)
    assert float(norm(torch.full((1, 4), 1e6)).max()) == norm.clip


def loss_args(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return tuple(batch[k] for k in BATCH_KEYS)





def manual_losses(agent: SAC, batch: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """The SAC losses written out from the paper, sampling in the same order as the library (seeded)."""
    nb = normalised(agent, batch)
    alpha = agent.log_alpha.exp().detach()
    torch.manual_seed(seed)
    with torch.no_grad():
        next_a, next_logp = agent.actor.sample(nb["next_obs_actor"])
        soft_q = agent.critic_target(nb["next_obs_critic"], next_a).min(0).values - alpha * next_logp
        y = nb["reward"] + agent.cfg.gamma * (1.0 - nb["terminated"]) * soft_q
    q = agent.critic(nb["obs_critic"], nb["action"])
    critic_loss = 0.5 * ((q - y) ** 2).mean(1).sum()
    pi_a, logp = agent.actor.sample(nb["obs_actor"])
    actor_loss = (alpha * logp - agent.critic(nb["obs_critic"], pi_a).min(0).values).mean()
    alpha_loss = -(agent.log_alpha * (logp.detach() + agent.target_entropy)).mean()
    return {"critic": critic_loss, "actor": actor_loss, "alpha": alpha_loss, "soft_q": soft_q, "y": y, "q": q}


def grads(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    out = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, out)]




def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


# ----------------------------------------------------------------------------------------------- acting
def test_act_shapes_bounds_and_determinism() -> None:
    agent = make_agent()
    obs = {"policy": 10 * torch.randn(32, 6), "critic": torch.randn(32, 9)}
    a = agent.act(obs)
    assert a.shape == (32, ACT_DIM) and a.dtype == torch.float32
    assert float(a.abs().max()) <= 1.0
    assert not a.requires_grad
    d1, d2 = agent.act(obs, deterministic=True), agent.act(obs, deterministic=True)
    assert torch.equal(d1, d2)
    assert not torch.equal(agent.act(obs), agent.act(obs))  # stochastic otherwise
    # deterministic action = tanh(mean) of the normalised observation
    torch.testing.assert_close(d1, torch.tanh(agent.actor.dist_params(agent.actor_norm(obs["policy"]))[0]))
    # the actor reads the policy group only
    obs2 = {"policy": obs["policy"], "critic": torch.randn(32, 9)}
    assert torch.equal(agent.act(obs2, deterministic=True), d1)
    with pytest.raises(KeyError, match=r"observation group"):
        SAC({"policy": 6}, ACT_DIM, SACConfig())


def test_squashed_gaussian_log_prob_matches_change_of_variables() -> None:
    torch.manual_seed(0)
    actor = SquashedGaussianActor(5, 2, (16,))
    obs = torch.randn(400, 5)
    torch.manual_seed(1)
    a, logp = actor.sample(obs)
    torch.manual_seed(1)
    mu, log_std = actor.dist_params(obs)
    u = mu + torch.randn_like(mu) * log_std.exp()
    ref = torch.distributions.Normal(mu, log_std.exp()).log_prob(u) - torch.log1p(-(torch.tanh(u) ** 2) + 1e-12)
    torch.testing.assert_close(a, torch.tanh(u))
    mask = (u.abs() < 5).all(-1)  # where the naive formula is still accurate
    torch.testing.assert_close(logp[mask], ref.sum(-1)[mask], rtol=1e-4, atol=1e-4)
    assert float(log_std.detach().min()) >= -5.0 and float(log_std.detach().max()) <= 2.0


def test_ensemble_critic_members_are_independent_mlps() -> None:
    torch.manual_seed(0)
    critic = EnsembleCritic(4, 2, (8, 8), num_q=3)
    obs, act = torch.randn(10, 4), torch.randn(10, 2)
    q = critic(obs, act)
    assert q.shape == (3, 10)
    x = torch.cat((obs, act), -1)
    for k in range(3):
        h = x
        for i in range(3):
            h = h @ critic.weights[i][k] + critic.biases[i][k]
            if i < 2:
                h = torch.relu(h)
        torch.testing.assert_close(q[k], h.squeeze(-1))


# ----------------------------------------------------------------------------------------------- learning
def test_critic_loss_decreases_on_fixed_batch() -> None:
    agent = make_agent(critic_lr=1e-3, actor_lr=1e-4)
    batch = make_batch()
    torch.manual_seed(0)
    losses = [float(agent.update(batch)["critic_loss"]) for _ in range(50)]
    assert agent.num_updates == 50
    window = [float(np.mean(losses[i : i + 10])) for i in range(0, 50, 10)]
    assert all(b < a for a, b in zip(window, window[1:])), window  # steadily down
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), window


def test_target_networks_follow_by_polyak_tau() -> None:
    agent = make_agent(tau=0.05)
    batch = make_batch()
    for p_t, p_o in zip(agent.critic_target.parameters(), agent.critic.parameters()):
        assert torch.equal(p_t, p_o)  # start equal
        assert not p_t.requires_grad
    for _ in range(3):
        agent.update(batch)
    target_before = snapshot(agent.critic_target)
    agent.update(batch)
    online_after = snapshot(agent.critic)
    for t0, o1, t1 in zip(target_before, online_after, agent.critic_target.parameters()):
        torch.testing.assert_close(t1, t0 + 0.05 * (o1 - t0), rtol=1e-6, atol=1e-8)
        assert not torch.equal(t1, o1)
    assert any(not torch.equal(t0, t1) for t0, t1 in zip(target_before, agent.critic_target.parameters()))


def test_loss_gradients_are_isolated_per_network() -> None:
    agent = make_agent()
    agent.observe({"policy": 3 * torch.randn(50, 6) + 1, "critic": torch.randn(50, 9) - 2})  # non-trivial norms
    for _ in range(3):  # target differs from online
        agent.update(make_batch(seed=1))
    batch = make_batch(seed=2)
    actor_p = list(agent.actor.parameters())
    critic_p = list(agent.critic.parameters())

    torch.manual_seed(5)
    total, metrics = agent._losses(*loss_args(batch))
    g_total_actor = grads(total, actor_p)
    g_total_critic = grads(total, critic_p)
    (g_total_alpha,) = grads(total, [agent.log_alpha])

    ref = manual_losses(agent, batch, seed=5)
    torch.testing.assert_close(metrics["critic_loss"], ref["critic"].detach())
    torch.testing.assert_close(metrics["actor_loss"], ref["actor"].detach())
    # the critic parameters get exactly the gradient of the critic loss (no actor-loss leak) ...
    for g, r in zip(g_total_critic, grads(ref["critic"], critic_p)):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)
    # ... the actor exactly the gradient of the actor loss (the TD target is not differentiated) ...
    for g, r in zip(g_total_actor, grads(ref["actor"], actor_p)):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)
    assert all(float(g.abs().max()) == 0.0 for g in grads(ref["critic"], actor_p))
    # ... and the temperature only its own loss.
    torch.testing.assert_close(g_total_alpha, grads(ref["alpha"], [agent.log_alpha])[0])
    # the actor loss really does depend on the critic (so the isolation above is not trivial)
    assert any(float(g.abs().max()) > 0 for g in grads(ref["actor"], critic_p))
    # target networks get no gradient at all
    assert all(p.grad is None for p in agent.critic_target.parameters())


def test_update_with_zero_critic_lr_leaves_critic_unchanged_but_moves_actor() -> None:
    agent = make_agent(critic_lr=0.0, actor_lr=1e-3)
    critic0, actor0 = snapshot(agent.critic), snapshot(agent.actor)
    agent.update(make_batch())
    assert all(torch.equal(a, b) for a, b in zip(critic0, agent.critic.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(actor0, agent.actor.parameters()))
    agent = make_agent(critic_lr=1e-3, actor_lr=0.0)
    critic0, actor0 = snapshot(agent.critic), snapshot(agent.actor)
    agent.update(make_batch())
    assert all(torch.equal(a, b) for a, b in zip(actor0, agent.actor.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(critic0, agent.critic.parameters()))


@pytest.mark.parametrize(("target_entropy", "direction"), [(-100.0, -1), (100.0, 1)])
def test_temperature_moves_toward_entropy_target(target_entropy: float, direction: int) -> None:
    agent = make_agent(target_entropy=target_entropy, alpha_lr=1e-2, init_alpha=0.3)
    assert agent.target_entropy == target_entropy
    before = float(agent.log_alpha.detach())
    assert before == pytest.approx(np.log(0.3), rel=1e-6)
    metrics = agent.update(make_batch())
    # entropy above target -> alpha decreases; below -> increases
    assert (float(metrics["entropy"]) > target_entropy) == (direction < 0)
    after = float(agent.log_alpha.detach())
    assert np.sign(after - before) == direction
    assert abs(after - before) == pytest.approx(1e-2, rel=0.05)  # Adam's first step has size lr
    assert make_agent().target_entropy == -ACT_DIM  # default -|A|


def test_td_target_bootstraps_unless_terminated() -> None:
    agent = make_agent(gamma=0.9)
    for _ in range(3):
        agent.update(make_batch(seed=1))
    last_bias = agent.critic.biases[-1]  # (K, 1, 1): dL/db_k = mean_b (q_k - y)
    targets = {}
    for term in (0.0, 1.0):
        batch = make_batch(seed=4, terminated=term)
        torch.manual_seed(11)
        total, _ = agent._losses(*loss_args(batch))
        (g,) = grads(total, [last_bias])
        q = agent.critic(agent.critic_norm(batch["obs_critic"]), batch["action"]).detach()
        y_mean = q.mean(1) - g.flatten()  # one value per critic; all equal since y is shared
        torch.testing.assert_close(y_mean, y_mean[:1].expand_as(y_mean), rtol=1e-5, atol=1e-5)
        targets[term] = float(y_mean[0])
    batch = make_batch(seed=4)
    ref = manual_losses(agent, batch, seed=11)
    soft_q = float(ref["soft_q"].mean())
    assert targets[1.0] == pytest.approx(float(batch["reward"].mean()), abs=1e-5)  # no bootstrap
    assert targets[0.0] - targets[1.0] == pytest.approx(0.9 * soft_q, rel=1e-4, abs=1e-5)
    assert abs(soft_q) > 1e-3  # the difference is not trivially zero


def test_sac_state_dict_round_trip_continues_identically() -> None:
    a = make_agent(seed=0)
    a.observe({"policy": torch.randn(20, 6) * 2, "critic": torch.randn(20, 9) + 1})
    batch = make_batch()
    for _ in range(4):
        a.update(batch)
    sd = a.state_dict()
    for key in ("actor", "critic", "critic_target", "log_alpha", "actor_norm", "critic_norm", "optimizer"):
        assert key in sd
    b = make_agent(seed=123)
    assert not torch.equal(next(a.actor.parameters()), next(b.actor.parameters()))
    b.load_state_dict(sd)
    assert b.num_updates == 4
    obs = {"policy": torch.randn(8, 6), "critic": torch.randn(8, 9)}
    assert torch.equal(a.act(obs, deterministic=True), b.act(obs, deterministic=True))
    for _ in range(3):
        torch.manual_seed(7)
        ma = a.update(batch)
        torch.manual_seed(7)
        mb = b.update(batch)
        assert torch.equal(ma["critic_loss"], mb["critic_loss"])
    for net in ("actor", "critic", "critic_target", "actor_norm", "critic_norm"):
        for (ka, va), (kb, vb) in zip(getattr(a, net).state_dict().items(), getattr(b, net).state_dict().items()):
            assert ka == kb and torch.equal(va, vb), (net, ka)
    assert torch.equal(a.log_alpha, b.log_alpha)
    assert_tree_equal(a.optimizer.state_dict(), b.optimizer.state_dict())


def test_delayed_actor_updates_only_the_critics_in_between() -> None:
    agent = make_agent(actor_delay=3)
    batch = make_batch()
    actor0 = [p.clone() for p in agent.actor.parameters()]
    alpha0 = agent.log_alpha.detach().clone()
    agent.update(batch)  # update 0: actor, critics and temperature
    actor1 = [p.clone() for p in agent.actor.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(actor0, actor1))
    alpha1 = agent.log_alpha.detach().clone()
    assert not torch.equal(alpha0, alpha1)
    critic1 = [p.clone() for p in agent.critic.parameters()]
    agent.update(batch)  # updates 1 and 2: critics only
    agent.update(batch)
    assert all(torch.equal(a, b) for a, b in zip(actor1, agent.actor.parameters()))
    assert torch.equal(alpha1, agent.log_alpha.detach())
    assert any(not torch.equal(a, b) for a, b in zip(critic1, agent.critic.parameters()))
    assert agent.optimizer.t == [1, 3, 1]  # per-group Adam step counts (actor, critics, temperature)
    agent.update(batch)  # update 3: actor again
    assert any(not torch.equal(a, b) for a, b in zip(actor1, agent.actor.parameters()))


def test_lr_schedule_decays_linearly_to_the_configured_fraction() -> None:
    agent = make_agent(actor_lr=1e-3, critic_lr=2e-3, lr_decay_to=0.25)
    actor = agent.optimizer.group_slices[0]
    critic = agent.optimizer.group_slices[1]
    agent.set_progress(0.0)
    assert float(agent.optimizer.lr[actor][0]) == pytest.approx(1e-3)
    agent.set_progress(0.5)
    assert float(agent.optimizer.lr[critic][0]) == pytest.approx(2e-3 * (1 - 0.75 * 0.5))
    agent.set_progress(2.0)  # clamped at the end of the schedule
    assert float(agent.optimizer.lr[actor][0]) == pytest.approx(0.25e-3)
