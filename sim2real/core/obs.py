"""Observation groups, defined once: named terms with sizes and sensor noise.

An :class:`ObsGroup` is the single definition of one observation vector. Everything else is derived from it:
the offsets of each term, the concatenation order (:meth:`ObsGroup.concat`, the same code in simulation and on
the robot), the per-entry noise vector, the noise-free copy that a privileged critic group starts from
(:meth:`ObsGroup.noise_free`, mjlab's ``PrivilegedCfg``), and the layout written into an exported policy
(:meth:`ObsGroup.to_json`, read back with :meth:`ObsGroup.from_json`).

This module imports no torch at import time (the policy file reader uses it); :meth:`ObsGroup.concat` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

GROUP_JOIN = "+"
"""Joins observation group names into one input: ``"policy+tactile"`` is the two groups concatenated in that order
(rsl_rl's ``obs_groups`` lists); a learner, an exported policy and its evaluation all read such a name."""

HISTORY_TERM = "action_history"
"""Name of the term holding the policy's own past actions (whole actions, oldest first, ending the vector):
an exported policy's consumers (the microcontroller, the ROS node) keep it themselves."""


@dataclass(frozen=True)
class ObsTerm:
    """One named, contiguous part of an observation group."""

    name: str
    size: int
    frame: str = ""
    """Reference frame, unit or ordering note, e.g. ``world, m``, ``oldest->newest``."""
    noise_std: float = 0.0
    """Standard deviation of the Gaussian sensor noise added in simulation (0: noise-free or privileged)."""
    source: str = ""
    """Where a robot measures it (``imu.angular_velocity``, ``joint_state.position``, ...: the vocabulary of
    :mod:`sim2real.sim.legged`), so a deploy node assembles the observation from the policy file alone; empty:
    the task's own adapter knows (the quadrotor) or the term is privileged."""


@dataclass(frozen=True)
class ObsGroup:
    """An ordered tuple of :class:`ObsTerm`; the observation is their concatenation in this order."""

    terms: tuple[ObsTerm, ...]

    def __post_init__(self) -> None:
        names = [t.name for t in self.terms]
        if len(set(names)) != len(names):
            raise ValueError(f"observation terms must have unique names, got {names}")
        bad = [t.name for t in self.terms if t.size < 1]
        if bad:
            raise ValueError(f"observation terms must have size >= 1: {bad}")

    @classmethod
    def of(cls, *terms: ObsTerm) -> ObsGroup:
        return cls(tuple(terms))

    # ------------------------------------------------------------------------------------------ layout
    def __iter__(self) -> Iterator[ObsTerm]:
        return iter(self.terms)

    def __len__(self) -> int:
        return len(self.terms)

    @property
    def dim(self) -> int:
        """Width of the observation vector (sum of the term sizes)."""
        return sum(t.size for t in self.terms)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.terms)

    def start(self, name: str) -> int:
        """Offset of term ``name`` in the vector."""
        return self.slice(name).start

    def slice(self, name: str) -> slice:
        """``obs[..., group.slice(name)]`` is term ``name``."""
        pos = 0
        for t in self.terms:
            if t.name == name:
                return slice(pos, pos + t.size)
            pos += t.size
        raise KeyError(f"observation group has no term {name!r} (terms: {', '.join(self.names)})")

    def term(self, name: str) -> ObsTerm:
        for t in self.terms:
            if t.name == name:
                return t
        raise KeyError(f"observation group has no term {name!r} (terms: {', '.join(self.names)})")

    def noise_std(self, names: Iterable[str] | None = None) -> list[float]:
        """Noise standard deviation per entry ``(dim,)``, or of the terms ``names`` only (in group order)."""
        keep = None if names is None else set(names)
        return [t.noise_std for t in self.terms if keep is None or t.name in keep for _ in range(t.size)]

    # ------------------------------------------------------------------------------------------ derived groups
    def noise_free(self) -> ObsGroup:
        """The same terms without sensor noise (the start of a privileged critic group)."""
        return ObsGroup(tuple(replace(t, noise_std=0.0) for t in self.terms))

    def extended(self, *terms: ObsTerm) -> ObsGroup:
        """This group followed by ``terms``."""
        return ObsGroup(self.terms + tuple(terms))

    # ------------------------------------------------------------------------------------------ vectors
    def concat(self, **parts: torch.Tensor) -> torch.Tensor:
        """The observation ``(N, dim)`` from one tensor per term, ``(N, size)`` (or ``(N, ...)`` of that size).

        Raises:
            KeyError: a term is missing or an unknown one is given.
            ValueError: a part does not hold ``size`` values per row.
        """
        import torch

        if set(parts) != set(self.names):
            missing, extra = set(self.names) - set(parts), set(parts) - set(self.names)
            raise KeyError(f"observation parts: missing {sorted(missing)}, unknown {sorted(extra)}")
        rows = []
        for t in self.terms:
            x = parts[t.name]
            x = x.reshape(x.shape[0], -1)
            if x.shape[1] != t.size:
                raise ValueError(f"observation term {t.name!r} has {x.shape[1]} values per row, expected {t.size}")
            rows.append(x)
        return torch.cat(rows, -1)

    # ------------------------------------------------------------------------------------------ JSON
    def to_json(self) -> list[dict[str, Any]]:
        """``[{name, start, size, frame, noise_std[, source]}, ...]``: the layout written into exported policies."""
        out, pos = [], 0
        for t in self.terms:
            out.append({"name": t.name, "start": pos, "size": t.size, "frame": t.frame, "noise_std": t.noise_std})
            if t.source:
                out[-1]["source"] = t.source
            pos += t.size
        return out

    @classmethod
    def from_json(cls, items: Any) -> ObsGroup:
        """Inverse of :meth:`to_json`; the starts must tile ``[0, dim)`` in order.

        Raises:
            ValueError: not a list of term objects, a missing field, or slices that are not contiguous.
        """
        if not isinstance(items, list):
            raise ValueError(f"observation layout must be a list of terms, got {type(items).__name__}")
        terms, pos = [], 0
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise ValueError(f"observation layout entry {i} is not an object: {item!r}")
            try:
                name, start, size = str(item["name"]), int(item["start"]), int(item["size"])
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"observation layout entry {i} lacks a valid name/start/size ({e})") from None
            if start != pos:
                raise ValueError(f"observation layout is not contiguous at term {name!r}: start {start}, expected {pos}")
            terms.append(ObsTerm(name, size, str(item.get("frame", "")), float(item.get("noise_std", 0.0)),
                                 str(item.get("source", ""))))
            pos += size
        return cls(tuple(terms))


# ----------------------------------------------------------------------------------------------- joined groups
def group_names(name: str) -> tuple[str, ...]:
    """The groups a (possibly joined) input name reads: ``"policy+tactile"`` -> ``("policy", "tactile")``."""
    parts = tuple(name.split(GROUP_JOIN))
    if not all(parts):
        raise ValueError(f"malformed observation group name {name!r}")
    return parts


def _missing(name: str, have: Iterable[str]) -> KeyError:
    return KeyError(f"observation group {name!r} not provided by the env (has {sorted(have)})")


def joined_layout(groups: Mapping[str, ObsGroup], name: str) -> ObsGroup:
    """The layout of input ``name``: its groups' terms in order (term names must stay unique)."""
    parts = group_names(name)
    for g in parts:
        if g not in groups:
            raise _missing(g, groups)
    return ObsGroup(tuple(t for g in parts for t in groups[g].terms))


def joined_dim(dims: Mapping[str, int], name: str) -> int:
    """Width of input ``name`` from the groups' widths."""
    parts = group_names(name)
    for g in parts:
        if g not in dims:
            raise _missing(g, dims)
    return sum(dims[g] for g in parts)


def select(obs: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    """Input ``name`` ``(N, D)`` from an observation dict (one group as is; joined groups concatenated)."""
    parts = group_names(name)
    for g in parts:
        if g not in obs:
            raise _missing(g, obs)
    if len(parts) == 1:
        return obs[parts[0]]
    import torch

    return torch.cat([obs[g] for g in parts], -1)
