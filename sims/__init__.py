"""Systems: declared quantities with units, simulators, halo generators and catalog readers.

May import ``data_catalog`` only (plus numpy, scipy, torch).
"""
