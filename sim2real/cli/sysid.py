"""``sim2real sysid``: the physics of a quadrotor from a recording (:mod:`sim2real.policies.world_model`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path


def cmd_sysid(args: argparse.Namespace) -> int:
    from sim2real.core.files import write_text_atomic
    from sim2real.policies.world_model import WorldModelConfig, fit
    from sim2real.ros_nodes.recordings import RecordingReport, flights_from_recording
    from sim2real.sim.quadrotor import MODELS

    if args.horizon < 1 or args.bootstrap < 1:
        raise ValueError(f"--horizon and --bootstrap must be >= 1, got {args.horizon}, {args.bootstrap}")
    path = Path(args.recording)
    if path.is_dir():  # a finetuning run: its real flights
        from sim2real.policies.finetune import FLIGHTS_FILE, load_flights

        if not (path / FLIGHTS_FILE).is_file():
            raise FileNotFoundError(f"{path} is a directory without {FLIGHTS_FILE} (not a finetuning run)")
        flights = load_flights(path / FLIGHTS_FILE)
        read = RecordingReport(transitions=sum(f.steps for f in flights), dt=flights[0].dt if flights else 0.0,
                               flights=len(flights))  # fmt: skip
    else:
        flights, read = flights_from_recording(path, args.obs_topic, args.action_topic, args.dt,
                                               setpoint_topic=args.setpoint_topic or None)  # fmt: skip
    cfg = replace(WorldModelConfig(), horizon=args.horizon, bootstrap=args.bootstrap)
    if args.fit:
        cfg = replace(cfg, fit=tuple(args.fit))
    _, report = fit(flights, MODELS[args.model], cfg)
    result = {"recording": str(path), "model": args.model, "read": asdict(read), **asdict(report)}
    result.pop("loss")
    out = Path(args.out) if args.out else (path if path.is_dir() else path.parent)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "sysid.json", json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{path}: {read.transitions} transitions at {1 / read.dt:.0f} Hz in {read.flights} flight(s) "
          f"({report.data['steps']} steps used, {report.data['non_finite_rows']} non-finite rows cut"
          f"{'' if read.complete else '; the file ends early'})")  # fmt: skip
    for name, v in report.parameters.items():
        unit = " N" if name.startswith("force") else " N m" if name.startswith("torque_") else " x nominal"
        print(f"  {name:14s} {v['mean']:+.4g} ± {v['std']:.2g}{unit}")
    for name, err in report.prediction_error.items():
        print(f"  {name} model on the held-out data: 1-step {err['1_step_m']:.2e} m, 50-step {err['50_step_m']:.2e} m")
    print(f"wrote {out / 'sysid.json'}")
    return 0
