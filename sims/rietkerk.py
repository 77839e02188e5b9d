"""The Rietkerk vegetation model (ANCHORS section 3): its declared quantities.

Litres of water are an independent base unit: the model never converts water volumes into
cubic metres, so the 16 inputs span four base units (l, g, d, m) and give 12 Pi groups.
"""

from __future__ import annotations

from sims.declaration import Kind, Quantity, Role, SystemDeclaration, register_system

P, S = Role.PARAMETER, Role.STATE

DECLARATION = register_system(
    SystemDeclaration(
        name="rietkerk",
        independent_units=("l",),
        raw_kind="rietkerk.raw",
        description="surface water u, soil water w and biomass v on a periodic square patch",
        quantities=(
            Quantity("R", "l d^-1 m^-2", role=P, description="rainfall"),
            Quantity("alpha", "d^-1", role=P, description="infiltration rate"),
            Quantity("k2", "g m^-2", role=P, description="saturation constant of infiltration"),
            Quantity("W0", "1", role=P, description="bare-soil infiltration fraction"),
            Quantity("Du", "m^2 d^-1", role=P, description="surface water diffusion"),
            Quantity("gm", "l g^-1 d^-1", role=P, description="water uptake"),
            Quantity("k1", "l m^-2", role=P, description="uptake half-saturation"),
            Quantity("dw", "d^-1", role=P, description="soil water loss"),
            Quantity("Dw", "m^2 d^-1", role=P, description="soil water diffusion"),
            Quantity("c", "g l^-1", role=P, description="water-to-biomass conversion"),
            Quantity("dv", "d^-1", role=P, description="vegetation loss"),
            Quantity("Dv", "m^2 d^-1", role=P, description="vegetation diffusion"),
            Quantity("T", "d", role=P, description="run length"),
            Quantity("dt", "d", role=P, description="time step"),
            Quantity("L", "m", role=P, description="patch side"),
            Quantity("dl", "m", role=P, description="grid step"),
            Quantity("u", "l m^-2", Kind.FIELD, S, "surface water"),
            Quantity("w", "l m^-2", Kind.FIELD, S, "soil water"),
            Quantity("v", "g m^-2", Kind.FIELD, S, "biomass"),
        ),
    )
)

PARAMETERS = tuple(q.name for q in DECLARATION.select(roles=(Role.PARAMETER,)))
