# One image for every role of gpu-aiops: `aiops up` (control plane), `aiops agent` (triage agent),
# `aiops node` (node agent). Build: docker build -t gpu-aiops:0.1.0 .
# The install step is the tested one, `pip install .`: the dependency list is pyproject.toml's, nowhere else.

ARG PYTHON_VERSION=3.11

# Build stage: the full Debian image has gcc and the headers, for any dependency without a wheel.
FROM python:${PYTHON_VERSION}-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# .dockerignore keeps the context to what the package build reads (no tests, evals, .git, .venv).
COPY . .
RUN pip install --no-cache-dir .

# Final stage: slim Python, no compiler, the virtual environment only, a non-root user.
FROM python:${PYTHON_VERSION}-slim-bookworm
LABEL org.opencontainers.image.title="gpu-aiops" \
      org.opencontainers.image.description="Triage and remediation of GPU-cluster hardware faults" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 aiops \
    && useradd --system --uid 10001 --gid aiops --home-dir /var/lib/gpu-aiops --create-home \
       --shell /usr/sbin/nologin aiops
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AIOPS_DATA_DIR=/var/lib/gpu-aiops
WORKDIR /var/lib/gpu-aiops
USER 10001:10001
EXPOSE 8765
ENTRYPOINT ["aiops"]
CMD ["--help"]
