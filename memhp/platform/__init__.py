"""memhp."""
