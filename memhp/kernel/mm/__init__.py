"""memhp.kernel.mm."""
