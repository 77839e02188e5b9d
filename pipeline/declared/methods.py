"""The methods a declared system's surrogates are built by (docs/fit.md, "What eqs fit does" and
"Other methods"): their names and titles, without the models' imports, so the command line can offer them."""

METHOD_TITLES = {
    "pi": "Pi groups (invariant, units-equivariant)",
    "scalars": "invariant scalars (dimensional)",
    "raw": "raw components",
    "frame": "frame averaging (PCA frames, exact)",
    "canonical": "canonicalization (one PCA frame)",
    "augment": "raw components, randomly moved samples (approximate)",
    "penalty": "raw components, equivariance penalty (approximate)",
    "e3nn": "irreps tensor products (e3nn, exact)",
    "emlp": "equivariant MLP layers (EMLP, exact)",
    "relaxed": "invariant scalars plus a penalised raw pathway (relaxed)",
}
METHODS = tuple(METHOD_TITLES)
DEFAULT_METHODS = ("pi", "scalars", "raw")  # the other methods of the comparison are asked for by name
