"""memhp.kernel.arch.x86.kernel."""
