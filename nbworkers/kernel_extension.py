"""What the "Python 3 (nbworkers)" kernel loads as it starts (its kernelspec's ``--ext
nbworkers.kernel_extension``): the nbworkers extension itself, under a name of its own.

Loaded as ``nbworkers``, a notebook's own ``%load_ext nbworkers`` (written to run on any kernel)
made IPython print that the extension is already loaded. Loaded under this name, IPython has
not marked ``nbworkers`` loaded: ``%load_ext nbworkers`` calls ``load_ipython_extension``, which
finds the shell set up already and does nothing, silently, and from then on ``%unload_ext
nbworkers`` and ``%reload_ext nbworkers`` work as in any kernel. Without that line,
``%unload_ext nbworkers.kernel_extension`` (or ``nw.shutdown()``) stops it.
"""

from __future__ import annotations

from .extension import load_ipython_extension, unload_ipython_extension

__all__ = ["load_ipython_extension", "unload_ipython_extension"]
