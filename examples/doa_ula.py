"""Direction-of-arrival estimation with a uniform linear array, by a complex CPD whose
array-response factors are Vandermonde matrices.

The standard textbook set-up, generated in this script (no measured data): a uniform
linear array of 10 sensors at half-wavelength spacing receives three narrowband
far-field sources from -20, 10 and 35 degrees; sensor ``m`` sees source ``r`` with the
phase ``exp(jπ m sin θ_r)``. 100 snapshots of circular complex Gaussian waveforms (unit
power) plus circular complex white noise at 20 dB SNR.

Tensor: spatial smoothing arranges the snapshots ``X`` (10 x 100) as the third-order
tensor ``T[m, t, l] = X[m + l, t]``: sensors x snapshots x subarrays, 4 overlapping
subarrays of 7 sensors. Its CPD is ``[[V_7(z), S^T, V_4(z)]]`` with ``V_K(z)[k, r] =
z_r^k``: both the subarray response and the subarray shifts are Vandermonde in the same
complex unit-modulus generators ``z_r = exp(jπ sin θ_r)``. An unstructured complex CPD
(``sdf.models.cpd``) gives a start; the structured model refines it: one real variable
``ω`` (the spatial frequencies ``π sin θ_r``), the unit-modulus generators
``z = exp(jω)`` (a ``tf.custom`` transform from real to complex values), and
``tf.vander(z, K)`` in both Vandermonde factors. The angles are
``θ_r = arcsin(ω_r / π)``.

Run from anywhere: ``python examples/doa_ula.py``; writes ``doa_ula.png`` next to this
script and prints a short report.
"""

from pathlib import Path

import autograd.numpy as anp
import numpy as np

import sdf
from sdf import transforms as tf
from sdf.models import cpd

HERE = Path(__file__).resolve().parent
ANGLES = np.array([-20.0, 10.0, 35.0])  # degrees
SENSORS, SNAPSHOTS, SUBARRAYS = 10, 100, 4
SNR_DB = 20.0


def steering(theta_deg: np.ndarray, sensors: int) -> np.ndarray:
    """ULA response (sensors, R) at half-wavelength spacing: exp(jπ m sin θ)."""
    return np.exp(1j * np.pi * np.arange(sensors)[:, None] * np.sin(np.deg2rad(theta_deg)))


def angles_of(z: np.ndarray) -> np.ndarray:
    """Angles in degrees of generators z = exp(jπ sin θ)."""
    return np.rad2deg(np.arcsin(np.clip(np.angle(z) / np.pi, -1.0, 1.0)))


def shift_generator(column: np.ndarray) -> complex:
    """Least-squares z with a[1:] = z a[:-1]: the generator of a Vandermonde column."""
    return complex(np.vdot(column[:-1], column[1:]) / np.vdot(column[:-1], column[:-1]))


def main() -> None:
    rng = np.random.default_rng(7)
    R = ANGLES.size
    S = (rng.standard_normal((R, SNAPSHOTS)) + 1j * rng.standard_normal((R, SNAPSHOTS)))
    S /= np.sqrt(2.0)
    sigma = np.sqrt(10.0 ** (-SNR_DB / 10.0) / 2.0)
    noise = sigma * (rng.standard_normal((SENSORS, SNAPSHOTS))
                     + 1j * rng.standard_normal((SENSORS, SNAPSHOTS)))
    X = steering(ANGLES, SENSORS) @ S + noise

    size = SENSORS - SUBARRAYS + 1
    T = np.stack([X[l:l + size] for l in range(SUBARRAYS)], axis=2)
    print(f"data: {SENSORS} sensors x {SNAPSHOTS} snapshots at {SNR_DB:g} dB SNR -> tensor "
          f"{T.shape} (sensors x snapshots x subarrays), {T.dtype}")

    start = cpd(T, R, seed=0)
    print(f"unstructured complex CPD: relative error {100 * start.relerr:.2f} %")
    z0 = np.array([shift_generator(a) for a in start.factors[0].T])
    S0 = np.linalg.lstsq(steering(angles_of(z0), SENSORS), X, rcond=None)[0].T
    omega = sdf.Variable(np.angle(z0), name="omega")  # real spatial frequencies
    z = tf.custom(lambda w: anp.exp(1j * w), label="exp(j omega)")(omega)
    s = sdf.Variable(S0, name="s")
    model = sdf.Model(doa=sdf.CPD(T, [tf.transpose(tf.vander(z, size)), s,
                                      tf.transpose(tf.vander(z, SUBARRAYS))]))
    res = model.fit(max_iter=50)
    print(f"Vandermonde-structured CPD: {res.iterations} iterations, relative error "
          f"{100 * res.relerr['doa']:.2f} % (noise in the snapshots: "
          f"{100 * np.linalg.norm(noise) / np.linalg.norm(X):.2f} %)")

    found = res[z]
    estimated = np.sort(angles_of(found))
    print(f"generators z: complex, |z| = {', '.join(f'{abs(g):.3f}' for g in found)}")
    print("angle (true)   angle (estimated)     error")
    for true, est in zip(np.sort(ANGLES), estimated):
        print(f"{true:>11.1f}° {est:>18.3f}° {est - true:>+9.3f}°")
    print(f"largest angle error: {np.max(np.abs(estimated - np.sort(ANGLES))):.3f} degrees")
    out = HERE / "doa_ula.png"
    _figure(X, estimated).savefig(out, dpi=110)
    print(f"figure written to {out}")


def _figure(X: np.ndarray, estimated: np.ndarray):
    import matplotlib.pyplot as plt

    grid = np.linspace(-90.0, 90.0, 1441)
    A = steering(grid, SENSORS)
    Rx = X @ X.conj().T / X.shape[1]
    bartlett = np.real(np.einsum("mi,mn,ni->i", A.conj(), Rx, A)) / SENSORS**2
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(grid, 10 * np.log10(bartlett / bartlett.max()), color="0.5",
             label="Bartlett beamformer")
    for k, a in enumerate(np.sort(ANGLES)):
        ax1.axvline(a, color="k", ls="--", lw=1, label="true" if k == 0 else None)
    ax1.plot(estimated, np.zeros_like(estimated), "C3v", ms=10, label="CPD estimate")
    ax1.set(xlim=(-90, 90), ylim=(-30, 2), xlabel="angle (degrees)",
            ylabel="power (dB)", title="directions of arrival")
    ax1.legend(loc="lower left", fontsize="small")
    zoom = np.sort(ANGLES)
    ax2.plot(zoom, np.zeros_like(zoom), "ko", mfc="none", ms=12, label="true")
    ax2.plot(estimated, estimated - zoom, "C3x", ms=10, mew=2, label="CPD error")
    ax2.axhline(0.0, color="0.7", lw=0.8)
    ax2.set(xlabel="angle (degrees)", ylabel="estimated - true (degrees)",
            title=f"errors at {SNR_DB:g} dB SNR")
    ax2.legend(fontsize="small")
    fig.suptitle(f"ULA of {SENSORS} sensors, 3 sources: Vandermonde-structured complex CPD")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
