"""Impact sounds by modal synthesis: a struck object rings as a sum of exponentially damped sines.

Partial k has frequency ``f_0 * ratio_k`` where the ratios come from the shape and
``f_0 = material.frequency_x_size / size`` (bigger is lower); it decays with
``t60_k = t60 * (f_0 / f_k) ** damping_slope`` (metal rings long, rubber thuds) and has
amplitude ``k ** -spectral_tilt`` times a random strike-position factor (brightness). A
low-passed noise burst models the contact; the shape's drop pattern (bounces, rattles) repeats
the impact at its `hits`; faint room noise (40-55 dB below the peak) is added.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from anybind.demo.world.config import MaterialSound

LN_1000 = float(np.log(1000.0))  # -60 dB in nepers: decay rate = ln(1000) / t60
MAX_PARTIAL_FRACTION = 0.45  # partials above this fraction of the sample rate are dropped


def fundamental_hz(sound: MaterialSound, size_m: float) -> float:
    """The nominal fundamental frequency (Hz) of an object of `size_m` metres made of this material."""
    return sound.frequency_x_size / size_m


def impact_sound(modes: tuple[float, ...], size_m: float, sound: MaterialSound, sample_rate: int,
                 seconds: float, rng: np.random.Generator,
                 hits: tuple[tuple[float, float], ...] = ((0.0, 1.0),)) -> np.ndarray:
    """One impact sound ``[round(seconds * sample_rate)]`` float32 in [-1, 1].

    `modes` are the shape's partial frequency ratios, `size_m` the object's size in metres,
    `sound` the material's synthesis parameters, `hits` the (time s, gain) of each impact of
    the drop (the pattern's timing is stretched by a random factor in [0.85, 1.15]).
    """
    length = int(round(seconds * sample_rate))
    onset = int(rng.uniform(0.0, 0.05) * sample_rate)
    t = np.arange(length - onset, dtype=np.float64) / sample_rate
    f0 = fundamental_hz(sound, size_m) * rng.uniform(0.95, 1.05)
    ratios = np.asarray(modes, dtype=np.float64)
    frequencies = f0 * ratios * (1.0 + 0.012 * rng.standard_normal(len(ratios)))
    audible = frequencies < MAX_PARTIAL_FRACTION * sample_rate
    frequencies, order = frequencies[audible], np.arange(1, len(ratios) + 1)[audible]
    t60 = rng.uniform(*sound.t60_s) * (f0 / frequencies) ** sound.damping_slope
    amplitudes = order.astype(np.float64) ** -sound.spectral_tilt * rng.uniform(0.4, 1.0, len(frequencies))
    phases = rng.uniform(0.0, 2 * np.pi, len(frequencies))
    ring = np.zeros_like(t)
    if len(frequencies):
        # Only synthesize until the slowest partial is 80 dB down (rubber and wood stop early).
        active = min(len(t), int(np.ceil(t60.max() * (80 / 60) * sample_rate)) + 1)
        ta = t[:active].astype(np.float32)
        partials = (np.sin((2 * np.pi * frequencies[:, None]).astype(np.float32) * ta + phases[:, None].astype(np.float32))
                    * np.exp(-(LN_1000 / t60)[:, None].astype(np.float32) * ta))
        ring[:active] = amplitudes.astype(np.float32) @ partials
    ring /= np.abs(ring).max() + 1e-9
    burst_length = min(len(t), int(0.06 * sample_rate))
    burst = rng.standard_normal(burst_length) * np.exp(-t[:burst_length] / rng.uniform(0.004, 0.012))
    pole = np.exp(-2 * np.pi * sound.noise_cutoff_hz / sample_rate)
    burst = lfilter([1 - pole], [1, -pole], lfilter([1 - pole], [1, -pole], burst))
    burst /= np.abs(burst).max() + 1e-9
    ring[:burst_length] += sound.noise * rng.uniform(0.7, 1.3) * burst
    signal = np.zeros(length)
    stretch = rng.uniform(0.85, 1.15)
    for time_s, gain in hits:
        start = onset + int((time_s * stretch + rng.uniform(-0.004, 0.004) * (time_s > 0)) * sample_rate)
        if 0 <= start < length:
            signal[start:] += gain * rng.uniform(0.8, 1.2) * ring[:length - start]
    peak = rng.uniform(0.3, 0.9)
    signal *= peak / (np.abs(signal).max() + 1e-9)
    signal += peak * 10 ** (-rng.uniform(40.0, 55.0) / 20) * rng.standard_normal(length)  # room noise
    return np.clip(signal, -1.0, 1.0).astype(np.float32)


def dominant_frequency(signal: np.ndarray, sample_rate: int) -> float:
    """The frequency (Hz) of the largest peak of `signal`'s magnitude spectrum (no window: an
    impact decays, and a window centred on the signal would hide its start)."""
    spectrum = np.abs(np.fft.rfft(signal))
    return float(np.fft.rfftfreq(len(signal), 1.0 / sample_rate)[int(np.argmax(spectrum[1:])) + 1])


def decay_time(signal: np.ndarray, sample_rate: int, drop_db: float = 20.0) -> float:
    """Seconds from the envelope peak until it falls `drop_db` below it (10 ms RMS frames)."""
    frame = max(1, sample_rate // 100)
    frames = len(signal) // frame
    rms = np.sqrt(np.mean(signal[:frames * frame].reshape(frames, frame) ** 2, axis=1) + 1e-12)
    peak = int(np.argmax(rms))
    below = np.nonzero(rms[peak:] < rms[peak] * 10 ** (-drop_db / 20))[0]
    return float((below[0] if len(below) else frames - peak) * frame / sample_rate)
