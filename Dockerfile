FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config config
COPY state state
COPY tasks tasks
COPY workers workers
COPY channels channels
RUN pip install --no-cache-dir .
RUN useradd --create-home turnstile
USER turnstile
ENV TURNSTILE_DATA_DIR=/tmp/turnstile
