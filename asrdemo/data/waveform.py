"""Signal utilities of the synthetic corpora (mini_jsut, synth_ja, synth_eval) and of data
augmentation (augment): seeded generators, speech level and extent, noise, mixing at an SNR, a
small room, float -> 16-bit PCM; and, through maintained libraries, a simulated shoebox room
(pyroomacoustics), a change of speaker (Praat's "Change gender", praat-parselmouth) and a lossy
codec (libsndfile's Vorbis and MP3 encoders, soundfile).

Every corpus and every augmented copy is reproducible byte for byte from (seed, key), so these
functions keep each caller's arithmetic exactly: where the callers differ (the int16 scale, how
pink noise is drawn, how speech power is measured) the difference is a parameter or a separate,
named function, because unifying it would change audio that already exists (the mini corpus, the
synth_ja corpus the shipped model was trained on, augmented training sets).
"""

import hashlib

import numpy as np

from asrdemo.errors import AsrdemoError
from asrdemo.utils.io import atomic_path

# float -> int16 scales. Reading PCM as float divides by 32768, so 32768 is the exact inverse
# (augmentation); the synthetic corpora were written with 32767 and keep it (their wavs stay the same).
PCM_SCALE = 32768.0
CORPUS_PCM_SCALE = 32767.0


def seeded_rng(seed, *key, sep: str = "\0") -> np.random.Generator:
    """A generator that depends only on (seed, key...) -- not on Python's salted hash(), the process
    or the order of the work: the first 128 bits of sha256 of the parts joined by `sep`. (The corpora
    join with NUL, augmentation with tabs; another `sep` would give other audio.)"""
    text = sep.join(str(part) for part in (int(seed), *key))
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


# ---------------------------------------------------------------- 16-bit PCM


def to_int16(wave: np.ndarray, scale: float) -> np.ndarray:
    """Float samples -> int16: round(x * scale), clipped to the int16 range."""
    return np.clip(np.round(np.asarray(wave, dtype=np.float64) * scale), -32768, 32767).astype(np.int16)


def fit_int16(wave: np.ndarray):
    """-> (int16 samples, gain). Scales the whole wave down when its peak would clip (gain < 1),
    which keeps the SNR; int16 = round(x * 32768), the inverse of reading PCM as float."""
    peak = float(np.max(np.abs(wave))) if len(wave) else 0.0
    gain = 1.0 if peak * PCM_SCALE <= 32767 else 32767 / (peak * PCM_SCALE)
    return to_int16(wave.astype(np.float64) * gain, PCM_SCALE), gain


def write_pcm16(path, samples: np.ndarray, sample_rate: int) -> None:
    """int16 `samples` -> a 16-bit PCM mono wav at `path`, written atomically."""
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(str(tmp), samples, sample_rate, subtype="PCM_16", format="WAV")


# ---------------------------------------------------------------- level, extent, SNR


def frame_power(wave: np.ndarray, frame: int) -> np.ndarray:
    """Mean power of each whole `frame`-sample frame of `wave` (a shorter tail is left out)."""
    n = len(wave) // frame
    return np.mean(wave[: n * frame].reshape(n, -1) ** 2, axis=1)


def speech_bounds(wave: np.ndarray, frame: int = 480, range_db: float = 48.0) -> tuple:
    """(start, end) samples of the speech: the frames within `range_db` of the loudest one, plus one
    frame either side; the whole wave when it is shorter than a frame. (The HTS voices' silences
    sit about 60 dB below their loudest frames.)"""
    n = len(wave) // frame
    if n == 0:
        return 0, len(wave)
    rms = np.sqrt(frame_power(wave, frame) + 1e-20)
    active = np.flatnonzero(rms > rms.max() * 10 ** (-range_db / 20))
    return max(int(active[0]) - 1, 0) * frame, min(int(active[-1]) + 2, n) * frame


def active_power(wave: np.ndarray, frame: int = 320, range_db: float = 40.0) -> float:
    """Mean power of the active part of `wave`: frames (320 samples = 20 ms at 16 kHz) whose energy
    is within `range_db` of the loudest frame. Silences and pauses do not count, so the SNR of a
    mixture does not depend on how much silence an utterance has (the idea of ITU-T P.56)."""
    wave = np.asarray(wave, dtype=np.float64)
    if len(wave) == 0:
        return 0.0
    energy = frame_power(wave, frame) if len(wave) >= frame else np.mean(wave[None, :] ** 2, axis=1)
    loudest = energy.max()
    if loudest <= 0:
        return 0.0
    return float(energy[energy >= loudest * 10 ** (-range_db / 10)].mean())


def snr_gain(speech_power: float, snr_db: float, noise_power: float = 1.0):
    """The factor that brings noise of mean power `noise_power` to `snr_db` below `speech_power`."""
    return np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float, frame: int = 320) -> np.ndarray:
    """`wave` + `noise` scaled so that active speech power (`active_power`) / mean noise power = `snr_db`.

    `noise` is looped or cut to the length of `wave`. Digital silence stays silent (there is no
    speech level to set the noise by); silent noise is an AsrdemoError. No clipping protection
    here: see `fit_int16`."""
    wave = np.asarray(wave, dtype=np.float32)
    noise = np.resize(np.asarray(noise, dtype=np.float32), len(wave))
    speech_power = active_power(wave, frame)
    noise_power = float(np.mean(noise.astype(np.float64) ** 2))
    if speech_power <= 0:
        return wave.copy()
    if noise_power <= 0:
        raise AsrdemoError("noise is digital silence; cannot reach any SNR with it")
    return (wave + snr_gain(speech_power, snr_db, noise_power) * noise).astype(np.float32)


def set_level(wave: np.ndarray, level_dbfs: float) -> np.ndarray:
    """`wave` scaled to an RMS of `level_dbfs` (dB re full scale 1.0)."""
    return wave * (10 ** (level_dbfs / 20) / (np.sqrt(np.mean(wave**2)) + 1e-12))


def spectral_tilt(wave: np.ndarray, tilt: float) -> np.ndarray:
    """First-order FIR y[n] = x[n] - tilt * x[n-1]: > 0 brighter, < 0 darker."""
    return np.concatenate([wave[:1], wave[1:] - tilt * wave[:-1]])


def room(wave: np.ndarray, rt60_s: float, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A small synthetic room: exponentially decaying noise impulse response, mostly dry."""
    n_ir = int(rt60_s * sample_rate)
    t = np.arange(n_ir) / sample_rate
    ir = rng.standard_normal(n_ir) * np.exp(-6.9078 * t / rt60_s)  # -60 dB at rt60
    ir *= 0.3 / np.sqrt(np.sum(ir**2))
    ir[0] = 1.0
    return reverberate(wave, ir)


def reverberate(wave: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """`wave` (N,) convolved with the impulse response `ir` (L,) (FFT) -> float64 (N,), the tail past N cut."""
    n_fft = 1 << (len(wave) + len(ir) - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(wave, n_fft) * np.fft.rfft(ir, n_fft), n_fft)[: len(wave)]


def shoebox_room(wave: np.ndarray, rt60_s: float, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """`wave` (N,) as a microphone in a simulated room hears it: a shoebox 3-9 x 3-7 x 2.4-3.5 m
    with walls absorbing as Sabine's formula gives `rt60_s` (`pyroomacoustics.inverse_sabine`),
    source and microphone at random places at least 0.5 m from the walls, the impulse response by
    the image-source method (pyroomacoustics; Allen & Berkley 1979), direct path at unit gain.
    -> (N,) float64, aligned with the dry wave. Deterministic: the image sources have no randomness."""
    import pyroomacoustics as pra

    dims = np.array([rng.uniform(3.0, 9.0), rng.uniform(3.0, 7.0), rng.uniform(2.4, 3.5)])
    absorption, max_order = pra.inverse_sabine(rt60_s, dims)
    shoebox = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption), max_order=max_order)
    src, mic = (rng.uniform(0.5, dims - 0.5) for _ in range(2))
    shoebox.add_source(src)
    shoebox.add_microphone(mic)
    shoebox.compute_rir()
    ir = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    direct = int(np.argmax(np.abs(ir)))
    return reverberate(wave, ir[direct:] / ir[direct])  # the direct sound at t = 0, gain 1: the level is set later


def change_gender(wave: np.ndarray, sample_rate: int, formant_ratio: float, pitch_median_hz: float,
                  seed: int) -> np.ndarray:
    """Another speaker from `wave` (N,): Praat's "Change gender" (PSOLA resynthesis; praat-parselmouth)
    scales the formants by `formant_ratio` (< 1: a longer vocal tract) and moves the median pitch to
    `pitch_median_hz` (0: keep), the duration unchanged. -> float64 (M,), M ~ N. Pitch is tracked
    in 60-600 Hz; a wave with no voiced frame comes back with only its formants moved. Praat's
    resynthesis draws random numbers: its generator is seeded with `seed` first, so the same call
    gives the same samples (Praat's own name for that: "unsafely but predictably")."""
    import parselmouth

    parselmouth.praat.run(f"random_initializeWithSeedUnsafelyButPredictably ({int(seed)})")
    sound = parselmouth.Sound(np.asarray(wave, dtype=np.float64), sampling_frequency=sample_rate)
    out = parselmouth.praat.call(sound, "Change gender", 60.0, 600.0, float(formant_ratio),
                                 float(pitch_median_hz), 1.0, 1.0)
    return np.asarray(out.values[0], dtype=np.float64)


MP3_MAX_DELAY = 2 * 1152  # samples: two MPEG layer III frames


def lossy_codec(wave: np.ndarray, sample_rate: int, codec: str, quality: float) -> np.ndarray:
    """`wave` (N,) in [-1, 1] through a lossy codec and back (libsndfile via soundfile, in memory):
    codec "ogg" (Vorbis) or "mp3" (MPEG layer III, constant bitrate); quality 0..1 maps to
    libsndfile's compression level 0.9..0 (0: at 16 kHz about 26 kbit/s MP3, 57 kbit/s Vorbis;
    libsndfile refuses an MP3 at level 1). -> float64 (N,), aligned with `wave`: an MP3 can come
    back behind by the encoder's delay (1,105 samples at the lowest bitrate here), found by
    cross-correlation within two MP3 frames and cut; then cut or zero-padded to N. Raises
    AsrdemoError for another codec."""
    import io

    import soundfile as sf

    formats = {"ogg": ("OGG", "VORBIS", {}), "mp3": ("MP3", "MPEG_LAYER_III", {"bitrate_mode": "CONSTANT"})}
    if codec not in formats:
        raise AsrdemoError(f"unknown codec {codec!r} (ogg or mp3)")
    fmt, subtype, extra = formats[codec]
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), sample_rate, format=fmt, subtype=subtype,
             compression_level=0.9 * (1.0 - float(np.clip(quality, 0.0, 1.0))), **extra)
    buf.seek(0)
    out, _ = sf.read(buf, dtype="float64")
    if codec == "mp3":
        n_fft = 1 << (len(out) + len(wave)).bit_length()
        xcorr = np.fft.irfft(np.fft.rfft(out, n_fft) * np.conj(np.fft.rfft(wave, n_fft)), n_fft)
        out = out[int(np.argmax(xcorr[:MP3_MAX_DELAY + 1])):]
    return np.pad(out, (0, max(0, len(wave) - len(out))))[: len(wave)]



# ---------------------------------------------------------------- noise


def unit_power(noise: np.ndarray) -> np.ndarray:
    """`noise` scaled to mean power 1 (all-zero noise stays zero)."""
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def corpus_noise(kind: str, n: int, speech: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """The synthetic corpora's noise, unit power: white, pink (a white spectrum divided by
    sqrt(max(f, 20 Hz))) or babble (shifted, reversed copies of the utterance's own speech)."""
    if kind == "white":
        noise = rng.standard_normal(n)
    elif kind == "pink":
        n_fft = 1 << (n - 1).bit_length()  # a power of two: pocketfft is slow on large primes
        spec = np.fft.rfft(rng.standard_normal(n_fft))
        spec /= np.sqrt(np.maximum(np.fft.rfftfreq(n_fft, 1.0 / sample_rate), 20.0))
        noise = np.fft.irfft(spec, n_fft)[:n]
    elif kind == "babble":
        base = np.resize(speech, n) if len(speech) else np.zeros(n)
        noise = np.zeros(n)
        for k in range(5):
            copy = base[::-1] if k % 2 else base
            noise += np.roll(copy, int(rng.integers(n))) * rng.uniform(0.5, 1.0)
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    return unit_power(noise)


def colored_noise(n: int, rng: np.random.Generator, exponent: float, sample_rate: int) -> np.ndarray:
    """Augmentation's pink (exponent 1) and brown (2) noise: Gaussian noise whose power spectrum falls
    as 1/f^exponent, with nothing below 20 Hz (a 1/f^2 spectrum down to 0 Hz would put most of its
    power in inaudible drift, which fbank ignores and which would make the SNR meaningless)."""
    size = 1 << max(1, (n - 1).bit_length())  # a power of two: FFTs of prime lengths are slow
    spectrum = rng.standard_normal(size // 2 + 1) + 1j * rng.standard_normal(size // 2 + 1)
    freqs = np.fft.rfftfreq(size, d=1.0 / sample_rate)
    shape = np.zeros_like(freqs)
    audible = freqs >= 20.0
    shape[audible] = freqs[audible] ** (-exponent / 2)
    return np.fft.irfft(spectrum * shape, size)[:n]


def eval_noise(kind: str, n: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """The evaluation sets' noise, unit power, of kinds the corpora never add: brown (an integrated
    random walk without its drift) or a machine hum (harmonics of a random 50-200 Hz fundamental
    with a little broadband hiss)."""
    if kind == "brown":
        noise = np.cumsum(rng.standard_normal(n))
        noise -= np.convolve(noise, np.ones(801) / 801, mode="same")  # drop the random walk's drift
    elif kind == "hum":
        t = np.arange(n) / sample_rate
        f0 = rng.uniform(50.0, 200.0)
        noise = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi))
                    for k in range(1, 16))
        noise = noise + 0.05 * rng.standard_normal(n)
    else:
        raise ValueError(f"unknown evaluation noise {kind!r}")
    return unit_power(noise)
