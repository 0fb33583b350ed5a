# The node: DICOM listener, series registry, outbox and alert senders, dashboard.
# No torch and no pipeline: the analysis runs in the worker images.
#
#   docker build -f deploy/docker/node.Dockerfile -t dicom-node:latest .
#
# Settings come from DICOM_NODE_* variables (or a TOML file mounted at
# /etc/dicom-node/dicom-node.toml); see deploy/dicom-node.example.toml.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dicom_node dicom_node
COPY workers workers
COPY models models
COPY migrations migrations
RUN python -m venv /opt/dicom-node \
    && /opt/dicom-node/bin/pip install . \
    && /opt/dicom-node/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/dicom-node dicom-node \
    && install -d -o dicom-node -g dicom-node -m 0750 /var/lib/dicom-node \
    && install -d -m 0755 /etc/dicom-node
COPY --from=build /opt/dicom-node /opt/dicom-node
COPY deploy/docker/healthcheck.py /opt/dicom-node/healthcheck.py
ENV PATH=/opt/dicom-node/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    DICOM_NODE_DATA_DIR=/var/lib/dicom-node \
    DICOM_NODE_EMBEDDED_WORKER=false \
    DICOM_NODE_LOG_FORMAT=json
USER dicom-node
WORKDIR /var/lib/dicom-node
VOLUME /var/lib/dicom-node
# DICOM (11112) and the dashboard, /metrics, /healthz (8080; set DICOM_NODE_HTTP_HOST=0.0.0.0
# to reach it from outside the container)
EXPOSE 11112 8080
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "/opt/dicom-node/healthcheck.py", "node"]
STOPSIGNAL SIGTERM
CMD ["dicom-node", "serve", "--no-worker"]
