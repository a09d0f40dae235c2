"""Layer 5: ``sim2real eval`` of an exported policy (the task's own evaluation, or whole-episode returns)."""
