"""memhp.kernel.drivers."""
