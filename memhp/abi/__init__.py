"""memhp.abi."""
