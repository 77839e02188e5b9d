"""The pendulum's ground-truth integrator compiled for the CPU: one fused numba kernel per batch.

The same Dormand-Prince 5(4) as :func:`sims.integrate.integrate_adaptive` (tableau, error norm,
safety and factor limits, first-same-as-last, output times hit exactly), but every system takes its
own steps, as a loop of scipy's ``solve_ivp`` would: one stiff system no longer sets the step of the
whole batch, and the stages run as scalar code without a torch call per operation. Systems are
spread over the cores with ``numba.prange``.
"""

from __future__ import annotations

import contextlib
import sys
import threading

import numba
import numpy as np

from sims.integrate import DOPRI5

# the tableau as compile-time constants (numba freezes module-level floats)
_A = DOPRI5.a
A21 = _A[1][0]
A31, A32 = _A[2]
A41, A42, A43 = _A[3]
A51, A52, A53, A54 = _A[4]
A61, A62, A63, A64, A65 = _A[5]
B1, B2, B3, B4, B5, B6, B7 = DOPRI5.b
E1, E2, E3, E4, E5, E6, E7 = DOPRI5.b_error
assert B2 == 0.0 and B7 == 0.0 and E2 == 0.0, "the kernel skips the zero weights of Dormand-Prince"

SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 5.0  # as integrate_adaptive
EXPONENT = -1.0 / DOPRI5.order

# per-system outcome codes of the kernel
OK, NON_FINITE, UNDERFLOW, TOO_MANY_STEPS = 0, 1, 2, 3

CHUNK = 16  # systems a thread takes at a time

# columns of the parameter array the kernel reads
PARAMETER_COLUMNS = ("m1", "m2", "k1", "k2", "l1", "l2", "gx", "gy", "gz")

# the workqueue threading layer (numba's fallback without TBB or OpenMP) aborts the process when two
# threads launch parallel kernels at once
_LAUNCH = threading.Lock()

# error_model="numpy": a division by zero gives inf or NaN (reported as a non-finite state) instead
# of raising ZeroDivisionError from inside the kernel
_JIT = dict(cache=True, error_model="numpy", nogil=True)


@numba.njit(**_JIT)
def _field(z, p, c2, out):  # pragma: no cover - compiled
    """Hamilton's equations of the spring double pendulum (sims.pendulum.system.vector_field) into ``out``."""
    m1, m2, k1, k2, l1, l2 = p[0], p[1], p[2], p[3], p[4], p[5]
    d0, d1, d2 = z[0] - z[3], z[1] - z[4], z[2] - z[5]
    r1 = np.sqrt(z[0] * z[0] + z[1] * z[1] + z[2] * z[2])
    r12 = np.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
    s1 = k1 * (r1 - l1) / r1
    s2 = 2.0 * c2 * k2 * (r12 - l2) / r12
    for j in range(3):
        d = z[j] - z[3 + j]
        out[j] = z[6 + j] / m1
        out[3 + j] = z[9 + j] / m2
        out[6 + j] = -s1 * z[j] - s2 * d + m1 * p[6 + j]
        out[9 + j] = s2 * d + m2 * p[6 + j]


@numba.njit(**_JIT)
def _finite(a, b):  # pragma: no cover - compiled
    for j in range(a.shape[0]):
        if not (np.isfinite(a[j]) and np.isfinite(b[j])):
            return False
    return True


@numba.njit(**_JIT)
def _initial_step(z, dz, t0, t1, rtol, atol):  # pragma: no cover - compiled
    """integrate_adaptive's first step (1 % of |z| / |dz|, capped by the first interval), per system."""
    s0 = 0.0
    s1 = 0.0
    for j in range(z.shape[0]):
        scale = atol + rtol * abs(z[j])
        s0 += (z[j] / scale) ** 2
        s1 += (dz[j] / scale) ** 2
    d0 = np.sqrt(s0 / z.shape[0])
    d1 = np.sqrt(s1 / z.shape[0])
    h = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    return min(h, t1 - t0) if t1 > t0 else h


@numba.njit(**_JIT)
def _stages(z, k, h, p, c2, zs):  # pragma: no cover - compiled
    """Stages 2 to 7 into k[1:] from k[0] = f(z); k[6] is f at the 5th-order solution, left in zs."""
    n = z.shape[0]
    for j in range(n):
        zs[j] = z[j] + h * (A21 * k[0, j])
    _field(zs, p, c2, k[1])
    for j in range(n):
        zs[j] = z[j] + h * (A31 * k[0, j] + A32 * k[1, j])
    _field(zs, p, c2, k[2])
    for j in range(n):
        zs[j] = z[j] + h * (A41 * k[0, j] + A42 * k[1, j] + A43 * k[2, j])
    _field(zs, p, c2, k[3])
    for j in range(n):
        zs[j] = z[j] + h * (A51 * k[0, j] + A52 * k[1, j] + A53 * k[2, j] + A54 * k[3, j])
    _field(zs, p, c2, k[4])
    for j in range(n):
        zs[j] = z[j] + h * (A61 * k[0, j] + A62 * k[1, j] + A63 * k[2, j] + A64 * k[3, j] + A65 * k[4, j])
    _field(zs, p, c2, k[5])
    for j in range(n):
        zs[j] = z[j] + h * (B1 * k[0, j] + B3 * k[2, j] + B4 * k[3, j] + B5 * k[4, j] + B6 * k[5, j])
    _field(zs, p, c2, k[6])


@numba.njit(**_JIT)
def _error_norm(z, z_new, k, h, rtol, atol):  # pragma: no cover - compiled
    """RMS over components of err / (atol + rtol max(|z|, |z_new|)); inf when anything is not finite."""
    total = 0.0
    for j in range(z.shape[0]):
        err = h * (E1 * k[0, j] + E3 * k[2, j] + E4 * k[3, j] + E5 * k[4, j] + E6 * k[5, j] + E7 * k[6, j])
        ratio = err / (atol + rtol * max(abs(z[j]), abs(z_new[j])))
        total += ratio * ratio
        if not np.isfinite(z_new[j]):
            return np.inf
    error = np.sqrt(total / z.shape[0])
    return error if error <= np.inf else np.inf  # NaN compares false


@numba.njit(**_JIT)
def _one_system(z0, p, c2, times, rtol, atol, first_step, max_steps, out, counts):  # pragma: no cover - compiled
    """Integrate one system, writing its states at ``times`` into ``out``; returns (outcome code, t)."""
    n = z0.shape[0]
    k = np.empty((7, n))
    z = z0.copy()
    zs = np.empty(n)
    t = times[0]
    out[0] = z
    _field(z, p, c2, k[0])
    counts[2] += 1
    if not _finite(z, k[0]):
        return NON_FINITE, t
    t1 = times[1] if times.shape[0] > 1 else t
    h = first_step if first_step > 0 else _initial_step(z, k[0], t, t1, rtol, atol)
    for i in range(1, times.shape[0]):
        t_end = times[i]
        while t < t_end:
            if counts[0] + counts[1] >= max_steps:
                return TOO_MANY_STEPS, t_end
            last = t + h >= t_end - 1e-12 * max(1.0, abs(t_end))
            step = t_end - t if last else h
            _stages(z, k, step, p, c2, zs)
            counts[2] += 6
            error = _error_norm(z, zs, k, step, rtol, atol)
            if error <= 1.0:
                counts[0] += 1
                t = t_end if last else t + step
                z[:] = zs
                k[0] = k[6]  # first-same-as-last: the 7th stage is f at the new point
                factor = MAX_FACTOR if error == 0 else min(MAX_FACTOR, SAFETY * error**EXPONENT)
                # a step cut short to land on an output time says nothing against the current h
                h = max(h, step * factor) if last and step < h and factor >= 1 else step * factor
            else:
                counts[1] += 1
                factor = MIN_FACTOR if error == np.inf else max(MIN_FACTOR, SAFETY * error**EXPONENT)
                h = step * factor
            if not (h >= 1e-14 * max(1.0, abs(t))):
                _field(z, p, c2, zs)
                return (UNDERFLOW if _finite(z, zs) else NON_FINITE), t
        out[i] = z
    return OK, t


@numba.njit(parallel=True, **_JIT)
def _integrate(z0, p, c2, times, rtol, atol, first, max_steps, out, counts, outcome, when):  # pragma: no cover
    """Every system on its own; numba spreads the systems over its threads."""
    for s in numba.prange(z0.shape[0]):
        code, t = _one_system(z0[s], p[s], c2, times, rtol, atol, first, max_steps, out[s], counts[s])
        outcome[s] = code
        when[s] = t


def integrate(
    z0: np.ndarray,
    params: np.ndarray,
    c2: float,
    times: np.ndarray,
    *,
    rtol: float,
    atol: float,
    first_step: float | None = None,
    max_steps: int = 1_000_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Trajectories (systems, len(times), 12) of states ``z0`` (systems, 12), float64.

    ``params`` is (systems, 9) in :data:`PARAMETER_COLUMNS`; ``c2`` the second spring's energy factor.
    Also returns per system: counts (accepted, rejected, vector-field evaluations), the outcome code
    (:data:`OK`, ...) and the time at which a failing system stopped. ``max_steps`` bounds each
    system's accepted plus rejected steps.
    """
    z0 = np.ascontiguousarray(z0, dtype=np.float64)
    params = np.ascontiguousarray(params, dtype=np.float64)
    times = np.ascontiguousarray(times, dtype=np.float64)
    n = z0.shape[0]
    out = np.empty((n, times.shape[0], z0.shape[1]))
    counts = np.zeros((n, 3), dtype=np.int64)
    outcome = np.zeros(n, dtype=np.int64)
    when = np.zeros(n)
    # systems differ in cost (their step counts) and the cores may be shared: threads take small
    # chunks of systems as they finish instead of one fixed share each
    with _keeping_torch_threads(), _LAUNCH, numba.parallel_chunksize(CHUNK):
        _integrate(
            z0, params, float(c2), times, float(rtol), float(atol), float(first_step or 0.0), int(max_steps),
            out, counts, outcome, when,
        )  # fmt: skip
    return out, counts, outcome, when


def numba_threads() -> int:
    """Numba's thread count, read without changing torch's: reading it starts numba's threading layer, which
    sets the shared OpenMP thread count (see :func:`_keeping_torch_threads`)."""
    with _keeping_torch_threads():
        return numba.get_num_threads()


@contextlib.contextmanager
def _keeping_torch_threads():
    """Restore torch's thread count around a parallel launch. Numba's OpenMP layer, as it starts and launches,
    sets the calling thread's OpenMP thread count to its own (all cores), and when torch is loaded the
    process shares torch's libgomp: torch's BLAS would then run on every core after a simulation,
    oversubscribing a process that asked for one thread (a test worker, a benchmark under
    OMP_NUM_THREADS=1)."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if torch is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
