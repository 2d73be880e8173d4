"""memhp.kernel.drivers.firmware."""
