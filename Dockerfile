# One image for every TradeNova process: the code location (`dagster api grpc`), the web
# server (`dagster-webserver`), the daemon (`dagster-daemon run`) and, on Kubernetes, each
# run's pod. Build: docker build -t tradenova:0.1.0 .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    TRADENOVA_HOME=/opt/tradenova/home

WORKDIR /opt/tradenova/app

# The CPU build of torch first, so that installing the project does not pull a CUDA build.
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md workspace.yaml ./
COPY tradenova_dagster ./tradenova_dagster
COPY assets ./assets
COPY ops ./ops
COPY resources ./resources
COPY schedules ./schedules
COPY sensors ./sensors
COPY deploy ./deploy

# dagster-postgres: the production profile's storage (psycopg2, named by its scheme);
# dagster-k8s: the run launcher of the Helm chart, loaded by every process that reads
# the instance there. Both pinned with the Dagster family (dagster 1.13.27).
RUN pip install . "dagster-postgres==0.29.27" "dagster-k8s==0.29.27" "psycopg2-binary>=2.9,<3"

RUN useradd --system --uid 10001 --create-home tradenova \
    && mkdir -p "$DAGSTER_HOME" "$TRADENOVA_HOME" \
    && chown -R tradenova "$DAGSTER_HOME" "$TRADENOVA_HOME"
USER tradenova

# 3000: the web server; 4000: the code location's gRPC server.
EXPOSE 3000 4000

CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "tradenova_dagster.definitions"]
