"""memhp.kernel.arch.x86.mm."""
