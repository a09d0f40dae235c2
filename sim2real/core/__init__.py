"""Layer 1, foundations: typed configs, crash-safe files, observation groups, the policy file (no torch at import)."""
