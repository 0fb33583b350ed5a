# A worker on CPUs: the analysis (HU baseline and deep models) with PyTorch's CPU wheel.
#
#   docker build -f deploy/docker/worker-cpu.Dockerfile -t dicom-node-worker:cpu .
#
# It needs the node's database, broker and data_dir (spool and results) at the same
# path as the node: see docs/deployment.md.
FROM python:3.11-slim-bookworm AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/dicom-node \
    && /opt/dicom-node/bin/pip install --index-url "$TORCH_INDEX" "torch==$TORCH_VERSION"
COPY pyproject.toml README.md ./
COPY dicom_node dicom_node
COPY workers workers
COPY models models
COPY migrations migrations
# torch is already there, so the worker extra (MONAI, nibabel, ...) keeps the CPU build
RUN /opt/dicom-node/bin/pip install ".[worker]"

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/dicom-node dicom-node \
    && install -d -o dicom-node -g dicom-node -m 0750 /var/lib/dicom-node \
    && install -d -m 0755 /etc/dicom-node
COPY --from=build /opt/dicom-node /opt/dicom-node
COPY deploy/docker/healthcheck.py /opt/dicom-node/healthcheck.py
ENV PATH=/opt/dicom-node/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    DICOM_NODE_DATA_DIR=/var/lib/dicom-node \
    DICOM_NODE_LOG_FORMAT=json
USER dicom-node
WORKDIR /var/lib/dicom-node
HEALTHCHECK --interval=60s --timeout=20s --start-period=120s --retries=3 \
    CMD ["python", "/opt/dicom-node/healthcheck.py", "worker"]
# SIGTERM: Celery's warm shutdown finishes the running analysis; allow for it with
# `docker stop -t 300` (compose: stop_grace_period).
STOPSIGNAL SIGTERM
CMD ["dicom-node", "worker"]
