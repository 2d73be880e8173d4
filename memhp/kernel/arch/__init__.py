"""memhp.kernel.arch."""
