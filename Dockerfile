FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY db db
COPY producer producer
COPY worker worker
COPY jobctl jobctl
COPY migrations migrations
RUN pip install --no-cache-dir .
USER nobody
CMD ["jobctl", "worker"]
