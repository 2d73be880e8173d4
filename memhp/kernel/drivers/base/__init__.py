"""memhp.kernel.drivers.base."""
