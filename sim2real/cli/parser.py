"""The parser of the ``sim2real`` command: every verb and option, with its help."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  sim2real list
  sim2real train quadrotor-hover --seed 1 --num-envs 32
  sim2real train quadrotor-hover --set sac.batch_size=512 --set env.reward.termination_penalty=50
  sim2real train quadrotor-hover --resume runs/quadrotor-hover/20261121-101500_sac_s0
  sim2real train peg-insert --stage teacher
  sim2real train peg-insert --stage student --teacher runs/peg-insert/20261202-101500_teacher_s0
  sim2real export onnx runs/quadrotor-hover/20261121-101500_sac_s0
  sim2real export c runs/quadrotor-hover/20261121-101500_sac_s0 --target cortex-m4
  sim2real export firmware runs/quadrotor-hover/20261121-101500_sac_s0 --board netduinoplus2 --verify
  sim2real hil runs/quadrotor-hover/20261121-101500_sac_s0 --qemu netduinoplus2
  sim2real hil runs/quadrotor-hover/20261121-101500_sac_s0 --port /dev/ttyACM0
  sim2real eval runs/quadrotor-hover/20261121-101500_sac_s0 --episodes 200
  sim2real launch launch/quadrotor_sim.launch.xml policy:=runs/quadrotor-hover/20261121-101500_sac_s0/exported/policy.onnx
  sim2real launch quadrotor_sim.launch.xml policy:=policy.onnx namespace:=cf2 --print
  sim2real sysid runs/flight_20261202-101500.mcap --json
  sim2real finetune runs/quadrotor-hover/20261121-101500_sac_s0 --real quadrotor-hover --real-params config/shifts/all.yaml
  sim2real demo
"""

LAUNCH_EXAMPLES = """examples:
  sim2real launch launch/quadrotor_sim.launch.xml policy:=policy.onnx                # until Ctrl-C
  sim2real launch quadrotor_sim.launch.xml policy:=policy.onnx --print               # show, start nothing
  sim2real launch quadrotor_sim.launch.xml policy:=policy.onnx seed:=3 --duration 30 # scripted run
  sim2real launch quadrotor_robot.launch.xml policy:=policy.onnx odom_topic:=/mocap/cf1/odom --exit-on-failure
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``sim2real`` command (every option with its help)."""
    p = argparse.ArgumentParser(
        prog="sim2real",
        description="Train control policies in batched simulators, export them (ONNX, C, firmware), evaluate them "
        "in simulation and hardware-in-the-loop.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="list the registered tasks", description="List the registered tasks.")

    t = sub.add_parser(
        "train",
        help="train a policy with SAC",
        description="Train SAC on a task. Runs are written to LOG_DIR/<task>/<time>_<name>_s<seed>/ "
        "(checkpoint.pt, config.yaml, TensorBoard events, summary.json, learning_curve.png).",
    )
    t.add_argument("task", help="task name (see `sim2real list`)")
    t.add_argument("--seed", type=int, default=None, help="random seed (default 0); same seed = same run")
    t.add_argument("--num-envs", type=int, default=None, help="parallel simulated envs (default: the task's tuned value)")
    t.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default cpu)")
    t.add_argument("--total-steps", type=int, default=None, help="env steps summed over envs (default: task's value)")
    t.add_argument("--name", default=None, help="run name used in the run directory (default sac)")
    t.add_argument("--log-dir", default=None, help="root of the run directories (default runs)")
    t.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue the run in RUN_DIR from its checkpoint")
    t.add_argument(
        "--stage",
        choices=["teacher", "student"],
        default="teacher",
        help="teacher (default): the task's tuned run (for peg-insert the privileged teacher, whose actor reads the "
        "simulator's state); student: a new actor on what the robot senses, distilled from --teacher through the "
        "teacher's critic (asymmetric actor-critic distillation; tasks with a student stage only)",
    )
    t.add_argument("--teacher", metavar="RUN", default=None, help="the teacher's run directory or checkpoint (--stage student)")
    t.add_argument(
        "--critic",
        choices=["frozen", "finetune", "scratch"],
        default=None,
        help="the student's critic: the teacher's, frozen or finetuned on the student's data (default: the task's value; "
        "peg-insert finetunes); scratch: a new critic, nothing from the teacher (the ablation)",
    )
    t.add_argument(
        "--dagger-steps",
        type=int,
        default=None,
        metavar="N",
        help="env steps of DAgger warm start (the student imitates the teacher on its own states) before RL (default: "
        "the task's value)",
    )
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any setting by dotted key, repeatable: e.g. sac.batch_size=512, updates_per_step=2, "
        "env.reward.position=40 (see --print-config for every key)",
    )
    t.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    t.add_argument("--quiet", action="store_true", help="no progress bar; print the summary only")

    e = sub.add_parser(
        "eval",
        help="evaluate an exported policy in the simulator",
        description="Run the ONNX policy (onnxruntime) in the simulator. quadrotor-hover: N episodes of 5 s with "
        "per-episode disturbances from the `nominal` and `hard` start distributions, figures plus eval.json and "
        "trajectories.png. Any other task: N whole episodes in the env rebuilt from the policy's metadata, "
        "return/length statistics (and the task's validation figures) in eval.json. A run directory is exported "
        "first if it has no exported/policy.onnx.",
    )
    e.add_argument("source", help="run directory or policy.onnx")
    e.add_argument("--episodes", type=int, default=200, help="episodes per start distribution (default 200)")
    e.add_argument("--seed", type=int, default=0, help="seed of the evaluation episodes (default 0)")
    e.add_argument(
        "--starts", nargs="+", default=["nominal", "hard"], choices=["nominal", "hard"], help="start distributions"
    )
    e.add_argument("--out", default=None, help="directory for eval.json and trajectories.png (default: beside the policy)")
    e.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    e.add_argument(
        "--sim",
        default=None,
        metavar="ENGINE",
        help="run the policy in another physics engine than it was trained in (sim-to-sim), with the same task, "
        "observations and figures; quadrotor-hover: torch | pybullet; mujoco-halfcheetah, mujoco-hopper: mujoco | pybullet "
        "(default: the engine of its metadata)",
    )

    x = sub.add_parser("export", help="export a trained policy", description="Export a trained policy.")
    xs = x.add_subparsers(dest="format", required=True, metavar="FORMAT")
    o = xs.add_parser(
        "onnx",
        help="deterministic actor with normaliser and metadata -> policy.onnx",
        description="Write <run>/exported/policy.onnx: input `obs` [batch, obs_dim], output `actions` [batch, act_dim], "
        "metadata JSON (observation layout, action mapping, control rate, run id) in metadata_props. "
        "Refuses to write a model whose onnxruntime outputs disagree with PyTorch.",
    )
    o.add_argument("source", help="run directory or checkpoint.pt")
    o.add_argument("--out", default=None, help="output .onnx path (default <run>/exported/policy.onnx)")
    o.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    o.add_argument("--atol", type=float, default=1e-5, help="max |torch - onnxruntime| accepted (default 1e-5)")

    r = xs.add_parser(
        "ros2-control",
        help="legged policy -> ros2_control.yaml (forward_command_controller for its joints, its PD gains)",
        description="Write the ros2_control configuration a legged policy's robot runs: a controller_manager with a "
        "joint_state_broadcaster and a forward_command_controller (position commands for the policy's joints in "
        "its order, what legged_policy_node sends), and the PD gains, torque limits and default pose the policy was "
        "trained with (sim2real_pd_gains), all from the policy's metadata.",
    )
    r.add_argument("source", help="run directory (exported to ONNX first if needed) or policy.onnx")
    r.add_argument("--out", default=None, help="output YAML (default: ros2_control.yaml beside the policy)")
    r.add_argument("--controller", default="position_controller", help="name of the forward command controller")
    r.add_argument("--update-rate", type=int, default=500, help="controller_manager update rate, Hz (default 500)")

    c = xs.add_parser(
        "c",
        help="policy -> dependency-free C99 (policy.h/policy.c) for microcontrollers",
        description="Generate policy.h/policy.c from policy.onnx: weights as const arrays (flash), no malloc, no "
        "libm, static scratch buffers, one entry point policy_eval(const float *obs, float *actions) with the "
        "normaliser and action clipping inside, and a golden input/output pair plus the model hash in the header. "
        "When gcc is available the code is compiled for the host and checked against onnxruntime.",
    )
    c.add_argument("source", help="run directory (exported to ONNX first if needed) or policy.onnx")
    c.add_argument("--target", choices=["cortex-m4", "cortex-m7", "host"], default="cortex-m4",
                   help="instruction set the kernel is tuned for: fused multiply-add on cortex-m7 only (default cortex-m4)")
    c.add_argument("--out", default=None, help="output directory (default: <policy dir>/c_<target>[_int8])")
    c.add_argument("--int8", action="store_true",
                   help="int8 weights with one float scale per output row; reports the accuracy loss")
    c.add_argument("--fma", action=argparse.BooleanOptionalAction, default=None,
                   help="force fused multiply-add on or off (default: the target's choice)")
    c.add_argument("--check-samples", type=int, default=1000,
                   help="random observations for the host check against onnxruntime (0 skips it; default 1000)")

    f = xs.add_parser(
        "firmware",
        help="policy -> C -> firmware image for a QEMU board / microcontroller (arm-none-eabi-gcc)",
        description="Generate the C policy (cortex-m4 kernel) and build the firmware around it: startup code, "
        "linker script, UART protocol (framed observation in / action out, ping, info, reset; CRC-16) and a main "
        "loop that sleeps (wfi) while idle. Writes firmware.elf/.bin/.map and prints flash and RAM sizes. "
        "--verify also builds the self-test image and runs it in QEMU (exit status = golden-pair result).",
    )
    f.add_argument("source", help="run directory (exported to ONNX first if needed) or policy.onnx")
    f.add_argument("--board", required=True, choices=["netduinoplus2", "mps2-an386"],
                   help="netduinoplus2 = STM32F405 (Crazyflie 2.x MCU); mps2-an386 = ARM Cortex-M4F board")
    f.add_argument("--mode", choices=["serial", "selftest", "bench"], default="serial",
                   help="serial: protocol loop (default); selftest: golden check as exit status; bench: timing")
    f.add_argument("--int8", action="store_true", help="int8 weights (see `export c --int8`)")
    f.add_argument("--out", default=None, help="output directory (default: <policy dir>/firmware_<board>)")
    f.add_argument("--verify", action="store_true", help="also run the golden self-test in QEMU (qemu-system-arm)")

    h = sub.add_parser(
        "hil",
        help="hardware-in-the-loop: simulate on the host, compute every action on the microcontroller",
        description="Fly the quadrotor simulator on the host for --duration seconds while the device behind the "
        "serial link computes every action (a real board on /dev/tty*, or QEMU via --qemu). Checks that the "
        "device runs this policy (dimensions, model hash), compares each action with onnxruntime, falls back to "
        "--safe-action when the device stays silent after the retries, and reports the hover figures, round-trip "
        "times and link counters (hil.json, hil_trajectory.png). Exit status 0 = hover criterion met, 1 = not.",
    )
    h.add_argument("source", help="run directory or policy.onnx the device was flashed with")
    where = h.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="pyserial port or URL: /dev/ttyACM0, socket://127.0.0.1:4321, ...")
    where.add_argument("--qemu", metavar="BOARD", choices=["netduinoplus2", "mps2-an386"],
                       help="build the firmware for BOARD and run it in QEMU (netduinoplus2 = STM32F405)")
    h.add_argument("--duration", type=float, default=10.0, help="simulated flight in seconds (default 10)")
    h.add_argument("--start", choices=["nominal", "hard"], default="nominal", help="start distribution")
    h.add_argument("--seed", type=int, default=0, help="seed of the episode (default 0)")
    h.add_argument("--baudrate", type=int, default=1_000_000, help="for real serial ports (default 1000000)")
    h.add_argument("--timeout", type=float, default=0.5, help="seconds to wait for each reply (default 0.5)")
    h.add_argument("--retries", type=int, default=2, help="attempts after a timeout or transient NAK (default 2)")
    h.add_argument("--safe-action", type=float, default=-1.0,
                   help="action of every motor when the device fails a tick (default -1 = idle)")
    h.add_argument("--full-frames", action="store_true",
                   help="send the whole observation every tick (591-byte OBS frames for the quadrotor) instead of "
                   "compact OBS_STATE frames (79 bytes: the state only; the device keeps the 32-action history "
                   "itself after one full frame per episode); for comparison or firmware of protocol version 1")
    h.add_argument("--out", default=None, help="directory for hil.json and hil_trajectory.png (default: beside the policy)")
    h.add_argument("--json", action="store_true", help="print the result as JSON")

    la = sub.add_parser(
        "launch",
        help="run a ROS 2 XML launch file's sim2real nodes without ROS (dds backend)",
        description="Run the nodes of a ROS 2 XML launch file (the subset valid on Humble and Jazzy: arg, let, group, "
        "push_ros_namespace, node with param/remap/env, if/unless; $(var) $(env) $(find-pkg-share) "
        "$(find-pkg-prefix) $(dirname) $(filename) $(anon) $(not|and|or)) as ros2 launch would: one process per "
        "node with --ros-args (name, namespace, parameter files and values, remaps) and SIM2REAL_ROS_BACKEND=dds. "
        "Output lines are prefixed with [name]. Ctrl-C (or SIGTERM) sends SIGINT to every node, SIGTERM after "
        "--grace seconds, then SIGKILL; each node's exit status is reported. Exit status 0 when every node "
        "stopped cleanly, 1 otherwise, 2 on a launch file or argument error.",
        epilog=LAUNCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    la.add_argument("file", metavar="FILE",
                    help="launch file path, or a file name in $(find-pkg-share sim2real)/launch")
    la.add_argument("launch_args", nargs="*", metavar="NAME:=VALUE",
                    help="launch arguments declared by the file's <arg> tags (undeclared names are an error)")
    la.add_argument("--print", dest="print_only", action="store_true",
                    help="print the resolved arguments and processes (command lines, parameters) and start nothing")
    la.add_argument("--exit-on-failure", action="store_true",
                    help="stop every node when one exits with a non-zero status (default: report it, keep the others)")
    la.add_argument("--duration", type=float, default=None, metavar="S",
                    help="stop the launch after S seconds (scripted runs, tests); default: until Ctrl-C or no node left")
    la.add_argument("--grace", type=float, default=5.0, metavar="S",
                    help="seconds between SIGINT and SIGTERM, and between SIGTERM and SIGKILL, on shutdown (default 5)")
    la.add_argument("--verbose", action="store_true", help="debug log lines (where the package files were found)")

    s = sub.add_parser(
        "sysid",
        help="identify a quadrotor's physics from a recording of the policy node",
        description="Fit the physics-informed world model (the simulator's dynamics with learnable mass, thrust, "
        "yaw-torque coefficient, motor time constants and a constant external force and torque) to the "
        "odometry and commands of a recording: the policy node's ~/obs and ~/action topics in an MCAP file of "
        "the recorder (a file still being written is read up to its last closed chunk). The position is the "
        "observation's position error plus the set-point in force (~/setpoint_active). Prints the fitted "
        "parameters relative to the simulator's with their bootstrap spread and the held-out prediction "
        "errors; writes sysid.json.",
    )
    s.add_argument("recording", help="MCAP file of the recorder (rosbag2 layout), or a finetuning run directory (its "
                   "real_flights.pt)")
    s.add_argument("--obs-topic", default="/cf1/policy/obs", help="the policy node's observations (default /cf1/policy/obs)")
    s.add_argument("--action-topic", default="/cf1/policy/action",
                   help="the policy node's actions (default /cf1/policy/action)")
    s.add_argument("--setpoint-topic", default="/cf1/policy/setpoint_active",
                   help="the policy node's set-point in force; '' = none (the set-point was constant)")
    s.add_argument("--dt", type=float, default=None, help="control period in s (default: from the log times)")
    s.add_argument("--model", default="crazyflie-paper", choices=["crazyflie-paper", "crazyflie-newer"],
                   help="the simulator model the fit starts from and reports against (default crazyflie-paper)")
    s.add_argument("--fit", nargs="+", default=None, metavar="QUANTITY",
                   help="what to fit, of mass inertia thrust torque_coeff motor_tau force torque (default: all "
                   "but inertia, which flight data cannot separate from thrust)")
    s.add_argument("--horizon", type=int, default=10, help="control steps predicted per window (default 10)")
    s.add_argument("--bootstrap", type=int, default=4, help="models fitted on resampled data (default 4)")
    s.add_argument("--out", default=None, help="directory for sysid.json (default: beside the recording)")
    s.add_argument("--json", action="store_true", help="print the result as JSON")

    f = sub.add_parser(
        "finetune",
        help="finetune a pretrained policy on a (simulated) real robot, exploring only in a world model",
        description="The robot flies the deployed policy deterministically through a set-point schedule; a "
        "physics-informed world model is fitted to everything it flew; SAC (critics and actor from the pretrained "
        "checkpoint, the actor held near the deployed policy) trains in imagined rollouts branched from real "
        "states; a candidate that is predicted better and as safe is exported (parity-checked) and deployed; a "
        "deployed policy that flies worse than its predecessor is rolled back. Until --max-real-s seconds of "
        "real flight are used. The real robot here is the task's simulator with physics outside the training "
        "randomisation (--real-params). Writes finetune_report.json, finetune.png, TensorBoard events and every "
        "accepted policy (policies/iterNN.onnx) to --out.",
    )
    f.add_argument("run", help="the pretrained run directory (its best.pt, else checkpoint.pt) or a checkpoint file")
    f.add_argument("--real", required=True, metavar="TASK",
                   help="the real system: a task whose simulator stands in for the robot (quadrotor-hover)")
    f.add_argument("--real-params", default=None, metavar="FILE.yaml",
                   help="how the real system's physics differ from the simulator's (config/shifts/*.yaml: mass, "
                   "thrust, motor_tau, wind, drag); default: none")
    f.add_argument("--policy", default=None, metavar="ONNX",
                   help="the deployed policy (checked to be the checkpoint's actor); default: exported from RUN")
    f.add_argument("--max-real-s", type=float, default=60.0, help="seconds of real flight used in total (default 60)")
    f.add_argument("--seed", type=int, default=0, help="seed of the schedule, imagination and real system (default 0)")
    f.add_argument("--safety", default=None, metavar="FILE.yaml",
                   help="safety limits (position_box_m, setpoint_box_m, max_tilt_deg, max_speed_mps, "
                   "max_body_rate_radps, action_min, action_max); default: the built-in ones")
    f.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a finetuning setting, repeatable: e.g. seconds_per_iteration=5, horizon=10,40, "
                   "world_model.horizon=5 (see --print-config)")
    f.add_argument("--out", default=None, help="report directory (default runs/finetune/<time>_s<seed>)")
    f.add_argument("--print-config", action="store_true", help="print the resolved finetuning settings and exit")
    f.add_argument("--quiet", action="store_true", help="no line per iteration")

    d = sub.add_parser(
        "demo",
        help="train the default quadrotor task, export, evaluate, print the result",
        description="The main job in one command: train quadrotor-hover with its defaults, export ONNX, evaluate "
        "200 nominal + 200 hard episodes and print the figures against the acceptance criterion; then export the "
        "policy to C and fly 10 s hardware-in-the-loop on an emulated STM32F405 (when the ARM toolchain and QEMU "
        "are installed: make mcu-deps).",
    )
    d.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    d.add_argument("--log-dir", default="runs", help="root of the run directories (default runs)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    return p
