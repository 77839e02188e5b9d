"""The springy double pendulum in 3D (ANCHORS sections 1 and 2): its declared quantities.

Two masses on springs hang from a pivot at the origin under gravity g; the state is positions and
momenta of both masses. Units are those of the units-equivariance protocol (kg, m, s).
"""

from __future__ import annotations

from sims.declaration import Kind, Quantity, Role, SystemDeclaration, register_system

P, S, T = Role.PARAMETER, Role.STATE, Role.TARGET

DECLARATION = register_system(
    SystemDeclaration(
        name="spring_pendulum",
        symmetry="O(3)",
        raw_kind="spring_pendulum.raw",
        description="springy double pendulum with a fixed pivot at the origin",
        quantities=(
            Quantity("m1", "kg", role=P, description="mass of the first bob"),
            Quantity("m2", "kg", role=P, description="mass of the second bob"),
            Quantity("k1", "kg s^-2", role=P, description="stiffness of the pivot spring"),
            Quantity("k2", "kg s^-2", role=P, description="stiffness of the spring between the bobs"),
            Quantity("l1", "m", role=P, description="rest length of the pivot spring"),
            Quantity("l2", "m", role=P, description="rest length of the spring between the bobs"),
            Quantity("g", "m s^-2", Kind.VECTOR, P, "gravitational acceleration"),
            Quantity("q1", "m", Kind.VECTOR, S, "position of the first bob (pivot at the origin)"),
            Quantity("q2", "m", Kind.VECTOR, S, "position of the second bob"),
            Quantity("p1", "kg m s^-1", Kind.VECTOR, S, "momentum of the first bob"),
            Quantity("p2", "kg m s^-1", Kind.VECTOR, S, "momentum of the second bob"),
            Quantity("H", "kg m^2 s^-2", role=T, description="total energy (the Hamiltonian)"),
        ),
    )
)
