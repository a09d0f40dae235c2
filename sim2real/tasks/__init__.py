"""Layer 4, tasks: each module registers a task with its env config, env, training defaults and validation."""
