"""memhp.kernel.drivers.acpi.numa (drivers/acpi/numa)."""
