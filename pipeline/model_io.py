"""What a model reads and returns, in terms of its system's declared quantities.

A model's interface is a :class:`ModelIO`: the ordered inputs it is called with and the outputs it
returns, each a :class:`Port` (one array) made of :class:`Slot` s (declared quantities with their
transformation kind and units), the group under which they transform, and what the model promises
about it. :func:`pipeline.symmetry.assert_equivariant` and
:func:`pipeline.symmetry.assert_units_equivariant` read it (as e3nn's ``assert_equivariant`` reads a
module's irreps) to draw random group elements and changes of units, apply them to every input as
its kind and units say, and compare with the outputs transformed the same way.

A port is either *packed*, its slots side by side along the last axis (the pendulum state
z = (q1, q2, p1, p2) is four 3-vectors in 12 columns), or holds one quantity as a whole array
(a field (batch, y, x), the particles' positions (N, 3), run times (T,)); vectors and tensors have
their components on the last axis (last two for tensors).

``ModelIO.apply`` runs a model on the declared inputs when its own tensors are computed from them
(the Rietkerk emulator's Pi groups from the 16 parameters, the halo features from the particles);
without it the model is called as ``model(*inputs)``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from sims.declaration import Kind, SystemDeclaration

#: How an array transforms under the group (see :mod:`pipeline.symmetry`), plus ``field``: a scalar
#: field on a grid (a declared ``Kind.FIELD``), which changes of units rescale but no group of the
#: checks acts on (they do not move grids).
KINDS = ("scalar", "pseudoscalar", "vector", "pseudovector", "position", "tensor", "field")
#: ``equivariant``: every output scales as its declared units say under any change of the base units
#: (``invariant``: the same, with every output dimensionless); ``none``: no promise (a baseline).
UNITS_BEHAVIOURS = ("equivariant", "invariant", "none")
FIELD_SHAPE = (6, 6)  # the grid of a randomly drawn field
_GROUP = re.compile(r"^(?:none|(?P<group>O|SO|E|SE)\((?P<d>[1-9])\)|O\(1,(?P<dl>[1-9])\))$")


def space_dim(group: str) -> int | None:
    """Components of a vector under ``group``: d for O(d), SO(d), E(d), SE(d); 1 + d for O(1,d)."""
    match = _GROUP.match(group.replace(" ", ""))
    if not match:
        raise ValueError(f"unknown group {group!r}: use none, O(d), SO(d), E(d), SE(d) or O(1,d)")
    if match["dl"]:
        return 1 + int(match["dl"])
    return int(match["d"]) if match["d"] else None


@dataclass(frozen=True)
class Slot:
    """One quantity in a port: its name (a declared quantity where there is one), how it transforms
    (:data:`KINDS`), its units (a pint string; ``"1"`` dimensionless) and the range random values are
    drawn from (``(low, high)``: log-uniform when ``low > 0``, else uniform per component)."""

    name: str
    kind: str = "scalar"
    units: str = "1"
    sample: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"slot {self.name!r}: kind {self.kind!r} is not one of {KINDS}")

    @classmethod
    def of(cls, declaration: SystemDeclaration, name: str, sample: tuple[float, float] | None = None) -> Slot:
        """The declared quantity ``name`` of ``declaration`` (its kind and units)."""
        q = declaration.quantity(name)
        return cls(name, Kind(q.kind).value, q.units, sample)

    def size(self, d: int | None) -> int:
        """Components along a packed port's last axis."""
        if self.kind in ("scalar", "pseudoscalar", "field"):
            return 1
        if d is None:
            raise ValueError(f"slot {self.name!r}: a {self.kind} needs a group with a dimension (O(3), E(3) ...)")
        return d * d if self.kind == "tensor" else d

    def sample_range(self) -> tuple[float, float]:
        if self.sample is not None:
            return self.sample
        return (0.5, 2.0) if self.kind in ("scalar", "field") else (-1.0, 1.0)

    def derivative(self, time_units: str) -> Slot:
        """d/dt of this quantity: units divided by ``time_units``; a position's rate is a vector."""
        kind = "vector" if self.kind == "position" else self.kind
        return Slot(self.name, kind, _divide(self.units, time_units))


def _divide(units: str, by: str) -> str:
    """``units`` per ``by``, as a space-separated product where both are (the form declarations use,
    which ``pipeline.units.substitute_units`` rewrites): 'l m^-2' per 'd' is 'l m^-2 d^-1'."""
    simple = re.compile(r"^[A-Za-z_]+(\^-?[0-9]+)?$")
    if all(simple.match(t) or t == "1" for t in units.split()) and simple.match(by):
        per = f"{by}^-1" if "^" not in by else f"{by.partition('^')[0]}^{-int(by.partition('^')[2])}"
        return per if units.strip() == "1" else f"{units} {per}"
    return f"({units}) / ({by})"


@dataclass(frozen=True)
class Port:
    """One array a model reads or returns: its slots side by side on the last axis (``packed``), or
    one quantity as the whole array (``packed=False``)."""

    name: str
    slots: tuple[Slot, ...]
    packed: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "slots", tuple(self.slots))
        if not self.slots:
            raise ValueError(f"port {self.name!r} has no slots")
        if not self.packed and len(self.slots) != 1:
            raise ValueError(f"port {self.name!r}: an unpacked port holds one quantity, got {len(self.slots)}")

    @classmethod
    def of(
        cls,
        declaration: SystemDeclaration,
        name: str,
        quantities: Sequence[str],
        *,
        packed: bool = True,
        samples: Mapping[str, tuple[float, float]] | None = None,
    ) -> Port:
        """A port of declared quantities (in this order)."""
        samples = samples or {}
        return cls(name, tuple(Slot.of(declaration, q, samples.get(q)) for q in quantities), packed)

    @classmethod
    def single(
        cls, name: str, kind: str = "scalar", units: str = "1", sample: tuple[float, float] | None = None
    ) -> Port:
        """An unpacked port holding one quantity."""
        return cls(name, (Slot(name, kind, units, sample),), packed=False)

    def width(self, d: int | None) -> int:
        return sum(s.size(d) for s in self.slots)

    def segments(self, d: int | None) -> list[tuple[Slot, slice]]:
        """Each slot and its columns on a packed port's last axis."""
        out, start = [], 0
        for slot in self.slots:
            size = slot.size(d)
            out.append((slot, slice(start, start + size)))
            start += size
        return out

    def derivative(self, time_units: str, name: str | None = None) -> Port:
        """The time derivative of this port (the output of a vector field)."""
        return Port(name or f"d{self.name}/dt", tuple(s.derivative(time_units) for s in self.slots), self.packed)

    def sample(self, n: int, rng: np.random.Generator, d: int | None) -> np.ndarray:
        """Random values, (n, width) for a packed port, else (n,) + the quantity's own shape."""
        if self.packed:
            columns = [_draw(slot, (n, slot.size(d)), rng) for slot in self.slots]
            return np.concatenate(columns, axis=-1)
        slot = self.slots[0]
        if slot.kind == "field":
            shape: tuple[int, ...] = FIELD_SHAPE
        elif slot.kind == "tensor":
            shape = (slot.size(d) // d, d) if d else ()
        else:
            shape = (slot.size(d),) if slot.size(d) > 1 else ()
        return _draw(slot, (n, *shape), rng)


def _draw(slot: Slot, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    low, high = slot.sample_range()
    if slot.kind == "tensor" and len(shape) >= 2 and shape[-1] == shape[-2]:
        # symmetric positive definite, as declared tensors are symmetric and often definite (an inertia
        # tensor): a model fitted to such data may raise their traces to fractional powers
        m, size = rng.uniform(low, high, shape), max(abs(low), abs(high))
        return m @ np.swapaxes(m, -1, -2) / (shape[-1] * size) + 0.5 * size * np.eye(shape[-1])
    if low > 0:
        return np.exp(rng.uniform(np.log(low), np.log(high), shape))
    return rng.uniform(low, high, shape)


@dataclass(frozen=True)
class ModelIO:
    """A model's interface: what it reads and returns, and the symmetry it promises.

    - ``inputs``, ``outputs``: the ports, in call and return order;
    - ``group``: how the quantities transform, the system's declared symmetry (``none``: no group);
    - ``equivariant``: whether the model is built to respect ``group`` (False: a baseline, for which
      the check is expected to fail);
    - ``units``: :data:`UNITS_BEHAVIOURS`;
    - ``independent_units``: units the system treats as base units of their own (litres of water);
    - ``apply``: ``apply(model, *inputs)`` runs the model on the declared inputs (default
      ``model(*inputs)``); ``sampler``: ``sampler(n, rng)`` draws inputs (default: each port's
      slots, :meth:`Port.sample`); ``array``: whether inputs are handed over as ``torch`` float64
      tensors or ``numpy`` arrays.
    """

    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    group: str = "none"
    equivariant: bool = True
    units: str = "equivariant"
    independent_units: tuple[str, ...] = ()
    system: str = ""
    description: str = ""
    apply: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    sampler: Callable[[int, np.random.Generator], Sequence[Any]] | None = field(default=None, compare=False, repr=False)
    array: str = "torch"

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "independent_units", tuple(self.independent_units))
        object.__setattr__(self, "group", self.group.replace(" ", ""))
        d = space_dim(self.group)  # checks the spelling
        if self.units not in UNITS_BEHAVIOURS:
            raise ValueError(f"units behaviour {self.units!r} is not one of {UNITS_BEHAVIOURS}")
        if self.array not in ("torch", "numpy"):
            raise ValueError(f"array must be 'torch' or 'numpy', got {self.array!r}")
        for port in (*self.inputs, *self.outputs):
            port.width(d)  # a vector or tensor needs a group with a dimension
        if self.units == "invariant":
            from pipeline.units import dimension_vector

            dimensional = [
                s.name
                for p in self.outputs
                for s in p.slots
                if dimension_vector(s.units, self.independent_units, f"output {s.name}")
            ]
            if dimensional:
                raise ValueError(f"units 'invariant' but outputs {dimensional} have dimensions; say 'equivariant'")

    @classmethod
    def declared(
        cls, declaration: SystemDeclaration, inputs: Iterable[Port], outputs: Iterable[Port], **kw: Any
    ) -> ModelIO:
        """A model of ``declaration``'s system: its group, independent units and name."""
        return cls(
            tuple(inputs),
            tuple(outputs),
            group=declaration.symmetry,
            independent_units=declaration.independent_units,
            system=declaration.name,
            **kw,
        )

    @property
    def space_dim(self) -> int | None:
        return space_dim(self.group)

    def replace(self, **changes: Any) -> ModelIO:
        return dataclasses.replace(self, **changes)

    def call(self, model: Any, *inputs: Any) -> Any:
        return self.apply(model, *inputs) if self.apply is not None else model(*inputs)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[Any, ...]:
        """Random inputs for ``n`` samples (numpy; see :meth:`as_arrays`)."""
        if self.sampler is not None:
            drawn = tuple(self.sampler(n, rng))
        else:
            drawn = tuple(port.sample(n, rng, self.space_dim) for port in self.inputs)
        if len(drawn) != len(self.inputs):
            raise ValueError(f"the sampler drew {len(drawn)} inputs for {len(self.inputs)} ports")
        return drawn

    def as_arrays(self, inputs: Sequence[Any]) -> tuple[Any, ...]:
        """Inputs as the model takes them, floating ones in float64: torch tensors (numpy arrays
        converted) or numpy arrays."""
        if self.array == "numpy":
            return tuple(
                np.asarray(x, dtype=np.float64) if np.issubdtype(np.asarray(x).dtype, np.floating) else x
                for x in inputs
            )
        import torch

        def convert(x: Any) -> Any:
            if isinstance(x, torch.Tensor):
                return x.to(torch.float64) if x.is_floating_point() else x
            if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating):
                return torch.as_tensor(x, dtype=torch.float64)
            return x

        return tuple(convert(x) for x in inputs)

    def summary(self) -> dict[str, Any]:
        """A JSON-able description (for reports)."""

        def port(p: Port) -> dict[str, Any]:
            return {"name": p.name, "packed": p.packed, "slots": [[s.name, s.kind, s.units] for s in p.slots]}

        return {
            "system": self.system,
            "group": self.group,
            "equivariant": self.equivariant,
            "units": self.units,
            "inputs": [port(p) for p in self.inputs],
            "outputs": [port(p) for p in self.outputs],
        }


def model_io(model: Any) -> ModelIO:
    """The :class:`ModelIO` a model exposes as its ``io`` attribute."""
    io = getattr(model, "io", None)
    if not isinstance(io, ModelIO):
        raise TypeError(
            f"{type(model).__name__} exposes no ModelIO as .io; pass io= to say what it reads and returns"
        )
    return io
