"""Observation groups: one definition, from which offsets, concatenation, noise and the layout JSON follow."""

from __future__ import annotations

import pytest
import torch

from sim2real.core.obs import ObsGroup, ObsTerm


def group() -> ObsGroup:
    return ObsGroup.of(ObsTerm("a", 2, "world", 0.1), ObsTerm("b", 3), ObsTerm("c", 1, "", 0.5))


def test_offsets_noise_and_derived_groups() -> None:
    g = group()
    assert g.dim == 6 and g.names == ("a", "b", "c") and len(g) == 3
    assert (g.slice("a"), g.slice("b"), g.slice("c")) == (slice(0, 2), slice(2, 5), slice(5, 6)) and g.start("c") == 5
    assert g.noise_std() == [0.1, 0.1, 0.0, 0.0, 0.0, 0.5] and g.noise_std(["c", "a"]) == [0.1, 0.1, 0.5]
    free = g.noise_free()
    assert free.names == g.names and all(t.noise_std == 0.0 for t in free) and free.term("a").frame == "world"
    assert g.extended(ObsTerm("d", 4)).dim == 10 and g.extended(ObsTerm("d", 4)).start("d") == 6
    with pytest.raises(KeyError, match="no term 'z'"):
        g.slice("z")


def test_concat_follows_the_definition_order_and_checks_sizes() -> None:
    g = group()
    a, b, c = torch.ones(4, 2), torch.arange(12.0).reshape(4, 3), torch.full((4, 1, 1), 7.0)
    x = g.concat(c=c, a=a, b=b)  # keyword order does not matter, the group's does
    assert x.shape == (4, 6) and torch.equal(x[:, g.slice("b")], b) and torch.equal(x[:, 5], torch.full((4,), 7.0))
    with pytest.raises(ValueError, match="term 'b' has 2 values per row, expected 3"):
        g.concat(a=a, b=torch.ones(4, 2), c=c)
    with pytest.raises(KeyError, match=r"missing \['c'\], unknown \['d'\]"):
        g.concat(a=a, b=b, d=c)


def test_json_round_trip_and_bad_layouts() -> None:
    g = group()
    js = g.to_json()
    assert js[1] == {"name": "b", "start": 2, "size": 3, "frame": "", "noise_std": 0.0}
    assert ObsGroup.from_json(js) == g
    with pytest.raises(ValueError, match="not contiguous at term 'b'"):
        ObsGroup.from_json([js[0], {**js[1], "start": 3}, js[2]])
    with pytest.raises(ValueError, match="entry 0 lacks"):
        ObsGroup.from_json([{"name": "a"}])
    with pytest.raises(ValueError, match="must be a list"):
        ObsGroup.from_json({"a": 1})
    with pytest.raises(ValueError, match="unique names"):
        ObsGroup.of(ObsTerm("a", 1), ObsTerm("a", 2))
    with pytest.raises(ValueError, match="size >= 1"):
        ObsGroup.of(ObsTerm("a", 0))
