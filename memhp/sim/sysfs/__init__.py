"""memhp.sim.sysfs."""
