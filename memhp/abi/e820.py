"""The e820 memory types as the kernel names them (arch/x86/kernel/e820.c
e820_type_to_string(): /sys/firmware/memmap/N/type and /proc/iomem)."""

from __future__ import annotations

E820_TYPES = (
    "System RAM",
    "Reserved",
    "ACPI Tables",
    "ACPI Non-volatile Storage",
    "Unusable memory",
    "Persistent Memory (legacy)",
    "Persistent Memory",
    "Soft Reserved",
)
