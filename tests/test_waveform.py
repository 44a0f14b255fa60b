"""The signal utilities the synthetic corpora and augmentation share (asrdemo/data/waveform.py):
their random streams and int16 scales are what the existing corpora were made with, so that
they stay the same byte for byte."""

import hashlib

import numpy as np

from asrdemo.data import waveform


def test_seeded_rng_is_the_stream_the_corpora_and_augmentation_were_made_with():
    for seed, key in ((0, "BASIC5000_0001"), (7, "sample-noise"), (123456, "SYNTH_000042")):
        digest = hashlib.sha256(f"{seed}\0{key}".encode("utf-8")).digest()
        corpus = np.random.default_rng([int(w) for w in np.frombuffer(digest[:16], dtype=np.uint32)])
        assert np.array_equal(waveform.seeded_rng(seed, key).integers(0, 2**62, 8), corpus.integers(0, 2**62, 8))
        digest = hashlib.sha256(f"{seed}\t3\t{key}".encode("utf-8")).digest()
        augment = np.random.default_rng(int.from_bytes(digest[:16], "little"))
        assert np.array_equal(waveform.seeded_rng(seed, 3, key, sep="\t").random(8), augment.random(8))


def test_int16_scales():
    x = np.array([-1.0, -0.5, 0.25, 0.9999, 1.0])
    assert waveform.to_int16(x, waveform.CORPUS_PCM_SCALE).tolist() == [-32767, -16384, 8192, 32764, 32767]
    assert waveform.to_int16(x, waveform.PCM_SCALE).tolist() == [-32768, -16384, 8192, 32765, 32767]
    samples, gain = waveform.fit_int16(np.array([0.5, -2.0], dtype=np.float32))
    assert gain < 1 and samples.tolist() == [8192, -32767]  # scaled down, not clipped
