"""Zone names as the kernel prints them in ``valid_zones`` (zone_names[] of
mm/page_alloc.c) and as lsmem/chmem accept them."""

from __future__ import annotations

ZONE_DMA = "DMA"
ZONE_DMA32 = "DMA32"
ZONE_NORMAL = "Normal"
ZONE_HIGHMEM = "Highmem"
ZONE_MOVABLE = "Movable"
ZONE_DEVICE = "Device"

#: Every zone a kernel can name, in enum zone_type order (util-linux's zone table).
ZONE_NAMES: tuple[str, ...] = (
    ZONE_DMA,
    ZONE_DMA32,
    ZONE_NORMAL,
    ZONE_HIGHMEM,
    ZONE_MOVABLE,
    ZONE_DEVICE,
)
#: Zones that ``online_kernel`` may pick (all but Movable and Device).
KERNEL_ZONE_NAMES: tuple[str, ...] = (ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_HIGHMEM)
#: What ``valid_zones`` shows for an online block that spans several zones.
VALID_ZONES_NONE = "none"
