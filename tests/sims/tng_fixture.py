"""A tiny but faithful IllustrisTNG layout (dark run, hydro twin, offsets, matching) and its truth.

``write_tng_fixture(root)`` writes, with the real file names, field names, dtypes and header attributes,

    root/dark/output/groups_SSS/fof_subhalo_tab_SSS.N.hdf5   Group/ and Subhalo/ split over n_files
    root/dark/output/snapdir_SSS/snap_SSS.N.hdf5             PartType1 sorted by group, split over n_files
    root/dark/postprocessing/offsets/offsets_SSS.hdf5        Group/SnapByType ... (with_offsets)
    root/hydro/output/groups_SSS/...                         the hydro twin's catalog (with_matching)
    root/hydro/postprocessing/subhalo_matching_to_dark_SSS.hdf5

and returns the truth (raw values as written and their physical counterparts) for assertions.
The groups play the roles in :data:`ROLES`, cycling: group 0 straddles the periodic box edge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

H = 0.6774
BOX = 1000.0  # ckpc/h: a tiny box, so that an edge-straddling group is easy to place
MASS_DM = 0.0005  # 1e10 Msun/h per dark-matter particle
N_FUZZ = 30  # particles in no group, stored after all groups as in TNG
ROLES = ("edge", "normal", "unmatched", "no_central", "low_mass", "no_particles", "no_stars", "normal")
# the 'normal' group's exactly representable raw values, for hand-computed unit checks
NORMAL = {
    "Group_M_Mean200": 25.0,
    "Group_R_Mean200": 40.0,
    "GroupPos": (300.0, 400.0, 500.0),
    "GroupVel": (100.0, -50.0, 25.0),
    "SubhaloSpin": (30.0, 40.0, 0.0),
    "SubhaloVelDisp": 80.0,
}


def _roles(n_groups: int) -> list[str]:
    return [ROLES[i % len(ROLES)] for i in range(n_groups)]


def _group_header(handle: h5py.File, n_groups: int, n_subs: int, n_files: int, this: tuple[int, int], z: float) -> None:
    header = handle.create_group("Header")
    attrs = {
        "Ngroups_ThisFile": np.int32(this[0]),
        "Ngroups_Total": np.int32(n_groups),
        "Nsubgroups_ThisFile": np.int32(this[1]),
        "Nsubgroups_Total": np.int32(n_subs),
        "Nids_ThisFile": np.int32(0),
        "Nids_Total": np.int32(0),
        "NumFiles": np.int32(n_files),
        "BoxSize": np.float64(BOX),
        "HubbleParam": np.float64(H),
        "Omega0": np.float64(0.3089),
        "OmegaLambda": np.float64(0.6911),
        "Redshift": np.float64(z),
        "Time": np.float64(1.0 / (1.0 + z)),
        "FlagDoubleprecision": np.int32(0),
    }
    for name, value in attrs.items():
        header.attrs[name] = value


def _write_catalog(folder: Path, snapshot: int, n_files: int, z: float, group: dict, subhalo: dict) -> list[Path]:
    """Group and Subhalo tables split over ``n_files`` files; the two splits fall at different places."""
    folder.mkdir(parents=True, exist_ok=True)
    n_groups = len(group["GroupFirstSub"])
    n_subs = len(subhalo["SubhaloGrNr"])
    g_parts = np.array_split(np.arange(n_groups), n_files)
    # shift the subhalo split by one so a group's subhalos may sit in another file than the group
    s_bounds = np.clip(np.array([len(p) for p in g_parts]).cumsum() - 1, 0, n_subs)
    s_parts = np.split(np.arange(n_subs), s_bounds[:-1])
    paths = []
    for i in range(n_files):
        path = folder / f"fof_subhalo_tab_{snapshot:03d}.{i}.hdf5"
        with h5py.File(path, "w") as handle:
            _group_header(handle, n_groups, n_subs, n_files, (len(g_parts[i]), len(s_parts[i])), z)
            for table, fields, rows in (("Group", group, g_parts[i]), ("Subhalo", subhalo, s_parts[i])):
                out = handle.create_group(table)
                if len(rows):  # TNG files without rows of a table carry an empty group
                    for name, values in fields.items():
                        out.create_dataset(name, data=values[rows])
        paths.append(path)
    return paths


def write_tng_fixture(
    root: str | Path,
    snapshot: int = 99,
    n_groups: int = 6,
    n_files: int = 2,
    seed: int = 0,
    with_offsets: bool = True,
    with_matching: bool = True,
    redshift: float = 1.0,
) -> dict[str, Any]:
    """Write the layout under ``root`` and return its truth.

    Raw values are as written (TNG units: ckpc/h, 1e10 Msun/h, (km/s)/a for GroupVel, km sqrt(a)/s for
    particle velocities); ``physical`` holds per group ``M200m`` (Msun), ``R200m`` (kpc), ``position``
    (kpc), ``velocity`` (km/s), the unwrapped ``particle_position`` (kpc) and ``particle_velocity``
    (km/s) of all FoF particles and the ``inside`` (within R200m) mask; ``targets`` the expected
    log_mstar, log_ssfr, log_rhalf, log_mbh of each dark group that has a matched hydro central.
    ``redshift`` defaults to 1 (a = 1/2) so that every a-conversion is exercised.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    a = 1.0 / (1.0 + redshift)
    roles = _roles(n_groups)
    n_part = np.array([max(150 - 20 * i, 20) for i in range(n_groups)], dtype=np.int64)

    mass = np.zeros(n_groups, np.float32)
    radius = np.zeros(n_groups, np.float32)
    centre = np.zeros((n_groups, 3), np.float32)
    gvel = np.zeros((n_groups, 3), np.float32)
    nsubs = np.zeros(n_groups, np.int32)
    unwrapped, pvel_raw, inside = [], [], []
    for i, role in enumerate(roles):
        mass[i] = 10.0 ** rng.uniform(0.0, 1.5) if role != "low_mass" else 0.01  # 0.01: log10 M = 8 (Msun/h)
        radius[i] = rng.uniform(40.0, 70.0) if role != "no_particles" else 10.0
        centre[i] = rng.uniform(200.0, 800.0, 3)
        gvel[i] = rng.normal(0.0, 150.0, 3)
        if role == "edge":  # straddles the box faces in x and z
            centre[i] = (BOX - 12.0, 500.0, 8.0)
        if role == "normal" and i == 1:
            mass[i], radius[i] = NORMAL["Group_M_Mean200"], NORMAL["Group_R_Mean200"]
            centre[i], gvel[i] = NORMAL["GroupPos"], NORMAL["GroupVel"]
        nsubs[i] = 0 if role == "no_central" else 1 + (i % 2)
        direction = rng.normal(size=(n_part[i], 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        scale = rng.uniform(1.5, 2.0, n_part[i]) if role == "no_particles" else rng.uniform(0.02, 1.4, n_part[i])
        d = direction * (scale * float(radius[i]))[:, None]
        unwrapped.append(centre[i].astype(np.float64) + d)
        inside.append(scale <= 1.0)
        peculiar = gvel[i] / a + rng.normal(0.0, 80.0, (n_part[i], 3))
        pvel_raw.append((peculiar / np.sqrt(a)).astype(np.float32))
    fuzz = rng.uniform(0.0, BOX, (N_FUZZ, 3))
    coords = np.concatenate([*unwrapped, fuzz]) % BOX  # the snapshot stores positions inside the box
    vels = np.concatenate([*pvel_raw, rng.normal(0.0, 100.0, (N_FUZZ, 3)).astype(np.float32)])
    offset = np.concatenate([[0], np.cumsum(n_part)[:-1]])

    # dark subhalos: a central (and for odd groups a satellite) per group with a central
    first = np.full(n_groups, -1, np.int32)
    sub_group, sub_len = [], []
    for i in range(n_groups):
        if nsubs[i]:
            first[i] = len(sub_group)
        for k in range(nsubs[i]):
            sub_group.append(i)
            sub_len.append(int(n_part[i] * (0.7 if k == 0 else 0.15)))
    sub_group = np.array(sub_group, np.int32)
    n_subs = len(sub_group)
    spin = rng.normal(0.0, 300.0, (n_subs, 3)).astype(np.float32)
    veldisp = rng.uniform(30.0, 150.0, n_subs).astype(np.float32)
    if roles[1:2] == ["normal"]:
        spin[first[1]], veldisp[first[1]] = NORMAL["SubhaloSpin"], NORMAL["SubhaloVelDisp"]
    sub_len = np.array(sub_len, np.int32)
    sub_offset = np.zeros(n_subs, np.int64)
    for s in range(n_subs):
        g = sub_group[s]
        sub_offset[s] = offset[g] + (0 if s == first[g] else sub_len[first[g]])
    len_type = np.zeros((n_groups, 6), np.int32)
    len_type[:, 1] = n_part
    mass_type = np.zeros((n_groups, 6), np.float32)
    mass_type[:, 1] = n_part * MASS_DM
    sub_len_type = np.zeros((n_subs, 6), np.int32)
    sub_len_type[:, 1] = sub_len
    sub_mass_type = np.zeros((n_subs, 6), np.float32)
    sub_mass_type[:, 1] = sub_len * MASS_DM
    group = {
        "Group_M_Mean200": mass,
        "Group_R_Mean200": radius,
        "Group_M_Crit200": (mass * 0.8).astype(np.float32),
        "Group_R_Crit200": (radius * 0.7).astype(np.float32),
        "GroupPos": centre,
        "GroupVel": gvel,
        "GroupCM": centre,
        "GroupFirstSub": first,
        "GroupNsubs": nsubs,
        "GroupLen": n_part.astype(np.int32),
        "GroupLenType": len_type,
        "GroupMass": (n_part * MASS_DM).astype(np.float32),
        "GroupMassType": mass_type,
    }
    subhalo = {
        "SubhaloGrNr": sub_group,
        "SubhaloLen": sub_len,
        "SubhaloLenType": sub_len_type,
        "SubhaloMass": (sub_len * MASS_DM).astype(np.float32),
        "SubhaloMassType": sub_mass_type,
        "SubhaloPos": centre[sub_group],
        "SubhaloVel": (gvel[sub_group] / a).astype(np.float32),
        "SubhaloSpin": spin,
        "SubhaloVelDisp": veldisp,
        "SubhaloVmax": (veldisp * 1.6).astype(np.float32),
        "SubhaloHalfmassRadType": np.zeros((n_subs, 6), np.float32) + 5.0,
    }
    dark = root / "dark" / "output"
    group_files = _write_catalog(dark / f"groups_{snapshot:03d}", snapshot, n_files, redshift, group, subhalo)

    snap_dir = dark / f"snapdir_{snapshot:03d}"
    snap_dir.mkdir(parents=True, exist_ok=True)
    n_total = len(coords)
    snap_files = []
    for i, rows in enumerate(np.array_split(np.arange(n_total), n_files)):  # a group straddles the files
        path = snap_dir / f"snap_{snapshot:03d}.{i}.hdf5"
        with h5py.File(path, "w") as handle:
            header = handle.create_group("Header")
            this = np.zeros(6, np.int32)
            this[1] = len(rows)
            total = np.zeros(6, np.uint32)
            total[1] = n_total
            attrs = {
                "NumPart_ThisFile": this,
                "NumPart_Total": total,
                "NumPart_Total_HighWord": np.zeros(6, np.uint32),
                "MassTable": np.array([0.0, MASS_DM, 0.0, 0.0, 0.0, 0.0]),
                "NumFilesPerSnapshot": np.int32(n_files),
                "BoxSize": np.float64(BOX),
                "HubbleParam": np.float64(H),
                "Omega0": np.float64(0.3089),
                "OmegaLambda": np.float64(0.6911),
                "Redshift": np.float64(redshift),
                "Time": np.float64(a),
            }
            for name, value in attrs.items():
                header.attrs[name] = value
            part = handle.create_group("PartType1")
            part.create_dataset("Coordinates", data=coords[rows])
            part.create_dataset("Velocities", data=vels[rows])
            part.create_dataset("ParticleIDs", data=(rows + 1).astype(np.uint64))
        snap_files.append(path)

    offsets_path = None
    if with_offsets:
        offsets_path = root / "dark" / "postprocessing" / "offsets" / f"offsets_{snapshot:03d}.hdf5"
        offsets_path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(offsets_path, "w") as handle:
            snap_by_type = np.zeros((n_groups, 6), np.int64)
            snap_by_type[:, 1] = offset
            sub_by_type = np.zeros((n_subs, 6), np.int64)
            sub_by_type[:, 1] = sub_offset
            handle.create_dataset("Group/SnapByType", data=snap_by_type)
            handle.create_dataset("Subhalo/SnapByType", data=sub_by_type)
            g_first = np.array([p[0] for p in np.array_split(np.arange(n_groups), n_files)], np.int64)
            handle.create_dataset("FileOffsets/Group", data=g_first)
            file_snap = np.zeros((n_files, 6), np.int64)
            file_snap[:, 1] = [r[0] for r in np.array_split(np.arange(n_total), n_files)]
            handle.create_dataset("FileOffsets/SnapByType", data=file_snap)

    physical = {
        "M200m": mass.astype(np.float64) * 1e10 / H,
        "R200m": radius.astype(np.float64) * a / H,
        "position": centre.astype(np.float64) * a / H,
        "velocity": gvel.astype(np.float64) / a,
        "particle_position": [u * a / H for u in unwrapped],
        "particle_velocity": [v.astype(np.float64) * np.sqrt(a) for v in pvel_raw],
        "inside": inside,
        "particle_mass": MASS_DM * 1e10 / H,
    }
    truth: dict[str, Any] = {
        "base_path": dark,
        "hydro_base_path": None,
        "matching": None,
        "offsets": offsets_path,
        "group_files": group_files,
        "snap_files": snap_files,
        "snapshot": snapshot,
        "redshift": redshift,
        "a": a,
        "h": H,
        "box_ckpc_h": BOX,
        "roles": roles,
        "group": group,
        "subhalo": subhalo,
        "offset": offset,
        "n_part": n_part,
        "coordinates": coords,
        "velocities": vels,
        "physical": physical,
        "targets": {},
    }
    if with_matching:
        truth |= _write_hydro(root, snapshot, n_files, redshift, roles, first, rng)
    return truth


def _write_hydro(
    root: Path, snapshot: int, n_files: int, z: float, roles: list[str], dark_first: np.ndarray, rng
) -> dict[str, Any]:
    """The hydro twin (its groups in reverse order) and the hydro -> dark subhalo matching file."""
    a = 1.0 / (1.0 + z)
    n_groups = len(roles)
    order = np.arange(n_groups)[::-1]  # hydro group j is the twin of dark group order[j]
    first, sub_group, dark_of = np.full(n_groups, -1, np.int32), [], []
    for j, d in enumerate(order):
        first[j] = len(sub_group)
        sub_group.append(j)  # the hydro central
        dark_of.append(-1 if roles[d] in ("unmatched", "no_central") else int(dark_first[d]))
        if roles[d] == "unmatched":  # a hydro satellite matched to the dark central must not count
            sub_group.append(j)
            dark_of.append(int(dark_first[d]))
    n_subs = len(sub_group)
    sub_group = np.array(sub_group, np.int32)
    mass_type = np.zeros((n_subs, 6), np.float32)
    mass_type[:, 4] = 10.0 ** rng.uniform(-2.0, 0.0, n_subs)
    sfr = (10.0 ** rng.uniform(-1.0, 1.0, n_subs)).astype(np.float32)
    rhalf = np.zeros((n_subs, 6), np.float32)
    rhalf[:, 4] = rng.uniform(2.0, 10.0, n_subs)
    bh = (10.0 ** rng.uniform(-4.0, -2.0, n_subs)).astype(np.float32)
    for j, d in enumerate(order):
        c = first[j]
        if roles[d] == "edge":
            sfr[c] = 0.0  # quenched: log_ssfr takes the floor
        if roles[d] == "normal":
            bh[c] = 0.0  # no black hole: log_mbh takes the floor
        if roles[d] == "no_stars":
            mass_type[c, 4] = 0.0
    group = {
        "GroupFirstSub": first,
        "GroupNsubs": np.bincount(sub_group, minlength=n_groups).astype(np.int32),
        "Group_M_Mean200": np.ones(n_groups, np.float32),
        "Group_R_Mean200": np.ones(n_groups, np.float32),
        "GroupPos": np.zeros((n_groups, 3), np.float32),
        "GroupLenType": np.ones((n_groups, 6), np.int32),
    }
    subhalo = {
        "SubhaloGrNr": sub_group,
        "SubhaloMassType": mass_type,
        "SubhaloSFR": sfr,
        "SubhaloHalfmassRadType": rhalf,
        "SubhaloBHMass": bh,
        "SubhaloPos": np.zeros((n_subs, 3), np.float32),
    }
    hydro = root / "hydro" / "output"
    files = _write_catalog(hydro / f"groups_{snapshot:03d}", snapshot, n_files, z, group, subhalo)
    matching = root / "hydro" / "postprocessing" / f"subhalo_matching_to_dark_{snapshot:03d}.hdf5"
    matching.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(matching, "w") as handle:
        handle.create_dataset("SubhaloIndexDark_LHaloTree", data=np.array(dark_of, np.int32))
        handle.create_dataset("SubhaloIndexDark_SubLink", data=np.array(dark_of, np.int32))
    targets = {}
    for j, d in enumerate(order):
        c = first[j]
        if dark_of[c] < 0 or mass_type[c, 4] <= 0:
            continue
        mstar = float(mass_type[c, 4]) * 1e10 / H
        ssfr = np.log10(float(sfr[c]) / mstar) if sfr[c] > 0 else -13.0
        targets[int(d)] = {
            "log_mstar": np.log10(mstar),
            "log_ssfr": max(ssfr, -13.0),
            "log_rhalf": np.log10(float(rhalf[c, 4]) * a / H),
            "log_mbh": np.log10(float(bh[c]) * 1e10 / H) if bh[c] > 0 else 5.0,
        }
    return {
        "hydro_base_path": hydro,
        "matching": matching,
        "hydro_group_files": files,
        "hydro_order": order,
        "targets": targets,
    }
