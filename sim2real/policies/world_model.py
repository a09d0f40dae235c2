"""Physics-informed world model of a quadrotor: the simulator's own dynamics with learnable physical parameters.

The analytic part is :meth:`~sim2real.sim.quadrotor.QuadrotorDynamics.rk4_step` itself (reused, not copied; it is
plain differentiable torch). Its per-env parameter row is the nominal model's scaled by learnable factors::

    p = p_nominal * exp(s)      s = (s_mass, s_inertia, s_thrust, s_torque_coeff, s_motor_tau) log-scales
    F_ext = m_nominal g * f     constant external force (world) in units of the nominal weight: wind, payload
    T_ext = tau_ref * t         constant external torque (body), tau_ref = one rotor's hover thrust on its arm

bounded for the optimiser: ``s = tanh(raw)`` (a factor of at most e either way), ``f, t = 0.5 tanh(raw)``.

A robot reports odometry, not motor speeds: a :class:`Flight` holds odometry ``(T + 1, 13)`` = position,
quaternion ``(w, x, y, z)``, world velocity, body rate, and the commanded actions ``(T, 4)``. The model carries
the motor state itself, reconstructed from the commands by its own first-order motor model.

Fitting (:func:`fit`) minimises the multi-step prediction error over windows of ``horizon`` control steps,
back-propagated through the integrator, plus a Gaussian prior on the log-scales centred on the simulator's
parameters (MAP). ``bootstrap`` models are fitted in one batched optimisation on resampled windows; their spread
is the confidence of each parameter. :class:`FitReport` also gives held-out 1-step and 50-step open-loop errors
of the fitted model against the prior (nominal) one.

Identifiability (what data can tell): translation sees thrust / mass, rotation sees thrust x arm / inertia, yaw
sees torque coefficient x thrust / J_zz. The default fits mass, thrust, yaw-torque coefficient, motor time
constants and the external force and torque, and keeps the inertia at its prior (``fit`` selects).

With ``WorldModelConfig.residual`` set, an ensemble of small networks (:mod:`sim2real.policies.residual`) is then
trained on what the fitted physics still misses one step ahead; rollouts add its mean correction and its
disagreement is the model's uncertainty.

``WorldModelConfig.physics = False`` is the purely learned model of MBPO-style model-based RL, kept for the
comparison: no physics step and no motor model (a step holds the odometry and takes the command as the motor
state), and the ensemble learns the whole odometry increment from the data alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from sim2real.policies.residual import CORRECTED, WHOLE, ResidualConfig, ResidualEnsemble, features, fit_residual
from sim2real.sim.quadrotor import OMEGA, PARAM_GROUPS, POS, QUAT, RPM, STATE_DIM, QuadrotorDynamics, QuadrotorModel

ODOM_DIM = OMEGA.stop
"""Odometry width: position 3 | quaternion 4 | velocity (world) 3 | angular velocity (body) 3."""
SCALES = tuple(PARAM_GROUPS)
"""The learnable log-scales, each multiplying its group of columns of the parameter row."""
FITTABLE = (*SCALES, "force", "torque")


@dataclass
class Flight:
    """One contiguous logged flight: odometry ``(T + 1, 13)``, the actions ``(T, 4)`` in [-1, 1] at ``dt``.

    ``target``: the set-point the robot was holding at each odometry row ``(T + 1, 3)`` (None: the origin).
    """

    odom: torch.Tensor
    action: torch.Tensor
    dt: float
    target: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.odom, self.action = self.odom.float(), self.action.float()
        if self.odom.ndim != 2 or self.odom.shape[1] != ODOM_DIM:
            raise ValueError(f"odometry must be (T + 1, {ODOM_DIM}), got {tuple(self.odom.shape)}")
        if self.action.shape != (self.odom.shape[0] - 1, 4):
            raise ValueError(f"actions must be ({self.odom.shape[0] - 1}, 4) for {self.odom.shape[0]} odometry rows, "
                             f"got {tuple(self.action.shape)}")  # fmt: skip
        if not self.dt > 0:
            raise ValueError(f"dt must be > 0, got {self.dt}")
        if self.target is None:
            self.target = torch.zeros(self.odom.shape[0], 3)
        if self.target.shape != (self.odom.shape[0], 3):
            raise ValueError(f"set-points must be ({self.odom.shape[0]}, 3), got {tuple(self.target.shape)}")

    @property
    def steps(self) -> int:
        return int(self.action.shape[0])

    @property
    def targets(self) -> torch.Tensor:
        """The set-points ``(T + 1, 3)``."""
        assert self.target is not None  # filled in by __post_init__
        return self.target

    def piece(self, start: int, end: int) -> Flight:
        """Steps ``start .. end - 1`` (odometry rows ``start .. end``) as a flight of its own."""
        return Flight(self.odom[start : end + 1], self.action[start:end], self.dt, self.targets[start : end + 1])


def clean_flights(flights: list[Flight], min_steps: int) -> tuple[list[Flight], dict[str, int]]:
    """Cut every flight at non-finite rows (odometry or action) and drop pieces shorter than ``min_steps``.

    Returns the pieces and the counts ``{"flights", "pieces", "steps", "non_finite_rows", "short_steps"}``.
    """
    out, counts = [], {"flights": len(flights), "pieces": 0, "steps": 0, "non_finite_rows": 0, "short_steps": 0}
    for f in flights:
        good = torch.isfinite(f.odom[:-1]).all(1) & torch.isfinite(f.odom[1:]).all(1) & torch.isfinite(f.action).all(1)
        counts["non_finite_rows"] += int((~good).sum())
        start = 0
        for end in [*(~good).nonzero().flatten().tolist(), f.steps]:  # a bad step ends a piece
            if end - start >= min_steps:
                out.append(f.piece(start, end))
            elif end > start:
                counts["short_steps"] += end - start
            start = end + 1
    counts["pieces"], counts["steps"] = len(out), sum(f.steps for f in out)
    return out, counts


@dataclass
class WorldModelConfig:
    """How the world model is fitted."""

    fit: tuple[str, ...] = ("mass", "thrust", "torque_coeff", "motor_tau", "force", "torque")
    """What is learned (of :data:`FITTABLE`); the rest stays at the prior."""
    horizon: int = 10
    """Control steps predicted from each window's start (the loss runs through the integrator)."""
    iterations: int = 10
    """Rounds of L-BFGS (up to 20 steps each); the motor states are reconstructed between rounds."""
    windows: int = 512
    """Windows per model."""
    prior_std: float = 0.5
    """Standard deviation of the Gaussian prior on each log-scale (and on the external force / torque in their units)."""
    bootstrap: int = 4
    """Models fitted on resampled windows; their spread is the confidence."""
    burn_in_s: float = 2.0
    """Seconds at the start of each flight that no window starts in (the reconstructed motor state settles)."""
    holdout_fraction: float = 0.2
    """The last part of the data (in time) kept for the prediction errors of the report."""
    residual: ResidualConfig | None = None
    """Train the learned residual ensemble after the physics (None: physics only)."""
    physics: bool = True
    """False: no physics prior at all, a purely learned ensemble (``residual``, default settings if None)."""
    seed: int = 0


class QuadrotorWorldModel(nn.Module):
    """``K`` quadrotor models (a bootstrap ensemble) around one nominal model; see the module docstring."""

    def __init__(self, nominal: QuadrotorModel, k: int = 1, physics: bool = True) -> None:
        super().__init__()
        self.nominal_model, self.physics = nominal, physics
        self.dyn = QuadrotorDynamics(nominal)
        self.register_buffer("nominal", torch.tensor(nominal.param_vector(), dtype=torch.float32))
        self.nominal: torch.Tensor
        self.log_scale = nn.Parameter(torch.zeros(k, len(SCALES)))
        self.force = nn.Parameter(torch.zeros(k, 3))
        self.torque = nn.Parameter(torch.zeros(k, 3))
        self.weight_n = nominal.mass * nominal.gravity  # unit of the external force [N]
        arm = max(abs(c) for xyz in nominal.rotor_positions for c in xyz[:2])
        self.torque_ref = self.weight_n / 4 * arm  # one rotor's hover thrust on its arm [N m]
        self.residual: ResidualEnsemble | None = None
        """The learned correction of velocity and body rate after each physics step (None: physics only)."""

    @property
    def k(self) -> int:
        return int(self.log_scale.shape[0])

    def log_scales(self) -> torch.Tensor:
        """``(K, 5)`` log-scales of :data:`SCALES`, each in ``(-1, 1)``."""
        return torch.tanh(self.log_scale)

    def params(self) -> torch.Tensor:
        """The parameter rows ``(K, 10)`` (:data:`~sim2real.sim.quadrotor.PARAM_NAMES`)."""
        s = torch.exp(self.log_scales())
        width = [PARAM_GROUPS[name].stop - PARAM_GROUPS[name].start for name in SCALES]
        return self.nominal * torch.repeat_interleave(s, torch.tensor(width, device=s.device), dim=1)  # (groups in order)

    def external(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Constant external force (world) ``(K, 3)`` [N] and torque (body) ``(K, 3)`` [N m]."""
        return 0.5 * torch.tanh(self.force) * self.weight_n, 0.5 * torch.tanh(self.torque) * self.torque_ref

    def motor_speeds(self, action: torch.Tensor, dt: float, r0: torch.Tensor | None = None) -> torch.Tensor:
        """Motor speeds ``(K, T + 1, 4)`` reconstructed from actions ``(T, 4)`` by each model's motor model.

        ``r_{t+1} = r_sp + (r_t - r_sp) exp(-dt / tau)``, ``tau`` = rise or fall constant, from ``r0`` (default: the
        first set-point). Without the physics the motor state is the last command: ``r_{t+1} = r_sp``.
        """
        p = self.params()
        r_sp = (action.clamp(-1.0, 1.0) + 1.0) * 0.5  # (T, 4)
        if not self.physics:
            first = r_sp[:1].expand(self.k, 4) if r0 is None else r0
            return torch.cat((first[:, None], r_sp[None].expand(self.k, -1, -1)), 1)
        rise, fall = torch.exp(-dt / p[:, 8:9]), torch.exp(-dt / p[:, 9:10])  # (K, 1)
        r = r_sp[:1].expand(self.k, 4) if r0 is None else r0
        out = [r]
        for t in range(len(r_sp)):
            decay = torch.where(r_sp[t] > r, rise, fall)
            r = r_sp[t] + (r - r_sp[t]) * decay
            out.append(r)
        return torch.stack(out, 1)

    def rollout(self, state: torch.Tensor, actions: torch.Tensor, dt: float,
                extra: tuple[torch.Tensor, torch.Tensor] | None = None,
                scale: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Predicted states ``(K, B, H, 17)`` for start states ``(K, B, 17)`` and actions ``(K, B, H, 4)``.

        ``extra``: force (world) and torque (body) ``(B, 3)`` each, added to every member's external ones;
        ``scale``: ``(B, 10)`` factors on every member's parameter row (a domain randomisation around the fit).
        """
        k, b, h = actions.shape[:3]
        p = self.params()[:, None].expand(k, b, -1)
        p = (p if scale is None else p * scale).reshape(k * b, -1)
        f, t = (x[:, None].expand(k, b, 3) for x in self.external())
        if extra is not None:
            f, t = f + extra[0], t + extra[1]
        f, t = f.reshape(k * b, 3), t.reshape(k * b, 3)
        s = state.reshape(k * b, STATE_DIM)
        out = []
        for i in range(h):
            a = actions[:, :, i].reshape(k * b, 4)
            r_sp = (a.clamp(-1.0, 1.0) + 1.0) * 0.5
            if self.physics:
                nxt = self.dyn.rk4_step(s, r_sp, p, f, t, dt)
            else:  # hold the odometry; the motor state is the command (the ensemble predicts the increment)
                nxt = torch.cat((s[:, : RPM.start], r_sp), 1)
            if self.residual is not None:  # what the physics misses, from the state the step started in
                x, fix = self.residual.target, self.residual.correction(s, a)
                nxt = torch.cat((nxt[:, : x.start], nxt[:, x] + fix, nxt[:, x.stop :]), 1)
                if not self.physics:  # a learned quaternion increment leaves the unit sphere
                    q = nxt[:, QUAT] / nxt[:, QUAT].norm(dim=-1, keepdim=True).clamp_min(1e-6)
                    nxt = torch.cat((nxt[:, : QUAT.start], q, nxt[:, QUAT.stop :]), 1)
            s = nxt
            out.append(s)
        return torch.stack(out, 1).reshape(k, b, h, STATE_DIM)

    @torch.no_grad()
    def set_physics(self, scales: dict[str, float], force_n: tuple[float, float, float] = (0.0, 0.0, 0.0),
                    torque_nm: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:  # fmt: skip
        """Set every member's physics to known values (the inverse of :meth:`summary`).

        ``scales``: factors on :data:`SCALES` (``{"mass": 1.25}``; absent ones 1); the external force (world) [N] and
        torque (body) [N m]. The parametrisation bounds them: factors in ``(1/e, e)``, force and torque below half
        the weight and half a rotor's hover torque.
        """
        unknown = set(scales) - set(SCALES)
        ext = torch.tensor([*force_n, *torque_nm]) / torch.tensor([self.weight_n] * 3 + [self.torque_ref] * 3)
        log = torch.tensor([math.log(scales.get(name, 1.0)) for name in SCALES])
        if unknown or not (log.abs() < 1).all() or not (ext.abs() < 0.5).all():
            raise ValueError(f"physics out of the model's range: scales {scales}, force {force_n} N, torque {torque_nm} N m")
        self.log_scale.copy_(torch.atanh(log).expand_as(self.log_scale))
        self.force.copy_(torch.atanh(2 * ext[:3]).expand_as(self.force))
        self.torque.copy_(torch.atanh(2 * ext[3:]).expand_as(self.torque))

    def prior_loss(self, std: float, fitted: tuple[str, ...]) -> torch.Tensor:
        """``sum (x / std)^2 / 2`` over the fitted log-scales and external force/torque, per model ``(K,)``."""
        mask = torch.tensor([name in fitted for name in SCALES], device=self.log_scale.device)
        f, t = 0.5 * torch.tanh(self.force), 0.5 * torch.tanh(self.torque)
        loss = (self.log_scales() * mask).square().sum(1)
        loss = loss + f.square().sum(1) * ("force" in fitted) + t.square().sum(1) * ("torque" in fitted)
        return 0.5 * loss / std**2

    def summary(self) -> dict[str, dict[str, float]]:
        """Each fitted quantity relative to the prior: ``{"mass": {"mean": 1.23, "std": 0.01}, ...}``."""
        with torch.no_grad():
            scales = torch.exp(self.log_scales())
            f, t = self.external()
            rows = {name: scales[:, i] for i, name in enumerate(SCALES)}
            rows.update({f"force_{a}": f[:, i] for i, a in enumerate("xyz")})
            rows.update({f"torque_{a}": t[:, i] for i, a in enumerate("xyz")})
            return {k: {"mean": float(v.mean()), "std": float(v.std()) if self.k > 1 else 0.0} for k, v in rows.items()}


def _full_state(odom: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The simulator's 17-state from odometry ``(..., 13)`` and motor speeds ``(..., 4)``."""
    return torch.cat((odom, r), -1)


class NotEnoughData(ValueError):
    """Too little clean, contiguous data for one fitting window (e.g. flights cut into pieces by missed ticks)."""


@dataclass
class FitReport:
    """What :func:`fit` found (relative scales, external force/torque in N and N m) and how well it predicts."""

    parameters: dict[str, dict[str, float]]
    data: dict[str, int]
    prediction_error: dict[str, dict[str, float]] = field(default_factory=dict)
    """``{"fitted"|"physics"|"prior": {"1_step_m", "50_step_m"}}``: mean position error on the held-out data
    (``physics``: the fitted physics without the residual, when there is one)."""
    loss: list[float] = field(default_factory=list)


def _windows(flights: list[Flight], horizon: int, burn_in: int) -> list[tuple[int, int]]:
    return [(i, t) for i, f in enumerate(flights) for t in range(burn_in, f.steps - horizon + 1)]


def _split(flights: list[Flight], fraction: float, min_steps: int) -> tuple[list[Flight], list[Flight]]:
    """The last ``fraction`` of each flight (in time) held out, when both parts keep ``min_steps``."""
    train, held = [], []
    for f in flights:
        cut = int(round(f.steps * (1.0 - fraction)))
        if fraction > 0 and cut >= min_steps and f.steps - cut >= min_steps:
            train.append(f.piece(0, cut))
            held.append(f.piece(cut, f.steps))
        else:
            train.append(f)
    return train, held


def prediction_error(model: QuadrotorWorldModel, flights: list[Flight], steps: int, burn_in: int) -> float:
    """Mean open-loop position error [m] after ``steps`` control steps, from every start past ``burn_in``."""
    errs, one = [], model_slice(model)
    with torch.no_grad():
        for f in flights:
            starts = torch.arange(burn_in, f.steps - steps + 1)
            if len(starts) == 0:
                continue
            r = one.motor_speeds(f.action, f.dt)[0]  # (T + 1, 4)
            idx = starts[:, None] + torch.arange(steps)  # (B, H)
            pred = one.rollout(_full_state(f.odom[starts], r[starts])[None], f.action[idx][None], f.dt)
            errs.append((pred[0, :, -1, POS] - f.odom[starts + steps, POS]).norm(dim=-1))
    return float(torch.cat(errs).mean()) if errs else math.nan


def model_slice(model: QuadrotorWorldModel) -> QuadrotorWorldModel:
    """A one-model world model with the ensemble's mean parameters."""
    one = QuadrotorWorldModel(model.nominal_model, 1, model.physics)
    one.residual = model.residual
    with torch.no_grad():
        one.log_scale.copy_(model.log_scale.mean(0, keepdim=True))
        one.force.copy_(model.force.mean(0, keepdim=True))
        one.torque.copy_(model.torque.mean(0, keepdim=True))
    return one


def fit(flights: list[Flight], nominal: QuadrotorModel, cfg: WorldModelConfig | None = None,
        init: QuadrotorWorldModel | None = None) -> tuple[QuadrotorWorldModel, FitReport]:  # fmt: skip
    """Fit the world model to logged flights (see the module docstring).

    ``init`` warm-starts the physics from an earlier fit (its residual, if any, is trained anew).

    Raises:
        ValueError: an unknown quantity in ``cfg.fit`` or flights of different control periods.
        NotEnoughData: too little clean data for one window (a ``ValueError``).
    """
    cfg = cfg or WorldModelConfig()
    unknown = set(cfg.fit) - set(FITTABLE)
    if unknown:
        raise ValueError(f"cannot fit {sorted(unknown)}; fittable: {', '.join(FITTABLE)}")
    dt = flights[0].dt if flights else 0.0
    if any(f.dt != dt for f in flights):
        raise ValueError(f"flights have different control periods: {sorted({f.dt for f in flights})}")
    burn_in = int(round(cfg.burn_in_s / dt)) if dt else 0
    clean, counts = clean_flights(flights, burn_in + cfg.horizon)
    train, held = _split(clean, cfg.holdout_fraction, burn_in + max(cfg.horizon, 50))
    windows = _windows(train, cfg.horizon, burn_in)
    if not windows:
        raise NotEnoughData(f"no {cfg.horizon}-step window in the data after cleaning ({counts})")
    gen = torch.Generator().manual_seed(cfg.seed)
    if not cfg.physics:
        return _fit_learned(train, held, nominal, cfg, burn_in, {**counts, "train_windows": len(windows)})
    model = init if init is not None else QuadrotorWorldModel(nominal, cfg.bootstrap)
    model.residual = None  # the physics is fitted alone
    # every flight laid end to end: a window (flight i, step t) starts at odometry row o_i + t, action row a_i + t
    odom_all, act_all = torch.cat([f.odom for f in train]), torch.cat([f.action for f in train])
    o_off = torch.tensor([0, *torch.cumsum(torch.tensor([f.steps + 1 for f in train]), 0).tolist()[:-1]])
    a_off = torch.tensor([0, *torch.cumsum(torch.tensor([f.steps for f in train]), 0).tolist()[:-1]])
    w = torch.tensor(windows)  # (W, 2)
    w_odom, w_act = o_off[w[:, 0]] + w[:, 1], a_off[w[:, 0]] + w[:, 1]
    # the bootstrap: every model draws its windows from its own resample of the window list
    resample = torch.randint(len(windows), (model.k, len(windows)), generator=gen)
    odom_scale = odom_all.std(0).clamp_min(1e-3)  # per-component error scale
    steps_h = torch.arange(cfg.horizon)
    mask = torch.tensor([n in cfg.fit for n in SCALES])
    # L-BFGS on a fixed sample of windows per model: a dozen parameters in a narrow valley (thrust / mass is what
    # translation sees best) converge in tens of steps where first-order methods wander
    pick = resample[:, torch.randint(len(windows), (cfg.windows,), generator=gen)]  # (K, B) window ids
    o, a = w_odom[pick], w_act[pick]  # (K, B) first rows
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=20, history_size=20, line_search_fn="strong_wolfe")
    loss_log: list[float] = []
    motors = torch.empty(0)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        s0 = _full_state(odom_all[o], torch.gather(motors, 1, o[..., None].expand(-1, -1, 4)))  # (K, B, 17)
        pred = model.rollout(s0, act_all[a[..., None] + steps_h], dt)[..., :ODOM_DIM]  # (K, B, H, 13)
        err = (pred - odom_all[o[..., None] + 1 + steps_h]) / odom_scale
        data = err.square().sum(-1).mean((1, 2))  # (K,)
        loss = (data + model.prior_loss(cfg.prior_std, cfg.fit) / len(windows)).sum()
        loss.backward()
        with torch.no_grad():  # what is not fitted keeps the prior
            if model.log_scale.grad is not None:
                model.log_scale.grad *= mask
            for name, p in (("force", model.force), ("torque", model.torque)):
                if name not in cfg.fit and p.grad is not None:
                    p.grad.zero_()
        loss_log.append(float(data.detach().mean()))
        return loss

    for _ in range(cfg.iterations):
        with torch.no_grad():  # motor speeds under the current motor model, laid out like the odometry rows
            motors = torch.cat([model.motor_speeds(f.action, f.dt) for f in train], 1)  # (K, rows, 4)
        opt.step(closure)
    physics = model_slice(model)
    if cfg.residual is not None:
        model.residual = _train_residual(physics, train, burn_in, cfg.residual)
    report = FitReport(model.summary(), {**counts, "train_windows": len(windows), "held_out_steps":
                                         sum(f.steps for f in held)}, loss=loss_log)  # fmt: skip
    if held:
        models = {"fitted": model, **({"physics": physics} if model.residual is not None else {}),
                  "prior": QuadrotorWorldModel(nominal, 1)}  # fmt: skip
        report.prediction_error = _held_out_errors(models, held, burn_in)
    return model, report


def _held_out_errors(models: dict[str, QuadrotorWorldModel], held: list[Flight], burn_in: int) -> dict[str, dict[str, float]]:
    """Each model's mean 1-step and 50-step open-loop position error on the held-out flights."""
    return {name: {"1_step_m": prediction_error(m, held, 1, burn_in), "50_step_m": prediction_error(m, held, 50, burn_in)}
            for name, m in models.items()}  # fmt: skip


def _fit_learned(train: list[Flight], held: list[Flight], nominal: QuadrotorModel, cfg: WorldModelConfig,
                 burn_in: int, data: dict[str, int]) -> tuple[QuadrotorWorldModel, FitReport]:  # fmt: skip
    """The purely learned model (``cfg.physics = False``): only the ensemble, on whole odometry increments."""
    model = QuadrotorWorldModel(nominal, 1, physics=False)
    model.residual = _train_residual(model, train, burn_in, cfg.residual or ResidualConfig(seed=cfg.seed), WHOLE)
    report = FitReport({}, {**data, "held_out_steps": sum(f.steps for f in held)})
    if held:
        report.prediction_error = _held_out_errors({"fitted": model, "prior": QuadrotorWorldModel(nominal, 1)}, held, burn_in)
    return model, report


def _train_residual(physics: QuadrotorWorldModel, flights: list[Flight], burn_in: int,
                    cfg: ResidualConfig, target: slice = CORRECTED) -> ResidualEnsemble:  # fmt: skip
    """The ensemble on the one-step errors of ``target`` of the fitted physics (mean model) over ``flights``."""
    xs, ys = [], []
    with torch.no_grad():
        for f in flights:
            r = physics.motor_speeds(f.action, f.dt)[0]  # (T + 1, 4)
            s = _full_state(f.odom[burn_in:-1], r[burn_in:-1])
            a = f.action[burn_in:]
            pred = physics.rollout(s[None], a[None, :, None], f.dt)[0, :, 0]
            xs.append(features(s, a))
            ys.append(f.odom[burn_in + 1 :, target] - pred[:, target])
    return fit_residual(torch.cat(xs), torch.cat(ys), cfg, target)

