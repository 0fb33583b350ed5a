# A worker on an NVIDIA GPU: PyTorch's CUDA wheel on a CUDA runtime image.
#
#   docker build -f deploy/docker/worker-cuda.Dockerfile -t dicom-node-worker:cuda .
#   docker run --gpus all ... dicom-node-worker:cuda
#
# The host needs the NVIDIA driver and the NVIDIA Container Toolkit. TORCH_INDEX picks
# the CUDA build of the wheel (cu126, cu128, ...): take one that the host's driver
# supports (`nvidia-smi` shows the highest CUDA version) and that the PyTorch release
# publishes, and keep CUDA_IMAGE at the same CUDA version.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/dicom-node \
    && /opt/dicom-node/bin/pip install --index-url "$TORCH_INDEX" "torch==$TORCH_VERSION"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dicom_node dicom_node
COPY workers workers
COPY models models
COPY migrations migrations
RUN /opt/dicom-node/bin/pip install ".[worker]" && rm -rf /src
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/dicom-node dicom-node \
    && install -d -o dicom-node -g dicom-node -m 0750 /var/lib/dicom-node \
    && install -d -m 0755 /etc/dicom-node
COPY deploy/docker/healthcheck.py /opt/dicom-node/healthcheck.py
ENV PATH=/opt/dicom-node/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    DICOM_NODE_DATA_DIR=/var/lib/dicom-node \
    DICOM_NODE_LOG_FORMAT=json \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER dicom-node
WORKDIR /var/lib/dicom-node
HEALTHCHECK --interval=60s --timeout=20s --start-period=120s --retries=3 \
    CMD ["python", "/opt/dicom-node/healthcheck.py", "worker"]
STOPSIGNAL SIGTERM
# Both queues; on a host that should only analyse: `dicom-node worker --queues gpu`
# (then another worker, or the node's embedded one, must take the io queue).
CMD ["dicom-node", "worker"]
