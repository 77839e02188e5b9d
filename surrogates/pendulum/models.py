"""Surrogates of the springy double pendulum (docs/protocols.md, both pendulum protocols).

States are z = (q1, q2, p1, p2) shaped (batch, 12); per-system context theta = (m1, m2, k1, k2, l1,
l2, g) shaped (batch, 9), in kg, m and s. Five models, all trained through their own RK4 rollout:

- ``ScalarHNN(inputs="scalars")``: H = MLP(O(3) scalars), the scalars being the Gram matrix of
  (q1, q2, p1, p2, g), the norms |q1|, |q2|, |p1|, |p2|, |q1 - q2| and the six scalar parameters
  (26 numbers). O(3)-invariant H, so an O(3)-equivariant flow. With ``units`` fitted by an affine
  normalisation it is the dimensional-scalars baseline of docs/protocols.md#pendulum-units-protocol.
- ``ScalarHNN(inputs="raw")``: the plain MLP baseline, H = MLP(z, theta).
- ``ScalarNODE(inputs="scalars")``: dz_i/dt = sum_j c_ij(scalars) v_j with v = (q1, q2, p1, p2, g);
  O(3)-equivariant. ``ScalarNODE(inputs="raw")``: dz/dt = MLP(z, theta).
- ``DimensionlessHNN``: H = sum_j E_j MLP_j(pi), E_j energies built from the inputs (k1 l1^2,
  k2 l2^2, |p1|^2/m1, |p2|^2/m2, m1 g.q1, m2 g.q2) and pi the Buckingham-Pi groups of the declared
  quantities (``pipeline.features.FeaturePlan``) plus |q1|/l1, |q2|/l1, |q1 - q2|/l1. Inputs are
  normalised multiplicatively only, so the model is exactly units-equivariant: scaling kg by s leaves
  predicted positions unchanged and multiplies momenta by s, whatever the weights.

For comparing the ways of building O(3) in (docs/fit.md#other-methods), three approximate HNNs trained
by the same rollout loss: ``AugmentedHNN`` (the MLP HNN on randomly rotated trajectories), ``PenaltyHNN``
(the MLP HNN with an equivariance penalty) and ``RelaxedHNN`` (the scalar HNN plus an MLP HNN under an L2
prior, a residual pathway prior); and for the units (the units protocol), ``UnitsAugmentedHNN`` (the
dimensional-scalars HNN on chunks in random units) and ``RelaxedUnitsHNN`` (the dimensionless HNN plus the
dimensional-scalars one under the same prior).

Every model says what it reads and returns as ``model.io`` (a ``pipeline.model_io.ModelIO``): z and
theta as the declared vectors and parameters, dz/dt as their time derivatives, under the declared
O(3); the scalar models promise O(3) equivariance, the raw MLPs do not (baselines), and only the
dimensionless HNN promises units equivariance.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pipeline.features import FeaturePlan
from pipeline.matrix_groups import MatrixGroup, about_z, orthogonal
from pipeline.model_io import ModelIO, Port
from pipeline.model_symmetry import scale_port
from pipeline.symmetry import unit_factor
from sims.pendulum import system as sp
from surrogates.artifacts import register_model
from surrogates.dynamics import DynamicsModel, HamiltonianModel, rollout
from surrogates.emlp import EMLP, TensorSum
from surrogates.mlp import MLP

THETA_DIM = 9
DEFAULT_ACTIVATION = "silu"  # smooth: a ReLU network makes dH/dz piecewise constant
INPUTS = ("scalars", "raw")


def theta_of(params: sp.Parameters) -> torch.Tensor:
    """Per-system context (batch, 9): m1, m2, k1, k2, l1, l2, g."""
    scalars = torch.stack([getattr(params, name) for name in sp.SCALAR_PARAMETERS], dim=-1)
    return torch.cat([scalars, params.g], dim=-1)


def parameters_of(theta: torch.Tensor) -> sp.Parameters:
    """The systems' parameters from their contexts (the inverse of :func:`theta_of`)."""
    scalars = {name: theta[:, i] for i, name in enumerate(sp.SCALAR_PARAMETERS)}
    return sp.Parameters.from_mapping({**scalars, "g": theta[:, 6:9]})


def named_values(z: torch.Tensor, theta: torch.Tensor) -> dict[str, torch.Tensor]:
    """The declared quantities by name (views of z and theta), as ``FeaturePlan.compute`` takes them."""
    q1, q2, p1, p2 = sp.split_state(z)
    values = {name: theta[..., i] for i, name in enumerate(sp.SCALAR_PARAMETERS)}
    values.update(g=theta[..., 6:9], q1=q1, q2=q2, p1=p1, p2=p2)
    return values


VECTORS = ("q1", "q2", "p1", "p2", "g")
_UPPER = torch.triu_indices(5, 5)


def _gram(z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Inner products of (q1, q2, p1, p2, g), (batch, 5, 5), in one matrix product."""
    vectors = torch.cat([z, theta[..., 6:9]], dim=-1).reshape(z.shape[:-1] + (5, 3))
    return vectors @ vectors.transpose(-1, -2)


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    """Square root whose gradient at 0 is 0 rather than inf (as ``pipeline.invariants.norm``)."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x))


def _distances(gram: torch.Tensor) -> torch.Tensor:
    """|q1|, |q2|, |p1|, |p2|, |q1 - q2| from the Gram matrix."""
    diagonal = torch.diagonal(gram, dim1=-2, dim2=-1)[..., :4]
    separation = gram[..., 0, 0] + gram[..., 1, 1] - 2 * gram[..., 0, 1]
    return _sqrt(torch.cat([diagonal, separation[..., None]], dim=-1))


def dimensional_scalars(z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The 26 O(3)-invariant scalars (with units) of a state and its system: the six scalar
    parameters, the 15 inner products of (q1, q2, p1, p2, g) and |q1|, |q2|, |p1|, |p2|, |q1 - q2|."""
    gram = _gram(z, theta)
    return torch.cat([theta[..., :6], gram[..., _UPPER[0], _UPPER[1]], _distances(gram)], dim=-1)


def raw_inputs(z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Coordinates and parameters as they are (not invariant: the MLP baselines)."""
    return torch.cat([z, theta], dim=-1)


@functools.cache
def feature_plan() -> FeaturePlan:
    return FeaturePlan(sp.DECLARATION)


@dataclass(frozen=True)
class _PiLayout:
    """The plan's Pi groups as (one invariant scalar) x exp(A log(repeating parameters)) x factor.

    Evaluating them this way takes a handful of tensor operations instead of one per scalar and
    power, which matters inside a Hamiltonian's double backward; ``test_pendulum_models`` checks it
    against ``FeaturePlan.compute``.
    """

    lead: torch.Tensor  # column of each group's non-repeating scalar in cat(theta[:6], gram.flatten())
    repeating: torch.Tensor  # columns of the repeating parameters in theta
    exponents: torch.Tensor  # (groups, repeating)
    factors: torch.Tensor  # (groups,)


@functools.cache
def _pi_layout() -> _PiLayout:
    plan = feature_plan()
    repeating = plan.analysis.repeating
    params = list(sp.SCALAR_PARAMETERS)
    if any(r not in params for r in repeating):
        raise RuntimeError(f"pendulum Pi groups: repeating quantities {repeating} are not all scalar parameters")

    def column(name: str) -> int:
        if name in params:
            return params.index(name)
        a, b = name.split(".")
        return len(params) + 5 * VECTORS.index(a) + VECTORS.index(b)

    lead, exponents = [], []
    for group in plan.pi_groups:
        powers = dict(group.exponents)
        others = [q for q in powers if q not in repeating]
        if len(others) != 1 or powers[others[0]] != 1:
            raise RuntimeError(f"pendulum Pi group {group.name!r} is not (scalar) x (repeating powers)")
        lead.append(column(others[0]))
        exponents.append([float(powers.get(r, 0)) for r in repeating])
    return _PiLayout(
        lead=torch.tensor(lead),
        repeating=torch.tensor([params.index(r) for r in repeating]),
        exponents=torch.tensor(exponents, dtype=torch.float64),
        factors=torch.tensor([g.factor for g in plan.pi_groups], dtype=torch.float64),
    )


def pi_groups(z: torch.Tensor, theta: torch.Tensor, gram: torch.Tensor | None = None) -> torch.Tensor:
    """The Buckingham-Pi groups of ``feature_plan()`` (batch, n_pi), in the plan's order."""
    layout = _pi_layout()
    gram = _gram(z, theta) if gram is None else gram
    scalars = torch.cat([theta[..., :6], gram.flatten(-2)], dim=-1)[..., layout.lead]
    log_repeating = torch.log(theta[..., layout.repeating])
    exponents = layout.exponents.to(theta)
    return scalars * torch.exp(log_repeating @ exponents.T) * layout.factors.to(theta)


def dimensionless_inputs(z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Pi groups of the declared quantities, plus |q1|/l1, |q2|/l1 and |q1 - q2|/l1 (all exactly invariant)."""
    gram = _gram(z, theta)
    lengths = _distances(gram)[..., [0, 1, 4]] / theta[..., 4:5]
    return torch.cat([pi_groups(z, theta, gram), lengths], dim=-1)


def energy_scales(z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Six quantities in energy units (batch, 6): k1 l1^2, k2 l2^2, |p1|^2/m1, |p2|^2/m2, m1 g.q1, m2 g.q2."""
    m, k, l = theta[..., 0:2], theta[..., 2:4], theta[..., 4:6]
    q, p, g = (
        z[..., :6].reshape(z.shape[:-1] + (2, 3)),
        z[..., 6:].reshape(z.shape[:-1] + (2, 3)),
        theta[..., None, 6:9],
    )
    return torch.cat([k * l**2, (p * p).sum(-1) / m, m * (g * q).sum(-1)], dim=-1)


STATE = Port.of(sp.DECLARATION, "z", sp.STATE_VECTORS)
"""The state z (batch, 12): q1, q2 (m) and p1, p2 (kg m s^-1), 3-vectors side by side."""
CONTEXT = Port.of(sp.DECLARATION, "theta", (*sp.SCALAR_PARAMETERS, "g"))
"""The context theta (batch, 9): m1, m2, k1, k2, l1, l2 and the vector g."""
STATE_RATE = STATE.derivative("s", name="dz/dt")
ENERGY = Port.of(sp.DECLARATION, "H", ("H",))
"""What ``HamiltonianModel.energy(z, theta)`` returns: the declared target H, an invariant scalar (J)."""


def pendulum_io(*, equivariant: bool, units: str) -> ModelIO:
    """A pendulum vector field: (z, theta) -> dz/dt under the declared O(3)."""
    return ModelIO.declared(
        sp.DECLARATION,
        (STATE, CONTEXT),
        (STATE_RATE,),
        equivariant=equivariant,
        units=units,
        description="vector field dz/dt of the springy double pendulum",
    )


N_SCALARS = 26
N_DIMENSIONLESS = len(feature_plan().pi_groups) + 3
N_ENERGIES = 6
FEATURES = {"scalars": (dimensional_scalars, N_SCALARS), "raw": (raw_inputs, sp.STATE_DIM + THETA_DIM)}


def _check_inputs(inputs: str) -> None:
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")


class _PendulumModel:
    """What every pendulum model shares: a config that rebuilds it, and input normalisation."""

    config: dict[str, Any]
    mlp: MLP
    multiplicative = False

    def _build_mlp(self, inputs: str, hidden: tuple[int, ...], activation: str, n_out: int) -> None:
        """One MLP on the ``inputs`` features ("scalars" or "raw"); sets the config that rebuilds it."""
        _check_inputs(inputs)
        self.config = {"inputs": inputs, "hidden": list(hidden), "activation": activation}
        self.inputs = inputs
        self._features, n_in = FEATURES[inputs]
        self.mlp = MLP(n_in, n_out, tuple(hidden), activation)

    def features(self, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return self._features(z, theta)

    @property
    def io(self) -> ModelIO:
        """(z, theta) -> dz/dt; O(3)-equivariant on the invariant scalars, not on raw coordinates."""
        return pendulum_io(equivariant=self.inputs == "scalars", units="none")

    def fit_inputs(self, z: torch.Tensor, theta: torch.Tensor) -> None:
        """Normalise the MLP's inputs with statistics of training states z (N, 12) and contexts (N, 9)."""
        with torch.no_grad():
            self.mlp.fit_input(self.features(z, theta), multiplicative=self.multiplicative)


@register_model("pendulum.hnn")
class ScalarHNN(_PendulumModel, HamiltonianModel):
    """H = MLP(features): O(3) scalars (``inputs="scalars"``) or raw coordinates (``inputs="raw"``)."""

    def __init__(
        self, inputs: str = "scalars", hidden: tuple[int, ...] = (100,) * 4, activation: str = DEFAULT_ACTIVATION
    ):
        super().__init__()
        self._build_mlp(inputs, hidden, activation, n_out=1)

    def energy(self, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(z, theta))[..., 0]


@register_model("pendulum.node")
class ScalarNODE(_PendulumModel, DynamicsModel):
    """A neural ODE: O(3)-equivariant sum_j c_ij(scalars) v_j (``scalars``), or dz/dt = MLP(z, theta) (``raw``)."""

    def __init__(
        self, inputs: str = "scalars", hidden: tuple[int, ...] = (100,) * 4, activation: str = DEFAULT_ACTIVATION
    ):
        super().__init__()
        # scalars: 4 output vectors, each a combination of the 5 vectors (q1, q2, p1, p2, g)
        self._build_mlp(inputs, hidden, activation, n_out=20 if inputs == "scalars" else sp.STATE_DIM)

    def forward(self, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        out = self.mlp(self.features(z, theta))
        if self.inputs == "raw":
            return out
        vectors = torch.cat([z, theta[..., 6:9]], dim=-1).reshape(z.shape[:-1] + (5, 3))
        coefficients = out.reshape(out.shape[:-1] + (4, 5))  # output vector i = sum_j c_ij v_j
        return (coefficients @ vectors).flatten(-2)


@register_model("pendulum.dimensionless_hnn")
class DimensionlessHNN(_PendulumModel, HamiltonianModel):
    """H = sum_j E_j MLP_j(pi): exactly O(3)- and units-equivariant (one MLP with one output per E_j)."""

    multiplicative = True

    def __init__(self, hidden: tuple[int, ...] = (100,) * 4, activation: str = DEFAULT_ACTIVATION):
        super().__init__()
        self.config = {"hidden": list(hidden), "activation": activation}
        self.mlp = MLP(N_DIMENSIONLESS, N_ENERGIES, tuple(hidden), activation)

    def features(self, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return dimensionless_inputs(z, theta)

    @property
    def io(self) -> ModelIO:
        """(z, theta) -> dz/dt, O(3)- and units-equivariant."""
        return pendulum_io(equivariant=True, units="equivariant")

    def energy(self, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return (energy_scales(z, theta) * self.mlp(self.features(z, theta))).sum(-1)


# -- the other ways of building O(3) in (docs/fit.md#other-methods), for comparing methods -----------------

PENALTY_WEIGHT = 1.0  # as eqs fit's penalty method
RELAXED_WEIGHT = 1e-4  # as eqs fit's relaxed method: the L2 prior on the free pathway, against the loss


def rotated(z: torch.Tensor, theta: torch.Tensor, matrices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """States (n, ..., 12) and contexts (n, 9) with each system's q1, q2, p1, p2 and g moved by its own
    orthogonal matrix (n, 3, 3); the six scalar parameters stay."""
    vectors = z.reshape(z.shape[0], -1, 3) @ matrices.transpose(1, 2)
    g = (matrices @ theta[:, 6:9, None])[..., 0]
    return vectors.reshape(z.shape), torch.cat([theta[:, :6], g], dim=-1)


def _random_rotations(n: int, like: torch.Tensor) -> torch.Tensor:
    from pipeline.frames import random_elements

    return random_elements("O", 3, n, dtype=like.dtype, device=like.device)[0]


@register_model("pendulum.augmented_hnn")
class AugmentedHNN(ScalarHNN):
    """The MLP HNN trained on trajectories each moved by its own random element of O(3) (Haar), drawn
    anew every step from torch's generator (so resume is bit-identical): approximate."""

    def __init__(self, inputs: str = "raw", hidden: tuple[int, ...] = (100,) * 4, activation: str = DEFAULT_ACTIVATION):
        super().__init__(inputs, hidden, activation)

    def moved_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        z, theta = rotated(batch["z"], batch["theta"], _random_rotations(batch["z"].shape[0], batch["z"]))
        return {**batch, "z": z, "theta": theta}


@register_model("pendulum.penalty_hnn")
class PenaltyHNN(ScalarHNN):
    """The MLP HNN trained with an equivariance penalty: the mean squared distance between its rollout
    from randomly rotated chunks and its rotated rollout, in the loss's units, weight PENALTY_WEIGHT
    (``chunk_loss``): approximate."""

    equivariance_penalty = PENALTY_WEIGHT

    def __init__(self, inputs: str = "raw", hidden: tuple[int, ...] = (100,) * 4, activation: str = DEFAULT_ACTIVATION):
        super().__init__(inputs, hidden, activation)


@register_model("pendulum.relaxed_hnn")
class RelaxedHNN(HamiltonianModel):
    """A residual pathway prior (Finzi, Benton and Wilson, NeurIPS 2021): H = the scalar HNN's energy plus
    the MLP HNN's, whose parameters carry the L2 prior RELAXED_WEIGHT in training: approximate."""

    def __init__(self, hidden: tuple[int, ...] = (100,) * 4, activation: str = DEFAULT_ACTIVATION):
        super().__init__()
        self.config = {"hidden": list(hidden), "activation": activation}
        self.exact, self.free = self._pathways(hidden, activation)

    @staticmethod
    def _pathways(hidden: tuple[int, ...], activation: str) -> tuple[HamiltonianModel, ScalarHNN]:
        """The exact pathway and the free one under the prior."""
        return ScalarHNN("scalars", hidden, activation), ScalarHNN("raw", hidden, activation)

    @property
    def io(self) -> ModelIO:
        return pendulum_io(equivariant=False, units="none")

    def fit_inputs(self, z: torch.Tensor, theta: torch.Tensor) -> None:
        self.exact.fit_inputs(z, theta)
        self.free.fit_inputs(z, theta)

    def energy(self, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return self.exact.energy(z, theta) + self.free.energy(z, theta)

    def extra_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return RELAXED_WEIGHT * sum(p.pow(2).sum() for p in self.free.parameters())


# -- the same methods for the symmetry of units (the units protocol) ------------------------------------------

# kg and m: a change of the unit of time would also change the chunks' time grid, which the batch shares
UNITS_AUGMENT_DIMENSIONS = ("[mass]", "[length]")
# log-uniform per base unit; the units checks draw from [0.1, 10], which cost far more accuracy in training than
# it gained out of distribution (docs/RESULTS.md, the units protocol methods)
UNITS_AUGMENT_RANGE = (1 / 3, 3.0)


def units_rescaled(
    z: torch.Tensor, theta: torch.Tensor, scales: dict[str, np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """States (n, ..., 12) and contexts (n, 9) in new units, each system's base units shrunk by its own
    factors (``scales``: base dimension -> (n,), as ``pipeline.symmetry.unit_factor`` takes them), and the
    factor of each state component (n, ..., 12), by the units the declaration gives each quantity."""
    independent = sp.DECLARATION.independent_units

    def factor(units: str) -> np.ndarray:
        return unit_factor(units, scales, independent)

    state_scale = scale_port(torch.ones_like(z), STATE, factor, 3)
    return z * state_scale, scale_port(theta, CONTEXT, factor, 3), state_scale


@register_model("pendulum.units_augmented_hnn")
class UnitsAugmentedHNN(ScalarHNN):
    """The dimensional-scalars HNN trained on chunks each in its own random units (kg and m rescaled
    log-uniformly in UNITS_AUGMENT_RANGE, drawn anew every step from torch's generator, so resume is
    bit-identical), its loss taken back in the data's units: approximately units-equivariant, exactly
    O(3)-equivariant."""

    def __init__(
        self, inputs: str = "scalars", hidden: tuple[int, ...] = (100,) * 4, activation: str = DEFAULT_ACTIVATION
    ):
        super().__init__(inputs, hidden, activation)

    def moved_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        n = batch["z"].shape[0]
        low, high = np.log(UNITS_AUGMENT_RANGE[0]), np.log(UNITS_AUGMENT_RANGE[1])
        draws = torch.rand(len(UNITS_AUGMENT_DIMENSIONS), n, dtype=torch.float64).numpy()
        scales = {dim: np.exp(low + (high - low) * u) for dim, u in zip(UNITS_AUGMENT_DIMENSIONS, draws, strict=True)}
        z, theta, state_scale = units_rescaled(batch["z"], batch["theta"], scales)
        return {**batch, "z": z, "theta": theta, "state_scale": state_scale}


@register_model("pendulum.relaxed_units_hnn")
class RelaxedUnitsHNN(RelaxedHNN):
    """A residual pathway prior for the units: H = the dimensionless HNN's energy plus the dimensional-scalars
    HNN's, whose parameters carry the L2 prior RELAXED_WEIGHT in training. Exactly O(3)-equivariant (both
    pathways read invariant scalars), approximately units-equivariant."""

    @staticmethod
    def _pathways(hidden: tuple[int, ...], activation: str) -> tuple[HamiltonianModel, ScalarHNN]:
        return DimensionlessHNN(hidden, activation), ScalarHNN("scalars", hidden, activation)

    @property
    def io(self) -> ModelIO:
        return pendulum_io(equivariant=True, units="none")


# -- EMLP (Finzi, Welling and Wilson, ICML 2021): equivariant layers for a chosen group -----------------

EMLP_GROUPS = ("O(3)", "O(2)", "SO(2)", "D2", "D6")
EMLP_HIDDEN = (384,) * 3  # the reference code's pendulum HNN: 3 layers of uniform_rep(384)
# the reference's rate for its EMLPs on this protocol; training caps a preset's higher rate at it
EMLP_MAX_LR = 3e-3
# the bilinear weights' initial spread of the pendulum's EMLP HNNs, chosen on the validation loss of the
# EMLP protocol's quick preset (docs/RESULTS.md); the declared systems' EMLPs keep surrogates.emlp's default
EMLP_BILINEAR_INIT = 0.3


def emlp_group(name: str) -> MatrixGroup:
    """O(3) acting on (q1, q2, p1, p2, g), or a subgroup fixing the z axis acting on (q1, q2, p1, p2)."""
    if name not in EMLP_GROUPS:
        raise ValueError(f"unknown EMLP group {name!r}; choose one of {EMLP_GROUPS}")
    return orthogonal(3) if name == "O(3)" else about_z(name)


@register_model("pendulum.emlp_hnn")
class EMLPHNN(HamiltonianModel):
    """H = EMLP(inputs), exactly invariant under ``group`` whatever the weights.

    As in the EMLP paper's pendulum, the subgroups of O(3) that fix the z axis (O(2), SO(2), D2, D6)
    read only the state (q1, q2, p1, p2): gravity is fixed along -z and the parameters are fixed, so
    the model is equivariant under the data's own symmetry and no more. ``O(3)`` also reads the six
    scalar parameters and the vector g, like the scalar HNN. ``bilinear_init``: the bilinear weights'
    initial spread (``surrogates.emlp``). No input normalisation, as the reference:
    scaling vectors by per-copy statistics would be allowed, shifting them would not.
    """

    max_lr = EMLP_MAX_LR

    def __init__(
        self, group: str = "O(2)", hidden: tuple[int, ...] = EMLP_HIDDEN, bilinear_init: float = EMLP_BILINEAR_INIT
    ):
        super().__init__()
        self.config = {"group": group, "hidden": list(hidden), "bilinear_init": bilinear_init}
        self.group = emlp_group(group)
        self.reads_context = group == "O(3)"
        rep_in = TensorSum((6, 5) if self.reads_context else (0, 4), 3)
        self.net = EMLP(rep_in, TensorSum((1,), 3), self.group, tuple(hidden), bilinear_init)

    @property
    def io(self) -> ModelIO:
        """(z, theta) -> dz/dt; O(3)-equivariant only when built for O(3)."""
        return pendulum_io(equivariant=self.reads_context, units="none")

    def fit_inputs(self, z: torch.Tensor, theta: torch.Tensor) -> None:
        """Nothing to fit: the reference EMLP does not normalise its inputs."""

    def energy(self, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        x = torch.cat([theta[..., :6], z, theta[..., 6:9]], dim=-1) if self.reads_context else z
        return self.net(x)[..., 0]


MODELS = {
    "scalar-hnn": (ScalarHNN, {"inputs": "scalars"}),
    "scalar-node": (ScalarNODE, {"inputs": "scalars"}),
    "mlp-hnn": (ScalarHNN, {"inputs": "raw"}),
    "mlp-node": (ScalarNODE, {"inputs": "raw"}),
    "dimensional-hnn": (ScalarHNN, {"inputs": "scalars"}),
    "dimensionless-hnn": (DimensionlessHNN, {}),
    "mlp-hnn-augment": (AugmentedHNN, {}),
    "mlp-hnn-penalty": (PenaltyHNN, {}),
    "relaxed-hnn": (RelaxedHNN, {}),
    "dimensional-hnn-units-augment": (UnitsAugmentedHNN, {}),
    "relaxed-units-hnn": (RelaxedUnitsHNN, {}),
    **{f"emlp-hnn-{g.lower().replace('(', '').replace(')', '')}": (EMLPHNN, {"group": g}) for g in EMLP_GROUPS},
}
"""Names used by the protocols and reports. ``dimensional-hnn`` is the scalar HNN under the name of
the units protocol's baseline (the same MLP on dimensional scalars)."""
EMLP_MODELS = tuple(name for name, (cls, _) in MODELS.items() if cls is EMLPHNN)
"""The EMLP HNNs' names, one per group of ``EMLP_GROUPS``."""


def build_model(name: str, **overrides: Any) -> torch.nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown pendulum model {name!r}; choose one of {sorted(MODELS)}")
    cls, kwargs = MODELS[name]
    return cls(**{**kwargs, **overrides})


def chunk_loss(times: torch.Tensor, *, substeps: int = 1, method: str = "rk4"):
    """The EMLP protocol's loss (docs/protocols.md): roll out from each chunk's first state, MSE to the chunk."""

    def loss(model: DynamicsModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        training = model.training and torch.is_grad_enabled()
        if training and hasattr(model, "moved_batch"):  # augmentation: the data moved, not the model
            batch = model.moved_batch(batch)
        z = batch["z"]
        ts = times.to(dtype=z.dtype, device=z.device)
        predicted = rollout(model, z[:, 0], batch["theta"], ts, method=method, substeps=substeps)
        residual = predicted[:, 1:] - z[:, 1:]
        if "state_scale" in batch:  # chunks moved to other units: the loss in the data's own
            residual = residual / batch["state_scale"][:, 1:]
        value = (residual**2).mean()
        weight = getattr(model, "equivariance_penalty", 0.0) if training else 0.0
        if weight:  # the rollout from rotated chunks against the rotated rollout, in the loss's units
            matrices = _random_rotations(z.shape[0], z)
            moved = rollout(model, *rotated(z[:, 0], batch["theta"], matrices), ts, method=method, substeps=substeps)
            gap = moved[:, 1:] - rotated(predicted[:, 1:], batch["theta"], matrices)[0]
            value = value + weight * gap.pow(2).mean()
        if training and hasattr(model, "extra_loss"):  # a prior: not in the validation loss
            value = value + model.extra_loss(batch)
        return value

    return loss
