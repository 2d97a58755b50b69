# The project's image: the `ml-rnn-names` CLI with the PostgreSQL driver, CPU-only torch.
#   docker build -t ml-rnn-names .
#   docker run --rm ml-rnn-names status studies/rnn_vs_lstm.toml --storage postgresql+psycopg://…
# docker-compose.yml runs it as workers, finalize, report and dashboard (see docs/scaling-out.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg

WORKDIR /app

# torch first, from PyTorch's CPU index: a bare `torch` requirement would pull the multi-GB CUDA build.
ARG TORCH_VERSION=2.13.0
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

# Then the package (its own dependencies from PyPI; torch is already satisfied).
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[postgres]"

# Campaign files only (.dockerignore keeps databases and results out). Results land in
# studies/<campaign>/ beside each file: the folders exist, owned by the app user, so a named volume
# mounted there starts writable.
COPY studies ./studies
RUN useradd --create-home --uid 1000 app \
    && mkdir -p studies/rnn_vs_lstm studies/smoke data /cache \
    && chown -R app:app /app/studies /app/data /cache
ENV ML_RNN_NAMES_CACHE=/cache
USER app

ENTRYPOINT ["ml-rnn-names"]
CMD ["--help"]
