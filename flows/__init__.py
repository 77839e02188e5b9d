"""Prefect flows and tasks, schedules and the ``eqs`` CLI: the only layer that knows all the others.

Importing this package does not import Prefect; ``flows.conventions``, ``flows.catalog_check``
and ``flows.main`` do. Each built-in system's flows and commands are a package of their own
(``flows.pendulum``, ``flows.rietkerk``, ``flows.halos``), named in :mod:`flows.registry`.
"""
