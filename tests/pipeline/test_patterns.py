"""Pattern statistics of periodic 2D fields: torus labelling, spectra, regimes, units and batches."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from pipeline.rietkerk.patterns import (
    REGIMES,
    classify_regime,
    count_patches,
    decode_regimes,
    dominant_wavelength,
    encode_regimes,
    pattern_statistics,
    periodic_label,
    radial_power_spectrum,
    regime_attrs,
)

N = 64
Y, X = np.mgrid[0:N, 0:N].astype(float)


def torus_components(mask: np.ndarray) -> list[set[tuple[int, int]]]:
    """Reference: breadth-first flood fill with wrapped 4-neighbours."""
    ny, nx = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    components = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        queue, cells = deque([start]), set()
        while queue:
            i, j = queue.popleft()
            cells.add((int(i), int(j)))
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                nb = ((i + di) % ny, (j + dj) % nx)
                if mask[nb] and not seen[nb]:
                    seen[nb] = True
                    queue.append(nb)
        components.append(cells)
    return components


def spots_field(amplitude: float = 30.0) -> np.ndarray:
    """A centred-rectangular (hexagon-like) lattice of 64 periodic Gaussian spots on the 64 x 64 grid."""
    field = np.zeros((N, N))
    for row, cy in enumerate(range(0, N, 8)):
        for cx in range(4 * (row % 2), N, 8):
            dy = (Y - cy + N / 2) % N - N / 2
            dx = (X - cx + N / 2) % N - N / 2
            field += np.exp(-(dx**2 + dy**2) / (2 * 1.5**2))
    return amplitude * field


def maze_field(seed: int) -> np.ndarray:
    """Vegetation where a sum of three random sinusoids of wavenumber ~4 (cycles per side) is positive."""
    rng = np.random.default_rng(seed)
    total = np.zeros((N, N))
    for theta in rng.uniform(0, np.pi, 3):
        kx, ky = np.rint(4 * np.cos(theta)), np.rint(4 * np.sin(theta))
        total += np.cos(2 * np.pi * (kx * X + ky * Y) / N + rng.uniform(0, 2 * np.pi))
    return 40.0 * (total > 0)


# --- periodic labelling ---------------------------------------------------------------------------


def test_stripe_wrapping_around_the_edge_is_one_component():
    mask = np.zeros((10, 12), dtype=bool)
    mask[:, [10, 11, 0, 1]] = True  # a vertical stripe crossing the left/right edge
    labels, n = periodic_label(mask)
    assert n == 1 and set(np.unique(labels)) == {0, 1}
    mask[[9, 0], :] = True  # now a cross: still one component
    assert periodic_label(mask)[1] == 1
    assert count_patches(np.roll(mask, (3, 5), axis=(0, 1))) == 1


def test_four_corner_quarters_are_one_blob():
    mask = np.zeros((9, 9), dtype=bool)
    mask[:2, :2] = mask[:2, -2:] = mask[-2:, :2] = mask[-2:, -2:] = True
    assert periodic_label(mask)[1] == 1
    assert count_patches(mask) == 1


def test_checkerboard_of_isolated_cells():
    mask = (X[:8, :8] + Y[:8, :8]) % 2 == 0
    assert count_patches(mask) == 32  # 4-connectivity: diagonal neighbours do not join
    sparse = np.zeros((8, 8), dtype=bool)
    sparse[::2, ::2] = True
    assert count_patches(sparse) == 16
    assert count_patches(np.zeros((5, 5), dtype=bool)) == 0
    assert count_patches(np.ones((5, 7), dtype=bool)) == 1


def test_periodic_label_matches_flood_fill_on_random_masks():
    rng = np.random.default_rng(7)
    for density in np.linspace(0.2, 0.8, 20):
        mask = rng.random((12, 12)) < density
        labels, n = periodic_label(mask)
        reference = torus_components(mask)
        assert n == len(reference)
        assert set(np.unique(labels[mask])) == set(range(1, n + 1)) and (labels[~mask] == 0).all()
        # Same partition: each reference component carries one label, and distinct ones differ.
        ids = [{int(labels[c]) for c in cells} for cells in reference]
        assert all(len(i) == 1 for i in ids) and len(set().union(*ids)) == n


# --- spectrum -------------------------------------------------------------------------------------


@pytest.mark.parametrize("wavelength", [8.0, 16.0, 32.0, 64.0, 128.0])
def test_dominant_wavelength_is_exact_and_invariant(wavelength):
    dl = 2.0  # grid of 64 cells, L = 128 m
    field = 3.0 + np.sin(2 * np.pi * X * dl / wavelength) + np.cos(2 * np.pi * Y * dl / wavelength)
    assert dominant_wavelength(field, dl) == pytest.approx(wavelength, rel=1e-12)
    assert dominant_wavelength(np.roll(field, (5, 17), axis=(0, 1)), dl) == pytest.approx(wavelength, rel=1e-12)
    assert dominant_wavelength(field.T, dl) == pytest.approx(wavelength, rel=1e-12)
    assert dominant_wavelength(field, dl * 100) == pytest.approx(wavelength * 100, rel=1e-12)  # m -> cm


def test_anisotropic_field_survives_rotation_and_spectrum_sums_to_variance():
    field = np.sin(2 * np.pi * 4 * X / N) + 0.3 * np.cos(2 * np.pi * 9 * Y / N + 0.4)
    expected = N * 2.0 / 4
    for variant in (field, np.rot90(field), np.roll(field, 11, axis=1)):
        assert dominant_wavelength(variant, 2.0) == pytest.approx(expected, rel=1e-12)
    wavelength, power = radial_power_spectrum(field, 2.0)
    assert wavelength[0] == pytest.approx(128.0) and wavelength.shape == power.shape
    k = np.fft.fftfreq(N, d=1.0 / N)
    counts = np.bincount(np.rint(np.hypot(k[:, None], k[None, :])).astype(int).ravel())[1:]
    assert np.sum(power * counts) == pytest.approx(field.var(), rel=1e-10)


def test_uniform_fields_have_no_wavelength():
    assert np.isnan(dominant_wavelength(np.full((16, 16), 2.5), 1.0))
    assert np.isnan(dominant_wavelength(np.zeros((16, 16)), 1.0))
    batch = np.stack([np.zeros((16, 16)), np.sin(2 * np.pi * X[:16, :16] / 8)])
    np.testing.assert_allclose(dominant_wavelength(batch, 1.0), [np.nan, 8.0])


# --- regimes --------------------------------------------------------------------------------------


def test_regimes_of_synthetic_patterns():
    spots = spots_field()
    stats = pattern_statistics(spots, 2.0, cover_threshold=1.0)
    assert stats["regime"] == "spots" and stats["vegetated_patches"] == 64 and stats["bare_patches"] == 1
    gaps = 25.0 * (1.0 - spots / spots.max())
    stats = pattern_statistics(gaps, 2.0, cover_threshold=1.0)
    assert stats["regime"] == "gaps" and stats["vegetated_patches"] == 1 and stats["bare_patches"] == 64
    stripes = 20.0 * (1.0 + np.sin(2 * np.pi * 4 * X / N))
    assert classify_regime(stripes, 1.0) == "labyrinth" and count_patches(stripes > 20.0) == 4
    wavy = 20.0 * (1.0 + np.sin(2 * np.pi * (3 * X + 2 * np.sin(2 * np.pi * 2 * Y / N)) / N))
    assert classify_regime(wavy, 1.0) == "labyrinth"
    for seed in range(5):
        assert classify_regime(maze_field(seed), 1.0) == "labyrinth", seed
    rng = np.random.default_rng(0)
    assert classify_regime(np.full((N, N), 50.0), 1.0) == "uniform"
    assert classify_regime(50.0 + 1e-4 * rng.standard_normal((N, N)), 1.0) == "uniform"
    assert classify_regime(np.zeros((N, N)), 1.0) == "bare"
    assert classify_regime(0.5 * spots / spots.max(), 1.0) == "bare"  # structure, but all below cover


def test_uniform_field_has_no_patches_and_zero_variation():
    stats = pattern_statistics(np.full((N, N), 7.0), 2.0, cover_threshold=1.0)
    assert stats["vegetated_patches"] == 0 and stats["bare_patches"] == 0
    assert stats["coefficient_of_variation"] == 0.0 and np.isnan(stats["dominant_wavelength"])
    assert stats["cover_fraction"] == 1.0 and stats["mean"] == 7.0


def test_regime_codes_round_trip():
    names = np.array([["bare", "spots"], ["gaps", "uniform"]])
    codes = encode_regimes(names)
    assert codes.dtype == np.int8 and codes.tolist() == [[0, 1], [3, 4]]
    np.testing.assert_array_equal(decode_regimes(codes), names)
    attrs = regime_attrs()
    assert attrs["flag_meanings"].split() == list(REGIMES) and attrs["flag_values"].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="unknown regime"):
        encode_regimes(["forest"])
    with pytest.raises(ValueError, match="codes"):
        decode_regimes(np.array([5]))


# --- units and batches ----------------------------------------------------------------------------


def test_statistics_are_invariant_under_a_change_of_biomass_units():
    fields = np.stack([spots_field(), maze_field(1), 25.0 * (1.0 - spots_field() / spots_field().max())])
    grams = pattern_statistics(fields, 2.0, cover_threshold=5.0)  # g m^-2
    kilograms = pattern_statistics(fields * 1e-3, 2.0, cover_threshold=5.0 * 1e-3)  # kg m^-2
    for key in ("cover_fraction", "vegetated_patches", "bare_patches", "regime", "dominant_wavelength"):
        np.testing.assert_array_equal(kilograms[key], grams[key], err_msg=key)
    np.testing.assert_allclose(kilograms["mean"], grams["mean"] * 1e-3, rtol=1e-12)
    np.testing.assert_allclose(kilograms["coefficient_of_variation"], grams["coefficient_of_variation"], rtol=1e-12)
    assert 0.0 < grams["cover_fraction"][0] < 0.5 < grams["cover_fraction"][2] < 1.0


def test_batch_matches_single_calls():
    fields = np.stack([spots_field(), maze_field(2), np.full((N, N), 3.0)])
    batch = pattern_statistics(fields, 2.0, cover_threshold=1.0)
    for key, values in batch.items():
        assert values.shape == (3,), key
        for i, field in enumerate(fields):
            np.testing.assert_array_equal(values[i], pattern_statistics(field, 2.0, cover_threshold=1.0)[key])
    np.testing.assert_array_equal(count_patches(fields > 10.0), [count_patches(f > 10.0) for f in fields])
    np.testing.assert_array_equal(classify_regime(fields[None], 1.0), [batch["regime"]])
    wavelength, power = radial_power_spectrum(fields, 2.0)
    assert power.shape == (3, wavelength.size)
    np.testing.assert_allclose(power[1], radial_power_spectrum(fields[1], 2.0)[1], rtol=1e-12)


# --- bad input ------------------------------------------------------------------------------------


def test_bad_input_is_named():
    field = spots_field()
    with pytest.raises(ValueError, match="v: expected finite"):
        pattern_statistics(np.where(X > 60, np.nan, field), 2.0, 1.0)
    with pytest.raises(ValueError, match=r"field: expected a field of shape \(ny, nx\)"):
        dominant_wavelength(np.ones(16), 1.0)
    with pytest.raises(ValueError, match="mask: expected"):
        periodic_label(np.ones((2, 3, 3), dtype=bool))
    for dl in (0.0, -2.0, np.inf):
        with pytest.raises(ValueError, match="dl: expected a positive"):
            pattern_statistics(field, dl, 1.0)
    with pytest.raises(ValueError, match=r"square grid, got shape \(16, 32\)"):
        radial_power_spectrum(np.ones((16, 32)), 1.0)
    with pytest.raises(ValueError, match="cover_threshold"):
        classify_regime(field, np.nan)
