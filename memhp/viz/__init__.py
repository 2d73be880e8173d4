"""Pictures of the physical memory map (``memhp map``).

:mod:`memhp.host.memmap_view` holds the data (any sysfs root), :mod:`memhp.viz.model`
adds what only a simulated machine knows (what is inside each block, where the
metadata of each block lives), :mod:`memhp.viz.render` draws with matplotlib
(imported lazily, Agg backend) and :mod:`memhp.viz.demo` writes the before/after
pictures of the seed scenario.
"""
