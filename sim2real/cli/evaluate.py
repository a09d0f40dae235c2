"""``sim2real eval``: the figures of an exported policy in the env of its task (:mod:`sim2real.eval.policy`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sim2real.cli.common import resolve_policy


def cmd_eval(args: argparse.Namespace) -> int:
    from sim2real.eval.policy import evaluate_policy_file, print_report

    onnx_path = resolve_policy(args.source)
    spec, results = evaluate_policy_file(onnx_path, args.episodes, args.seed, Path(args.out) if args.out else None,
                                         tuple(args.starts), args.sim)  # fmt: skip
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_report(spec, results)
    return 0
