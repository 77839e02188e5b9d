"""Surrogates of a declared system's targets, built from its declaration alone (docs/fit.md#what-eqs-fit-does).

Nine methods, each a :class:`DeclaredSurrogate` called with the declared inputs in their declared
units (one tensor per input quantity, in declaration order) and returning the target (and, for a
noisy target, its uncertainty sigma, in the target's units):

- ``pi``: an MLP of the Pi groups, assembled by the target's design (``pipeline.declared.design``):
  exactly invariant or equivariant under the declared group and exactly equivariant under any change
  of units; every normalisation is a fixed pure number (a ratio of like quantities over the training
  data), so none follows the training units;
- ``scalars``: an MLP of the dimensional invariant scalars, standardised in the training units: exactly
  invariant or equivariant under the group, not under a change of units (a baseline);
- ``raw``: an MLP of the raw components in the training units (a baseline with no symmetry);
- ``frame``: the ``raw`` MLP averaged over each sample's PCA frame (:mod:`pipeline.frames`): exactly
  invariant or equivariant under O(d), SO(d), E(d) and SE(d), whatever the MLP;
- ``canonical``: the ``raw`` MLP in one element of that frame (canonicalization): exact away from the
  inputs whose frame is degenerate, at 1 / |frame| of the cost;
- ``augment``: the ``raw`` MLP trained on samples each moved by a random group element (approximate);
- ``penalty``: the ``raw`` MLP trained with an equivariance penalty, the mean squared difference between
  its output on randomly moved inputs and its moved output, normalised like the loss (approximate);
- ``e3nn``: a tensor-product network of the inputs as irreps of O(3) (:mod:`surrogates.declared.irreps`),
  exact, for 3-D systems;
- ``relaxed``: a residual pathway prior (Finzi, Benton and Wilson, NeurIPS 2021): the ``scalars`` model
  plus a ``raw`` model of the residual whose weights carry an L2 penalty, so that the model leaves the
  symmetry only as far as the data pay for it (approximate).

``frame`` to ``e3nn`` read the components as ``raw`` does (with a relabelled set, every member in the data's
order: no invariance under relabelling).

Each is fitted by the shared trainer (``surrogates.training``): a mean squared error normalised per
sample (``pi``: by the target's own scale monomial; baselines: by the training spread), or a Gaussian
negative log-likelihood for a noisy target (isotropic for vectors).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from pipeline.declared.design import (
    ROUND_OFF_ZERO,
    TargetDesign,
    design_for,
    input_plan,
    view_values,
)
from pipeline.declared.methods import METHOD_TITLES, METHODS
from pipeline.frames import (
    FRAME_GROUPS,
    act,
    canonical_frame,
    directions,
    from_frame,
    null_axes,
    pca_frames,
    principal_axes,
    random_elements,
    second_moment,
    to_frame,
)
from pipeline.matrix_groups import MatrixGroup, orthogonal
from pipeline.model_io import ModelIO, Port, Slot
from sims.declaration import Kind, Role, SystemDeclaration
from surrogates.artifacts import register_model
from surrogates.declared.irreps import (
    E3NN_GROUPS,
    TO_E3NN,
    IrrepsNet,
    e3nn_missing,
    symmetric_tensor_basis,
)
from surrogates.emlp import EMLP, TensorSum
from surrogates.mlp import MLP
from surrogates.training import TrainConfig, TrainResult, seed_everything, train

RAW_LAYOUT = ("raw", "frame", "canonical", "augment", "penalty", "e3nn", "emlp")  # every component of every input
FRAMED = ("frame", "canonical")
MOVED = ("augment", "penalty")  # train on randomly moved samples
EXACT = ("pi", "scalars", "frame", "canonical", "e3nn", "emlp")  # exactly invariant or equivariant under the group
TENSOR_NETS = ("e3nn", "emlp")  # networks of the inputs as tensors of the group (their own layouts)
PENALTY_WEIGHT = 1.0
RELAXED_EXACT = "scalars"  # the exact pathway of ``relaxed``: the symmetry only, so units play no part
RELAXED_WEIGHT = 1e-4  # the L2 prior on the free pathway's weights, against the loss (a relative squared error)
LOG_SIGMA_RANGE = (-12.0, 6.0)  # relative to the model's scale; keeps the likelihood finite
TARGET_KEY = "target"
INPUT_PREFIX = "in:"


def _rms(x: np.ndarray) -> float:
    value = float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0
    return value if math.isfinite(value) and value > 0 else 1.0


def method_refusal(method: str, decl: SystemDeclaration) -> str | None:
    """Why ``method`` cannot model the system (None when it can)."""
    if method in FRAMED and decl.group not in FRAME_GROUPS:
        return (
            f"{method} is built on frames of O(d), SO(d), E(d) or SE(d); the system's symmetry is {decl.symmetry}"
            + (" (the Lorentz group is not compact: no frame averages over it)" if decl.group == "Lorentz" else "")
        )
    if method in MOVED and decl.group == "none":
        return f"{method} moves samples by the symmetry group, and the system declares none"
    if method == "relaxed" and decl.group == "none":
        return "relaxed adds a free pathway to a model of the symmetry group, and the system declares none"
    if method == "emlp" and decl.group not in FRAME_GROUPS:
        return (
            f"emlp builds layers equivariant under O(d), SO(d), E(d) or SE(d) (orthogonal groups); the system's "
            f"symmetry is {decl.symmetry}"
        )
    if method == "e3nn":
        if decl.group not in E3NN_GROUPS or decl.space_dim != 3:
            return (
                f"e3nn builds models of 3-D systems under O(3), SO(3), E(3) or SE(3); the system's is {decl.symmetry}"
            )
        missing = e3nn_missing()
        if missing:
            return f"e3nn: {missing}"
    return None


class EMLPNet(torch.nn.Module):
    """An EMLP of the inputs' tensors to ``n_scalars`` scalars and ``n_vectors`` vectors, returned in the raw
    baseline's layout (the vectors' components first, then the scalars)."""

    def __init__(
        self, rep_in: TensorSum, n_scalars: int, n_vectors: int, group: MatrixGroup, hidden: Sequence[int]
    ) -> None:
        super().__init__()
        self.n_scalars, self.n_vectors = n_scalars, n_vectors
        self.net = EMLP(rep_in, TensorSum((n_scalars, n_vectors), rep_in.d), group, tuple(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        return torch.cat([y[:, self.n_scalars :], y[:, : self.n_scalars]], -1)


@register_model("declared-surrogate")
class DeclaredSurrogate(torch.nn.Module):
    """One target of a declared system by one method (see the module docstring).

    ``declaration`` is the declaration's JSON form; ``gaussian`` adds the uncertainty output;
    ``signed`` and ``zero``: what the training data say about the invariant scalars
    (:func:`pipeline.declared.design.conditions_on_data`); features made of zero scalars are left out.
    ``set_size``: the number of members of the relabelled set, where the declaration has one (the raw baseline's
    layout depends on it; the other methods take any size).

    With a relabelled set, ``pi`` and ``scalars`` read the features of every ordered pair of distinct
    members (``pipeline.declared.design.view_declaration``): an MLP phi maps each pair's features to
    an embedding, averaged over all pairs (g) and, per member i, over its pairs (a_i); a second MLP
    reads g for a global scalar target, (a_i, g) for a member's, and per pair (features, a_i, g) for
    the coefficients of a vector target, whose pair terms are averaged over j (a member's) or over all
    pairs (a global one). A scalar target's scale is the geometric mean of its monomial over the pairs
    (over member i's pairs for a member target). Every step is a symmetric function of the members, so
    the model is exactly invariant (or equivariant) under their relabelling.
    """

    def __init__(
        self,
        declaration: Mapping[str, Any],
        target: str,
        method: str,
        hidden: Sequence[int] = (64, 64),
        gaussian: bool = False,
        activation: str = "silu",
        signed: Sequence[str] | None = None,
        zero: Sequence[str] = (),
        set_size: int | None = None,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.declaration_json = dict(declaration)
        decl = SystemDeclaration.from_dict(self.declaration_json, source="the model's declaration")
        refusal = method_refusal(method, decl)
        if refusal:
            raise ValueError(refusal)
        self.raw_layout = method in RAW_LAYOUT
        self.decl, self.target, self.method = decl, target, method
        self.hidden, self.gaussian, self.activation = tuple(int(h) for h in hidden), bool(gaussian), activation
        self.signed = None if signed is None else [str(s) for s in signed]
        self.zero = [str(z) for z in zero]
        self.set_size = None if set_size is None else int(set_size)
        if decl.permutation is not None and self.raw_layout and not self.set_size:
            raise ValueError(
                f"the {method} model of a system with a relabelled set needs set_size (its number of members)"
            )
        self.design: TargetDesign = design_for(
            decl, target, input_plan(decl, self.signed), units_equivariant=method == "pi"
        )
        self.inputs = [q for q in decl.quantities if q.role is not Role.TARGET]
        self.d = decl.space_dim
        self.pairs = decl.permutation is not None and not self.raw_layout
        self.member_target = decl.is_member(target)
        plan, design = self.design.plan, self.design
        if gaussian and design.is_vector and method == "pi" and design.scaling is None:
            raise ValueError(
                f"target {target!r}: no monomial of the invariant scalars has its units, so its uncertainty cannot be "
                "units-equivariant; leave it out of fit.noisy"
            )
        zero_set = set(self.zero)
        self.pi_columns = [i for i, g in enumerate(plan.pi_groups) if not zero_set & set(g.quantities)]
        self.scalar_columns = [x.name for x in plan.scalars if x.name not in zero_set]
        widths = {Kind.SCALAR: 1, Kind.VECTOR: self.d, Kind.POSITION: self.d, Kind.TENSOR: self.d * self.d}
        copies = {q.name: (self.set_size or 1) if decl.is_member(q.name) else 1 for q in self.inputs}
        n_in = {
            "pi": max(1, len(self.pi_columns)) + int(self.pairs and not design.is_vector),  # + log(scale_ij / S)
            "scalars": max(1, len(self.scalar_columns)),
            "raw": sum(widths[q.kind] * copies[q.name] for q in self.inputs),
        }.get("raw" if self.raw_layout else method)  # relaxed: none; its two pathways have their own
        if not design.is_vector:
            n_coef = 1
        else:
            n_coef = self.d if self.raw_layout else len(design.basis)
        self.n_coef = n_coef
        n_out = n_coef + int(self.gaussian)
        if self.raw_layout and self.member_target:
            n_out = n_coef * self.set_size  # one output (or d) per member, in the data's member order
        if method == "relaxed":
            pathway = dict(hidden=hidden, activation=activation, signed=signed, zero=zero, set_size=set_size)
            self.exact = DeclaredSurrogate(declaration, target, RELAXED_EXACT, gaussian=gaussian, **pathway)
            self.free = DeclaredSurrogate(declaration, target, "raw", **pathway)
        elif self.pairs:
            width = self.hidden[-1]
            self.phi = MLP(n_in, width, self.hidden, activation)
            head_in = {
                (False, False): width,  # global scalar: g
                (True, False): 2 * width,  # member scalar: a_i, g
                (False, True): n_in + width,  # global vector: pair features, g
                (True, True): n_in + 2 * width,  # member vector: pair features, a_i, g
            }[self.member_target, design.is_vector]
            self.net = MLP(head_in, n_out, self.hidden, activation)
        elif method == "e3nn":
            self.net = self._irreps_net(copies, n_out)
        elif method == "emlp":
            self.net = self._emlp_net(copies, n_out)
        else:
            self.net = MLP(n_in, n_out, self.hidden, activation)
        self.register_buffer("pi_scale", torch.ones(max(1, len(self.pi_columns))))
        self.register_buffer("coef_scale", torch.ones(n_coef))  # pure numbers (pi), training units (baselines)
        raw_width = n_coef * ((self.set_size or 1) if self.member_target else 1)
        self.register_buffer("y_shift", torch.zeros(raw_width if self.raw_layout and design.is_vector else 1))
        self.register_buffer("y_scale", torch.ones(()))
        self.register_buffer("sigma_scale", torch.ones(()))
        if method in MOVED:  # only theirs: the models stored before these methods existed load as they were
            self.register_buffer("translation_scale", torch.ones(()))  # under E(d), in training units
        self.kinds = {q.name: q.kind.value for q in decl.quantities}
        q = design.target
        outputs = [Port(q.name, (Slot(q.name, q.kind.value, q.units),), packed=False)]
        if self.gaussian:
            outputs.append(Port(f"sigma({q.name})", (Slot(f"sigma({q.name})", "scalar", q.units),), packed=False))
        self.io = ModelIO.declared(
            decl,
            [Port.of(decl, i.name, [i.name], packed=False) for i in self.inputs],
            outputs,
            equivariant=method in EXACT,
            units="equivariant" if method == "pi" else "none",
            description=f"{METHOD_TITLES[method]} surrogate of {q.name}",
            sampler=self._sample if decl.permutation is not None else None,
        )

    def _irreps_net(self, copies: Mapping[str, int], n_out: int) -> IrrepsNet:
        """The e3nn network, and the layout of its input features: per input (each member), a scalar as
        0e, a vector or position as 1o, a symmetric tensor as 0e + 2e."""
        irreps, blocks, start = [], [], 0
        for q in self.inputs:
            per = {Kind.SCALAR: ("0e", 1), Kind.TENSOR: ("0e + 1x2e", 6)}.get(q.kind, ("1o", 3))
            irreps += [f"1x{per[0]}"] * copies[q.name]
            blocks.append((start, start + per[1] * copies[q.name]))
            start += per[1] * copies[q.name]
        self.irreps_blocks = blocks
        self.register_buffer("irreps_shift", torch.zeros(start))  # scalars only: vectors have no shift
        self.register_buffer("irreps_scale", torch.ones(start))  # one per quantity: irreps keep their shape
        if any(q.kind is Kind.TENSOR for q in self.inputs):
            self.register_buffer("tensor_basis", symmetric_tensor_basis(torch.float64))
        members = (self.set_size or 1) if self.member_target else 1
        n_vectors = members if self.design.is_vector else 0
        return IrrepsNet(
            " + ".join(irreps),
            n_out - 3 * n_vectors,
            n_vectors,
            self.hidden,
            proper=self.decl.group in ("SO", "SE"),
        )

    def _emlp_net(self, copies: Mapping[str, int], n_out: int) -> EMLPNet:
        """The EMLP network (``surrogates.emlp``) and the layout of its input features, rank by rank: every
        scalar (each member's), then every vector and position, then every tensor (d x d, as it moves)."""
        ranks = {Kind.SCALAR: 0, Kind.VECTOR: 1, Kind.POSITION: 1, Kind.TENSOR: 2}
        blocks, start = [], 0
        for rank in (0, 1, 2):
            for q in (q for q in self.inputs if ranks[q.kind] == rank):
                stop = start + self.d**rank * copies[q.name]
                blocks.append((q, start, stop))
                start = stop
        self.emlp_blocks = blocks
        self.register_buffer("irreps_shift", torch.zeros(start))  # scalars only: vectors have no shift
        self.register_buffer("irreps_scale", torch.ones(start))  # one per quantity: tensors keep their shape
        counts = [sum(copies[q.name] for q in self.inputs if ranks[q.kind] == r) for r in (0, 1, 2)]
        members = (self.set_size or 1) if self.member_target else 1
        n_vectors = members if self.design.is_vector else 0
        group = orthogonal(self.d, proper=self.decl.group in ("SO", "SE"))
        return EMLPNet(TensorSum(tuple(counts), self.d), n_out - self.d * n_vectors, n_vectors, group, self.hidden)

    def _tensor_blocks(self) -> list[tuple[Any, int, int]]:
        """(quantity, start, stop) of each input's features in the e3nn or EMLP network's input."""
        if self.method == "emlp":
            return self.emlp_blocks
        return [(q, start, stop) for q, (start, stop) in zip(self.inputs, self.irreps_blocks)]

    def _tensor_features(self, values: Mapping[str, torch.Tensor], centre: torch.Tensor | None) -> torch.Tensor:
        """The e3nn or EMLP network's input (n, features), before standardisation."""
        if self.method == "e3nn":
            return self._irreps_features(values, centre)
        centred = self._centred(values, centre)
        return torch.cat([centred[q.name].reshape(len(centred[q.name]), -1) for q, _, _ in self.emlp_blocks], -1)

    def _irreps_features(self, values: Mapping[str, torch.Tensor], centre: torch.Tensor | None) -> torch.Tensor:
        """The e3nn input (n, features), before standardisation; vectors in e3nn's (y, z, x) order."""
        centred = self._centred(values, centre)
        parts = []
        for q in self.inputs:
            x = centred[q.name]
            n = x.shape[0]
            if q.kind is Kind.SCALAR:
                parts.append(x.reshape(n, -1))
            elif q.kind is Kind.TENSOR:
                t = x.reshape(n, -1, 3, 3)[..., TO_E3NN, :][..., TO_E3NN]
                parts.append(torch.einsum("kij,nmij->nmk", self.tensor_basis, t).reshape(n, -1))
            else:
                parts.append(x.reshape(n, -1, 3)[..., TO_E3NN].reshape(n, -1))
        return torch.cat(parts, -1)

    def _predict_irreps(self, values: Mapping[str, Any]) -> tuple[Any, Any, Any]:
        self._batch(values)
        centre = self._centre(values)
        h = self.net((self._tensor_features(values, centre) - self.irreps_shift) / self.irreps_scale)
        mean, sigma, norm = self._assemble_raw(h)
        if self.design.is_vector and self.design.target.kind is Kind.POSITION and centre is not None:
            mean = mean + self._like(centre, mean)
        return mean, sigma, norm

    def _sample(self, n: int, rng: np.random.Generator) -> list[np.ndarray]:
        """Random inputs of a system with a relabelled set (the checks' default draws no member axis):
        each member quantity (n, members, ...), the others (n, ...), drawn as their ports draw them."""
        members = self.set_size or 3
        out = []
        for port in self.io.inputs:
            if not self.decl.is_member(port.name):
                out.append(port.sample(n, rng, self.d))
                continue
            drawn = port.sample(n * members, rng, self.d)
            out.append(drawn.reshape(n, members, *drawn.shape[1:]))
        return out

    @property
    def config(self) -> dict[str, Any]:
        return {
            "declaration": self.declaration_json,
            "target": self.target,
            "method": self.method,
            "hidden": list(self.hidden),
            "gaussian": self.gaussian,
            "activation": self.activation,
            "signed": self.signed,
            "zero": self.zero,
            "set_size": self.set_size,
        }

    # -- the parts of the forward pass --------------------------------------------------------------

    def _values(self, xs: Sequence[Any]) -> dict[str, Any]:
        if len(xs) != len(self.inputs):
            raise ValueError(
                f"expected {len(self.inputs)} inputs ({', '.join(q.name for q in self.inputs)}), got {len(xs)}"
            )
        dtype = self.y_scale.dtype
        return {q.name: torch.as_tensor(x, dtype=dtype, device=self.y_scale.device) for q, x in zip(self.inputs, xs)}

    def _batch(self, values: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
        """(n,) or, for a set, (n, N, N): the shape every pair feature is broadcast to."""
        n = next(iter(values.values())).shape[0]
        if self.decl.permutation is None:
            return (n,)
        members = next(values[name].shape[1] for name in self.decl.inputs_only().permutation.quantities)
        if self.raw_layout and members != self.set_size:
            raise ValueError(f"the {self.method} model was trained on sets of {self.set_size} members, got {members}")
        if members < 2:
            raise ValueError(f"a relabelled set needs at least 2 members, got {members}")
        return (n, members, members) if self.pairs else (n,)

    def _mask(self, like: torch.Tensor, members: int) -> torch.Tensor:
        return 1.0 - torch.eye(members, dtype=like.dtype, device=like.device)

    def _pool(self, x: torch.Tensor, member: bool) -> torch.Tensor:
        """Average of (n, N, N, ...) over distinct pairs: over j for each member i, or over all (i, j)."""
        members = x.shape[1]
        mask = self._mask(x, members).reshape(members, members, *([1] * (x.ndim - 3)))
        if member:
            return (x * mask).sum(2) / (members - 1)
        return (x * mask).sum((1, 2)) / (members * (members - 1))

    def _raw_pi(self, computed: Mapping[str, Any], batch: tuple[int, ...]) -> torch.Tensor:
        pi = computed["pi"][..., self.pi_columns]
        return torch.broadcast_to(pi, (*batch, len(self.pi_columns)))

    def _target_scale(self, computed: Mapping[str, Any], batch: tuple[int, ...]) -> torch.Tensor:
        """The scale monomial of the target's units, per sample (or per pair)."""
        scale = torch.as_tensor(
            self.design.scaling.evaluate(computed), dtype=self.y_scale.dtype, device=self.y_scale.device
        )
        return torch.broadcast_to(scale, batch)

    def _features(self, values: Mapping[str, Any], computed: Mapping[str, Any], batch: tuple[int, ...]) -> torch.Tensor:
        """The input of the first MLP, (n, F) or per pair (n, N, N, F)."""
        dtype = self.y_scale.dtype
        if self.raw_layout:
            n = batch[0]
            return torch.cat([values[q.name].reshape(n, -1) for q in self.inputs], -1)
        if self.method == "pi":
            parts = [torch.asinh(self._raw_pi(computed, batch) / self.pi_scale)] if self.pi_columns else []
            if self.pairs and not self.design.is_vector:  # how this pair's scale compares with the sample's
                log_scale = torch.log(self._target_scale(computed, batch).abs())
                parts.append((log_scale - self._pool(log_scale, False).reshape(-1, 1, 1)).unsqueeze(-1))
        else:
            parts = [
                torch.broadcast_to(torch.as_tensor(computed[name], dtype=dtype), batch).unsqueeze(-1)
                for name in self.scalar_columns
            ]
        if not parts:
            return torch.zeros((*batch, 1), dtype=dtype, device=self.y_scale.device)  # nothing varies: a constant
        return torch.cat(parts, -1)

    def _terms(self, values: Mapping[str, Any], computed: Mapping[str, Any], batch: tuple[int, ...]) -> list[Any]:
        """Per coefficient, the vector it multiplies (``pi``: with its scale monomial), (*batch, d)."""
        out = []
        for b in self.design.basis:
            vector = torch.broadcast_to(b.build(values), (*batch, self.d))
            if self.method == "pi":
                scale = torch.as_tensor(b.scaling.evaluate(computed), dtype=vector.dtype, device=vector.device)
                vector = vector * torch.broadcast_to(scale, batch).unsqueeze(-1)
            out.append(vector)
        return out

    def _head(self, z: torch.Tensor) -> torch.Tensor:
        """The outputs before assembly: (n, n_out); for a set, per member (n, N, n_out) for a member
        scalar target, per pair (n, N, N, n_out) for a vector target."""
        if not self.pairs:
            return self.net(z)
        embedded = self.phi(z)
        g = self._pool(embedded, False)
        n, members = z.shape[0], z.shape[1]
        if not self.design.is_vector:
            if not self.member_target:
                return self.net(g)
            a = self._pool(embedded, True)
            return self.net(torch.cat([a, g[:, None].expand(n, members, -1)], -1))
        parts = [(z - self.phi.shift) / self.phi.scale]  # the pair's features, standardised as phi reads them
        if self.member_target:
            parts.append(self._pool(embedded, True)[:, :, None].expand(n, members, members, -1))
        parts.append(g[:, None, None].expand(n, members, members, -1))
        return self.net(torch.cat(parts, -1))

    def forward(self, *xs: Any) -> Any:
        mean, sigma, _ = self._predict(self._values(xs))
        return (mean, sigma) if self.gaussian else mean

    def _predict(self, values: Mapping[str, Any]) -> tuple[Any, Any, Any]:
        """Mean, sigma (None unless gaussian) and the normaliser of the loss (per sample, or per member)."""
        if self.method in FRAMED:
            return self._predict_framed(values)
        if self.method in TENSOR_NETS:
            return self._predict_irreps(values)
        if self.method == "relaxed":  # the exact pathway's sigma and normaliser: the free one adds to the mean
            mean, sigma, norm = self.exact._predict(values)
            return mean + self.free._predict(values)[0], sigma, norm
        design = self.design
        batch = self._batch(values)
        view = view_values(self.decl, values)
        computed = design.plan.compute(view) if not self.raw_layout else {}
        h = self._head(self._features(values, computed, batch))
        out = h.shape[:-1]  # (n,), (n, N) or (n, N, N)
        if self.raw_layout:
            return self._assemble_raw(h)
        log_sigma = self._log_sigma(h)
        coef = h[..., : self.n_coef] * self.coef_scale
        if not design.is_vector:
            if self.method == "pi":
                scale = self._target_scale(computed, batch)
                if self.pairs:  # the geometric mean over the pairs (of member i, for a member target)
                    scale = torch.exp(self._pool(torch.log(scale.abs()), self.member_target))
                mean, norm = scale * coef[..., 0], scale.abs() * self.coef_scale[0]
            else:
                mean, norm = self.y_shift[0] + self.y_scale * coef[..., 0], self.y_scale.expand(out)
            sigma = None if log_sigma is None else norm * torch.exp(log_sigma)
            return mean, sigma, norm
        terms = self._terms(view, computed, batch)
        mean = sum(coef[..., k, None] * t for k, t in enumerate(terms))
        if design.centroid is not None:
            mean = mean + torch.broadcast_to(design.centroid(view), (*batch, self.d))
        if self.method == "pi":
            norm = sum((self.coef_scale[k] * t).pow(2).sum(-1) for k, t in enumerate(terms)) / len(terms)
        else:
            norm = self.y_scale.pow(2).expand(batch)
        if self.pairs:
            mean, norm = self._pool(mean, self.member_target), self._pool(norm, self.member_target)
        norm = norm.sqrt().clamp_min(torch.finfo(h.dtype).tiny)
        sigma = None
        if log_sigma is not None:
            if self.method == "pi":
                base = self._target_scale(computed, batch).abs()
                if self.pairs:
                    base = torch.exp(self._pool(torch.log(base), False))
                    log_sigma = self._pool(log_sigma, False)
                base = base * self.sigma_scale
            else:
                base = self.y_scale.expand(batch[:1])
                log_sigma = self._pool(log_sigma, False) if self.pairs else log_sigma
            sigma = base * torch.exp(log_sigma)
        return mean, sigma, norm

    # -- frame averaging and canonicalization --------------------------------------------------------

    def _centre(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """The centroid of every position input (each member's), (n, d); None without positions."""
        positions = [values[q.name] for q in self.inputs if q.kind is Kind.POSITION]
        if not positions:
            return None
        n = positions[0].shape[0]
        return torch.cat([p.reshape(n, -1, self.d) for p in positions], 1).mean(1)

    def _like(self, centre: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The centroid (n, d) shaped to broadcast against positions (n, ..., d)."""
        return centre.reshape(len(x), *([1] * (x.ndim - 2)), self.d)

    def _centred(self, values: Mapping[str, torch.Tensor], centre: torch.Tensor | None) -> dict[str, torch.Tensor]:
        out = dict(values)
        for q in self.inputs:
            if q.kind is Kind.POSITION and centre is not None:
                x = values[q.name]
                out[q.name] = x - self._like(centre, x)
        return out

    def _frames(self, centred: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Each sample's frame elements (n, F, d, d); for the canonical frame, the output axes it
        determines (n, d); and the null axes of the inputs (n, d) (:mod:`pipeline.frames`)."""
        vectors = [centred[q.name] for q in self.inputs if q.kind in (Kind.VECTOR, Kind.POSITION)]
        vectors, tensors = directions(vectors, [centred[q.name] for q in self.inputs if q.kind is Kind.TENSOR])
        moment = second_moment(vectors, tensors)
        spectrum = principal_axes(moment)
        null = null_axes(spectrum[0])
        proper = self.decl.group in ("SO", "SE")
        if self.method == "frame":
            return pca_frames(moment, proper, spectrum), None, null
        frame, keep = canonical_frame(moment, vectors, proper, spectrum)
        return frame[:, None], keep, null

    def _in_frames(self, values: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Any, Any, Any]:
        """The inputs in every frame element, as a batch of n * F samples; the frames, the axes kept and
        the centre."""
        centre = self._centre(values)
        centred = self._centred(values, centre)
        frames, keep, null = self._frames(centred)
        n, count = frames.shape[:2]
        moved = {}
        for q in self.inputs:
            x = to_frame(centred[q.name], frames, "scalar" if q.kind is Kind.SCALAR else q.kind.value, null)
            moved[q.name] = x.reshape(n * count, *x.shape[2:])
        return moved, frames, keep, centre

    def _predict_framed(self, values: Mapping[str, Any]) -> tuple[Any, Any, Any]:
        moved, frames, keep, centre = self._in_frames(values)
        n, count = frames.shape[:2]
        batch = self._batch(moved)
        h = self._head(self._features(moved, {}, batch))
        mean, sigma, _ = self._assemble_raw(h)
        mean = mean.reshape(n, count, *mean.shape[1:])
        if self.design.is_vector:
            if keep is not None:
                mean = mean * keep.reshape(n, 1, *([1] * (mean.ndim - 3)), self.d)
            mean = from_frame(mean, frames).mean(1)
            if self.design.target.kind is Kind.POSITION and centre is not None:
                mean = mean + self._like(centre, mean)
        else:
            mean = mean.mean(1)
        if sigma is not None:
            sigma = sigma.reshape(n, count, *sigma.shape[1:]).mean(1)
        norm = self.y_scale.expand(mean.shape[:-1] if self.design.is_vector else mean.shape)
        return mean, sigma, norm

    def _log_sigma(self, h: torch.Tensor) -> torch.Tensor | None:
        return h[..., self.n_coef].clamp(*LOG_SIGMA_RANGE) if self.gaussian else None

    def _assemble_raw(self, h: torch.Tensor) -> tuple[Any, Any, Any]:
        """Mean, sigma and normaliser from the outputs of a model laid out as ``raw``'s."""
        n = h.shape[0]
        log_sigma = self._log_sigma(h)
        coef = h[:, : self.n_out_raw]
        if self.design.is_vector:
            mean = (self.y_shift + self.y_scale * coef).reshape(
                n, *([self.set_size] if self.member_target else []), self.d
            )
        else:
            mean = self.y_shift[0] + self.y_scale * coef
            mean = mean if self.member_target else mean[:, 0]
        norm = self.y_scale.expand(mean.shape[:-1] if self.design.is_vector else mean.shape)
        sigma = None if log_sigma is None else self.y_scale * torch.exp(log_sigma)
        return mean, sigma, norm

    def _nonzero_terms(self, view: Mapping[str, Any], batch: tuple[int, ...], rows: Callable[[Any], Any]) -> list[bool]:
        """Per basis vector, whether it is more than round-off on the training data: its length against the
        product of the lengths of the vectors and tensors it is made of."""
        used = []
        for b in self.design.basis:
            length = rows(torch.broadcast_to(b.build(view), (*batch, self.d)).norm(dim=-1))
            scale = torch.ones_like(length)
            for part in b.parts:
                scale = scale * rows(torch.broadcast_to(part(view), batch))
            used.append(bool((length > ROUND_OFF_ZERO * scale).any()))
        return used

    @property
    def n_out_raw(self) -> int:
        return self.n_coef * (self.set_size if self.member_target else 1)

    def _moved(
        self, values: Mapping[str, torch.Tensor], target: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """The samples each moved by its own random group element, and how that element moves an output."""
        n = target.shape[0]
        to = {"dtype": target.dtype, "device": target.device}
        matrices, translations = random_elements(
            self.decl.group, self.d, n, translation_scale=float(self.translation_scale), **to
        )
        name, kind = self.target, self.design.target.kind.value

        def move(y: torch.Tensor) -> torch.Tensor:
            return act({name: y}, {name: kind}, matrices, translations)[name]

        return act(values, self.kinds, matrices, translations), move(target), move

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        values = {q.name: batch[INPUT_PREFIX + q.name] for q in self.inputs}
        target = batch[TARGET_KEY]
        moved = self._moved(values, target) if self.training and self.method in MOVED else None
        if moved is not None and self.method == "augment":
            values, target = moved[0], moved[1]
        mean, sigma, norm = self._predict(values)
        residual = mean - target
        squared = residual.pow(2).sum(-1) if self.design.is_vector else residual.pow(2)
        if sigma is None:
            loss = torch.mean(squared / norm.pow(2))
        else:
            dof = self.d if self.design.is_vector else 1
            loss = torch.mean(0.5 * squared / sigma.pow(2) + dof * torch.log(sigma / norm))
        if moved is not None and self.method == "penalty":  # f(g x) against g f(x), on the training samples
            gap = self._predict(moved[0])[0] - moved[2](mean)
            gap = gap.pow(2).sum(-1) if self.design.is_vector else gap.pow(2)
            loss = loss + PENALTY_WEIGHT * torch.mean(gap / norm.pow(2))
        if self.training and self.method == "relaxed":  # the prior on the free pathway (not in validation)
            loss = loss + RELAXED_WEIGHT * sum(p.pow(2).sum() for p in self.free.parameters())
        return loss

    # -- normalisation from the training data --------------------------------------------------------

    @torch.no_grad()
    def fit_normalisation(self, values: Mapping[str, np.ndarray], target: np.ndarray) -> None:
        """Set the fixed scales from the training data (float64, declared units): the Pi groups' and
        the first MLP's input scales, and the output's (pure numbers for ``pi``)."""
        design = self.design
        to = {"dtype": self.y_scale.dtype, "device": self.y_scale.device}
        tensors = {q.name: torch.as_tensor(np.asarray(values[q.name]), **to) for q in self.inputs}
        y = torch.as_tensor(np.asarray(target), **to)
        if self.method in MOVED:
            self._fit_translations(tensors)
        if self.method in FRAMED:
            self._fit_framed(tensors, y)
            return
        if self.method in TENSOR_NETS:
            self._fit_irreps(tensors, y)
            return
        if self.method == "relaxed":
            self.exact.fit_normalisation(values, target)
            self.free.fit_normalisation(values, target)
            self.free.y_shift.zero_()  # a residual: its outputs are in the target's size about zero
            return
        batch = self._batch(tensors)
        view = view_values(self.decl, tensors)
        computed = design.plan.compute(view) if not self.raw_layout else {}

        def rows(x: torch.Tensor) -> torch.Tensor:  # every sample, or every distinct pair, as rows
            if not self.pairs:
                return x.reshape(batch[0], -1) if x.ndim > 1 else x
            return x[:, ~torch.eye(batch[1], dtype=torch.bool, device=x.device)].reshape(-1, *x.shape[3:])

        if self.method == "pi" and self.pi_columns:
            median = rows(self._raw_pi(computed, batch)).abs().median(0).values
            self.pi_scale.copy_(torch.where(median > 0, median, torch.ones_like(median)))
        first = self.phi if self.pairs else self.net
        first.fit_input(rows(self._features(tensors, computed, batch)))
        if self.raw_layout:
            flat = y.reshape(len(y), -1)
            shift = flat.mean(0) if design.is_vector else flat.mean().reshape(1)
            self.y_shift.copy_(shift)
            self.y_scale.fill_(_rms((flat - shift).cpu().numpy()))
            return
        if not design.is_vector:
            if self.method == "pi":
                scale = self._target_scale(computed, batch)
                if self.pairs:
                    scale = torch.exp(self._pool(torch.log(scale.abs()), self.member_target))
                self.coef_scale.fill_(_rms((y / scale).cpu().numpy()))
            else:
                self.y_shift.fill_(float(y.mean()))
                self.y_scale.fill_(_rms((y - y.mean()).cpu().numpy()))
            return
        centred = y
        if design.centroid is not None:
            centroid = torch.broadcast_to(design.centroid(view), (*batch, self.d))
            centred = y - (self._pool(centroid, False) if self.pairs else centroid)
        size = _rms(centred.norm(dim=-1).cpu().numpy())
        self.y_scale.fill_(size)
        terms = self._terms(view, computed, batch)
        used = self._nonzero_terms(view, batch, rows)
        if not any(used):
            raise ValueError(
                f"target {self.target!r}: every equivariant vector it could be built from is zero on the data"
            )
        # a vector that is zero to round-off on the data (the cross product of parallel vectors) gets no
        # coefficient: scaled up to the target's size, its round-off would break the exact symmetry
        self.coef_scale.copy_(
            torch.as_tensor(
                [size / _rms(rows(t.norm(dim=-1)).cpu().numpy()) if u else 0.0 for t, u in zip(terms, used)], **to
            )
        )
        if self.method == "pi" and design.scaling is not None:
            scale = rows(self._target_scale(computed, batch)).cpu().numpy()
            self.sigma_scale.fill_(size / _rms(scale))

    def _fit_translations(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """The spread of the positions' centroid across the training samples: the size of the random
        translations under E(d) and SE(d)."""
        centre = self._centre(tensors)
        if centre is not None:
            self.translation_scale.fill_(_rms((centre - centre.mean(0)).norm(dim=-1).cpu().numpy()))

    def _fit_irreps(self, tensors: Mapping[str, torch.Tensor], y: torch.Tensor) -> None:
        """A scalar input's mean and spread; a vector's or tensor's root mean square size, one per
        quantity (no shift, which no rotation would keep); the output's as for the frame methods."""
        centre = self._centre(tensors)
        features = self._tensor_features(tensors, centre)
        for q, start, stop in self._tensor_blocks():
            block = features[:, start:stop]
            if q.kind is Kind.SCALAR:  # as MLP.fit_input: a constant (to round-off) keeps scale 1
                mean, spread = block.mean(0), block.std(0) if len(block) > 1 else torch.zeros_like(block[0])
                self.irreps_shift[start:stop] = mean
                self.irreps_scale[start:stop] = torch.where(spread > 1e-12 * (1 + mean.abs()), spread, 1.0)
            else:
                width = {Kind.TENSOR: 6 if self.method == "e3nn" else self.d**2}.get(q.kind, self.d)
                self.irreps_scale[start:stop] = _rms(block.reshape(len(block), -1, width).norm(dim=-1).cpu().numpy())
        self._fit_target(y, centre)

    def _fit_target(self, y: torch.Tensor, centre: torch.Tensor | None) -> None:
        """The output's shift and scale: a scalar's mean and spread; a vector's size, without a shift
        (a position's about the centroid)."""
        if not self.design.is_vector:
            flat = y.reshape(len(y), -1)
            self.y_shift.fill_(float(flat.mean()))
            self.y_scale.fill_(_rms((flat - flat.mean()).cpu().numpy()))
            return
        if self.design.target.kind is Kind.POSITION and centre is not None:
            y = y - self._like(centre, y)
        self.y_shift.zero_()
        self.y_scale.fill_(_rms(y.cpu().numpy()))

    def _fit_framed(self, tensors: Mapping[str, torch.Tensor], y: torch.Tensor) -> None:
        """The MLP's input scales from the training inputs in every frame element; the output's from the
        target (a vector's without a shift, which no rotation would keep; a position's about the centroid)."""
        moved, _, _, centre = self._in_frames(tensors)
        self.net.fit_input(self._features(moved, {}, self._batch(moved)))
        self._fit_target(y, centre)


def training_data(
    model: DeclaredSurrogate, values: Mapping[str, np.ndarray], target: np.ndarray
) -> dict[str, np.ndarray]:
    """The trainer's dict of arrays (inputs by name, and the target)."""
    data = {INPUT_PREFIX + q.name: np.asarray(values[q.name], dtype=np.float64) for q in model.inputs}
    data[TARGET_KEY] = np.asarray(target, dtype=np.float64)
    return data


def _loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model.loss(batch)


def fit_surrogate(
    declaration: Mapping[str, Any],
    target: str,
    method: str,
    train_set: tuple[Mapping[str, np.ndarray], np.ndarray],
    val_set: tuple[Mapping[str, np.ndarray], np.ndarray],
    config: TrainConfig,
    *,
    hidden: Sequence[int] = (64, 64),
    gaussian: bool = False,
    signed: Sequence[str] | None = None,
    zero: Sequence[str] = (),
    set_size: int | None = None,
    checkpoint: str | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> tuple[DeclaredSurrogate, TrainResult]:
    """A :class:`DeclaredSurrogate` fitted with the shared trainer (best validation weights).

    The model is built after seeding, so its initial weights follow ``config.seed``."""
    decl = SystemDeclaration.from_dict(declaration, source="declaration")
    if set_size is None and decl.permutation is not None:
        set_size = int(np.shape(train_set[0][decl.inputs_only().permutation.quantities[0]])[1])
    seed_everything(config.seed)
    model = DeclaredSurrogate(
        declaration, target, method, hidden, gaussian, signed=signed, zero=zero, set_size=set_size
    ).to(torch.float64)
    model.fit_normalisation(*train_set)
    result = train(
        model,
        _loss,
        training_data(model, *train_set),
        training_data(model, *val_set),
        config,
        checkpoint=checkpoint,
        on_epoch=on_epoch,
    )
    return model, result


def predict(
    model: DeclaredSurrogate, values: Mapping[str, np.ndarray], batch_size: int = 16384
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean and sigma (None unless gaussian) for every sample of ``values``, as float64 numpy."""
    model.eval()
    n = len(next(iter(values.values())))
    means, sigmas = [], []
    param = next(itertools.chain(model.parameters(), model.buffers()))
    with torch.no_grad():
        for start in range(0, n, batch_size):
            chunk = [
                torch.as_tensor(values[q.name][start : start + batch_size], dtype=param.dtype, device=param.device)
                for q in model.inputs
            ]
            mean, sigma, _ = model._predict(dict(zip((q.name for q in model.inputs), chunk)))
            means.append(mean.cpu().double().numpy())
            if sigma is not None:
                sigmas.append(sigma.cpu().double().numpy())
    mean = np.concatenate(means) if means else np.zeros((0,))
    return mean, (np.concatenate(sigmas) if sigmas else None)
