"""The irreps peer: a tensor-product network built with e3nn (Geiger and Smidt, "e3nn: Euclidean neural
networks", 2022), the model a user would pick instead of invariant scalars for a 3-D system.

The declared inputs become irreducible representations of O(3): a scalar is ``0e`` (standardised in
the training units, an affine map of an invariant), a vector ``1o`` (over its training size; positions
about their centroid), a symmetric tensor ``0e + 2e`` (its trace and traceless part). Each layer is the
fully connected tensor product of the features with the inputs plus a linear path (so the degree in
the inputs grows by one per layer, as in e3nn's message-passing models), followed by a gated nonlinearity
(scalars through SiLU, the higher irreps multiplied by sigmoid gates of scalars). The output is ``0e`` for
a scalar target and ``1o`` for a vector; under SO(3), where reflections are not in the group, a ``1e``
output (the parity of ``v x B``) is added to the ``1o`` one, both vectors under rotations.

e3nn orders the components of ``l = 1`` as (y, z, x); the declared vectors are (x, y, z), so they are
permuted on the way in and out.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

E3NN_GROUPS = ("O", "SO", "E", "SE")
TO_E3NN = [1, 2, 0]  # (x, y, z) -> e3nn's (y, z, x)
FROM_E3NN = [2, 0, 1]


def e3nn_missing() -> str | None:
    """Why the irreps model cannot be built here (None when e3nn imports)."""
    try:
        import e3nn  # noqa: F401
    except ImportError:
        return "it needs the e3nn package: pip install 'eqs[e3nn]'"
    return None


def _hidden_irreps(width: int) -> tuple[str, str]:
    """The scalars and gated irreps of a hidden layer of ``width``: a quarter of it as even scalars,
    an eighth as odd ones, an eighth each of 1o and 1e and a sixteenth of 2e (the tensor products'
    weights grow with the square of the multiplicities, so the channels are fewer than an MLP's)."""
    return (
        f"{max(1, width // 4)}x0e + {max(1, width // 8)}x0o",
        f"{max(1, width // 8)}x1o + {max(1, width // 8)}x1e + {max(1, width // 16)}x2e",
    )


class IrrepsNet(torch.nn.Module):
    """Inputs as irreps (n, dim) -> outputs (n, 3 * n_vectors + n_scalars), vectors in (x, y, z).

    ``in_irreps``: the e3nn irreps string of the input features; ``n_scalars`` outputs of ``0e`` and
    ``n_vectors`` outputs of ``1o`` (``proper``: plus ``1e``)."""

    def __init__(self, in_irreps: str, n_scalars: int, n_vectors: int, hidden: Sequence[int], proper: bool) -> None:
        super().__init__()
        self.n_scalars, self.n_vectors, self.proper = n_scalars, n_vectors, proper
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)  # e3nn's constants (Clebsch-Gordan) exact to float64 round-off
        try:
            self._build(in_irreps, n_scalars, n_vectors, hidden, proper)
        finally:
            torch.set_default_dtype(previous)

    def _build(self, in_irreps: str, n_scalars: int, n_vectors: int, hidden: Sequence[int], proper: bool) -> None:
        from e3nn import o3
        from e3nn.nn import Gate

        layers = []
        irreps = inputs = o3.Irreps(in_irreps).simplify()  # adjacent copies merged: the same layout, fewer paths
        for width in hidden:
            scalars, gated = _hidden_irreps(width)
            gated_irreps = o3.Irreps(gated)
            gates = o3.Irreps(f"{gated_irreps.num_irreps}x0e")
            gate = Gate(
                scalars,
                [torch.nn.functional.silu, torch.tanh],
                gates,
                [torch.sigmoid],
                gated_irreps,
            )
            product = o3.FullyConnectedTensorProduct(irreps, inputs, gate.irreps_in)
            layers.append(
                torch.nn.ModuleDict({"product": product, "linear": o3.Linear(irreps, gate.irreps_in), "gate": gate})
            )
            irreps = gate.irreps_out
        self.layers = torch.nn.ModuleList(layers)
        out = []
        if n_scalars:
            out.append(f"{n_scalars}x0e")
        if n_vectors:
            out.append(f"{n_vectors}x1o" + (f" + {n_vectors}x1e" if proper else ""))
        self.readout = o3.Linear(irreps, o3.Irreps(" + ".join(out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, vectors x 3 in (x, y, z), then scalars): the layout of the raw baseline's outputs."""
        inputs = x
        for layer in self.layers:
            # the product with the inputs raises the degree by one per layer; the linear path keeps the rest
            x = layer["gate"](layer["product"](x, inputs) + layer["linear"](x))
        y = self.readout(x)
        n = y.shape[0]
        parts = []
        if self.n_vectors:
            start = self.n_scalars
            vectors = y[:, start : start + 3 * self.n_vectors].reshape(n, self.n_vectors, 3)
            if self.proper:
                vectors = vectors + y[:, start + 3 * self.n_vectors :].reshape(n, self.n_vectors, 3)
            parts.append(vectors[..., FROM_E3NN].reshape(n, -1))
        parts.append(y[:, : self.n_scalars])
        return torch.cat(parts, -1)


def symmetric_tensor_basis(dtype: torch.dtype) -> torch.Tensor:
    """The change of basis (6, 3, 3) from a symmetric 3 x 3 tensor, indices in e3nn's order, to its
    irreps ``0e + 2e``."""
    from e3nn import o3

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return o3.ReducedTensorProducts("ij=ji", i="1o").change_of_basis.to(dtype)
    finally:
        torch.set_default_dtype(previous)
