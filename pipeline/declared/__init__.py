"""A system declared in a file, with no code of its own: its data, the designs of its surrogates'
outputs, its OOD splits, their evaluation and its report section (``eqs fit``, docs/fit.md)."""
