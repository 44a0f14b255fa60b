"""asrdemo: a readable end-to-end Japanese ASR recipe (JSUT) with a web demo."""

__version__ = "0.1.0"
