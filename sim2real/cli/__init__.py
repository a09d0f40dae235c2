"""Layer 6: the ``sim2real`` command line."""
