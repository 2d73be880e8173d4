"""memhp.sim."""
