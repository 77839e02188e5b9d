"""Systems: declared quantities with units, simulators, halo generators and catalog readers.

``sims.declaration`` and ``sims.integrate`` are shared; each built-in system is a package of its own:
``sims.pendulum``, ``sims.rietkerk``, ``sims.halos``.

May import ``data_catalog`` only (plus numpy, scipy, torch).
"""
