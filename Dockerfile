FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pgjobs pgjobs
RUN pip install --no-cache-dir .
USER nobody
CMD ["jobctl", "worker"]
