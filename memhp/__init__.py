"""memhp: Linux physical memory hot-remove, in Python.

Three parts share one interface, the kernel's sysfs ABI:

* :mod:`memhp.kernel` -- the simulated kernel (pure model, no I/O);
* :mod:`memhp.host` -- the tool's library, which only reads and writes a sysfs root;
* :mod:`memhp.bench` -- real Linux under QEMU against the model.
"""

__version__ = "0.1.0"
