"""A declared system's flow and commands: ``eqs fit`` and ``eqs predict`` (docs/fit.md)."""
