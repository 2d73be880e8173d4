"""memhp.kernel.arch.x86."""
