"""Capacity studies (``memhp study``): how much hot-added memory comes out again,
how often and how fast, under which online policy and workload, on the model.

:mod:`memhp.study.spec` reads a study file, :mod:`memhp.study.lifecycle` runs one
seeded lifecycle on a :class:`~memhp.sim.machine.SimMachine` and removes with
:func:`memhp.host.remove.remove_device` (``memhp remove``'s own algorithm),
:mod:`memhp.study.engine` runs the grid on local processes or a Dask cluster, and
:mod:`memhp.study.report` writes results.json, summary.md, CSV and plots.
"""
