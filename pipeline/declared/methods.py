"""The methods a declared system's surrogates are built by (docs/fit.md#methods): their names and
titles, without the imports of the models themselves, so that the command line can offer them."""

METHOD_TITLES = {
    "pi": "Pi groups (invariant, units-equivariant)",
    "scalars": "invariant scalars (dimensional)",
    "raw": "raw components",
    "frame": "frame averaging (PCA frames, exact)",
    "canonical": "canonicalization (one PCA frame)",
    "augment": "raw components, randomly moved samples (approximate)",
    "penalty": "raw components, equivariance penalty (approximate)",
}
METHODS = tuple(METHOD_TITLES)
DEFAULT_METHODS = ("pi", "scalars", "raw")  # the other methods of the comparison are asked for by name
