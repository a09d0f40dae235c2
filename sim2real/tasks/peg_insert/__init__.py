"""Task ``peg-insert`` (the env and its configs are in :mod:`.env`, whose docstring describes the task).

Not registered yet: its training (a privileged teacher, then a tactile student distilled with the teacher's critic)
comes with the distillation module.
"""

from sim2real.tasks.peg_insert.env import TASK, PegInsertConfig, PegInsertEnv, PegRandomization, obs_groups, scene_xml

__all__ = ["TASK", "PegInsertConfig", "PegInsertEnv", "PegRandomization", "obs_groups", "scene_xml"]
