"""memhp.kernel.drivers.acpi."""
