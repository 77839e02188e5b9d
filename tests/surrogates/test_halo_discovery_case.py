"""The halo case of symmetry discovery, on real Rockstar catalogs (../shared/real_halos): Bullock's spin
from J, Mvir and Rvir, beside two vectors it does not depend on (surrogates.declared.halo_discovery_case;
the full-size run and its numbers are in docs/RESULTS.md)."""

from __future__ import annotations

import numpy as np
import pytest
from support import REAL_HALOS

from sims.halos.catalog import HaloCatalogError
from surrogates.declared.discovery_cases import training_config
from surrogates.declared.halo_discovery_case import bullock_spin, main, run_case, spin_case, write_case

pytestmark = pytest.mark.skipif(not REAL_HALOS.is_dir(), reason="shared real halo files absent")

OUT_163 = REAL_HALOS / "halodatamanager_out_list" / "out_163.list"


def test_the_inputs_in_physical_units_give_rockstars_own_spin():
    """Rockstar computed spin_bullock; recomputing it from J, M, R and G after the unit conversions (J's
    (Msun/h)(Mpc/h) km/s, Mvir's Msun/h, Rvir's comoving kpc/h) agrees to the file's printed digits."""
    values, spin = spin_case([OUT_163], 20, 1e9)
    assert spin.size > 3000 and (spin > 0).all()
    ratio = bullock_spin(values) / spin
    assert np.median(np.abs(ratio - 1)) < 2e-4 and np.abs(ratio - 1).max() < 5e-3


def test_discovery_finds_every_rotation_of_the_three_vectors():
    """A tiny run: one catalog, 150 epochs. Three generators, every principal angle to so(3) below 5 degrees."""
    result = run_case([OUT_163], (20, 40), training_config(150), (64, 64))
    assert result["halos"] > 1000
    assert result["passed"], (result["checks"], result["linear"]["relative_residuals"][:5], result["model_error"])


def test_written_files_are_what_eqs_fit_reads(tmp_path):
    from flows.declared.flow import checked_input

    write_case([OUT_163], tmp_path, 20, 40)
    _, canonical, _, _ = checked_input(str(tmp_path / "data.nc"), str(tmp_path / "declaration.json"), None, None, False)
    values, spin = spin_case([OUT_163], 20, 40)
    np.testing.assert_array_equal(np.asarray(canonical["J"]), values["J"])
    np.testing.assert_array_equal(np.asarray(canonical["spin"]), spin)


def test_a_catalog_without_the_columns_is_named_with_them(tmp_path, capsys):
    lines = OUT_163.read_text().splitlines()
    header = lines[0].replace(" A[x] A[y] A[z]", " B[x] B[y] B[z]")
    bad = tmp_path / "out_0.list"
    bad.write_text("\n".join([header, *lines[1:50]]) + "\n")
    with pytest.raises(HaloCatalogError, match=r"out_0\.list: missing column\(s\) \['A\[x\]', 'A\[y\]', 'A\[z\]'\]"):
        spin_case([bad])
    with pytest.raises(SystemExit) as exit_info:
        main([str(bad), "--out", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2 and "missing column(s)" in capsys.readouterr().err
