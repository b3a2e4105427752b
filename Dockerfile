# syntax=docker/dockerfile:1
# genpt on NVIDIA GPUs: torch's CUDA build + onnxruntime-gpu, `genpt` as the entrypoint.
# Installed the way README.md installs: `pip install torch==2.13.0`, then
# `pip install . -c constraints.txt`.
# On Linux x86_64, torch==2.13.0 from PyPI is the CUDA build; it brings the CUDA runtime and
# cuDNN as nvidia-* wheels, which onnxruntime-gpu uses too, so the base image needs no CUDA
# toolkit. The host needs an NVIDIA driver and the NVIDIA Container Toolkit (--gpus all).
#   docker build -t genpt .
#   docker run --rm --gpus all genpt pipeline --preset small
# Without a registry or a GPU (this project's CPU machines): docker/build-local.sh builds the
# base with mmdebstrap and hands pip the CPU torch wheel (PIP_FIND_LINKS, a mounted folder).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtual environment in /opt/venv ---------------------------------------------
FROM ${PYTHON_IMAGE} AS build
# Unset here. PIP_FIND_LINKS: a folder of wheels pip looks in first (e.g. a CPU torch wheel
# mounted by the build); PIP_CERT: a CA bundle for a TLS proxy (docker/build-local.sh).
ARG PIP_FIND_LINKS
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Dependency layers first, cached until pyproject.toml changes: torch, then genpt's
# dependencies (installed from pyproject.toml with empty packages and README, then genpt
# removed): editing README.md or the code does not reinstall them.
# pip's cache is a build cache mount, kept out of the image.
RUN --mount=type=cache,target=/root/.cache/pip pip install torch==2.13.0
COPY pyproject.toml constraints.txt ./
RUN --mount=type=cache,target=/root/.cache/pip mkdir genpt model tasks flows \
    && touch README.md genpt/__init__.py model/__init__.py tasks/__init__.py flows/__init__.py \
    && pip install . -c constraints.txt \
    && pip uninstall -y genpt

# --- code: genpt itself under /opt/code, merged into the venv by a small last layer --------
FROM build AS code
COPY README.md ./
COPY genpt genpt
COPY model model
COPY tasks tasks
COPY flows flows
RUN --mount=type=cache,target=/root/.cache/pip pip install --no-deps --prefix /opt/code .

# --- runtime: the venv, git for DVC, a non-root user, the workspace -------------------------
# /data and ~/.prefect: compose.yaml's volumes (S3 data, Prefect's database), owned by the user
FROM ${PYTHON_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 genpt \
    && install -d -o 1000 -g 1000 /workspace /data /home/genpt/.prefect
# the dependencies (a big layer, cached), then the code (small: a code change rebuilds only it)
COPY --from=build /opt/venv /opt/venv
COPY --from=code /opt/code/ /opt/venv/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    DO_NOT_TRACK=1 \
    DVC_NO_ANALYTICS=1 \
    GX_ANALYTICS_ENABLED=False \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    GENPT_WORKSPACE=/workspace
USER 1000:1000
WORKDIR /workspace
# A ready workspace (dvc.yaml, params.yaml, data/, prefect.yaml); mount a clone over it to
# run your own. DVC runs without SCM (user-level config), so a workspace needs no .git.
COPY --chown=1000:1000 . /workspace
RUN dvc config --global core.no_scm true
ENTRYPOINT ["genpt"]
CMD ["--help"]
