# The web demo as one container (Cloud Run, or any Docker host); see docs/demo.md.
#   docker build -t asrdemo . && docker run --rm -p 8080:8080 asrdemo    # -> http://127.0.0.1:8080
# The image serves whatever exp_train_large/ holds at build time (package a model there first;
# without one the page explains how to get one).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8080 \
    ASRDEMO_EXP=/app/exp_train_large \
    ASRDEMO_SAMPLE=/app/sample/test.wav \
    ASRDEMO_WORKERS=1 \
    ASRDEMO_THREADS=4 \
    ASRDEMO_TORCH_THREADS=2

# CPU-only torch from PyTorch's CPU index: PyPI's default wheel is a CUDA build of several GB.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
# The package and its dependencies (torch above already satisfies `torch>=2.1`).
COPY setup.py README.md ./
COPY asrdemo ./asrdemo
RUN pip install . && rm -rf build asrdemo.egg-info

COPY gunicorn.conf.py ./
COPY sample ./sample
COPY exp_train_large ./exp_train_large

RUN useradd --create-home --uid 10001 asrdemo
USER asrdemo
# Build matplotlib's font cache now, not on the first request.
RUN python -c "import matplotlib.font_manager"

EXPOSE 8080
CMD ["gunicorn", "--config", "gunicorn.conf.py", "asrdemo.server:create_app()"]
