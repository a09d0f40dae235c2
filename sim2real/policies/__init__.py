"""Layer 3, learning: networks, replay, optimisers, SAC and the training runner; no task is named here."""
