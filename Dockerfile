# The pgjobs image: `jobctl worker` by default; compose runs `jobctl maintenance` and the
# migration from the same image (docs/operations.md, "Deploying").
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONPATH=/app
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pgjobs pgjobs
RUN pip install .

# Your application's code goes here: the modules that declare your job types and handlers
# (and whatever they import), then name those modules in JOBS_IMPORTS so every worker and the
# maintenance process imports them at start. /app is on PYTHONPATH.
#   COPY requirements.txt ./
#   RUN pip install -r requirements.txt
#   COPY myapp/ /app/myapp/
#   ENV JOBS_IMPORTS=myapp.jobs

USER nobody
# Can this container reach PostgreSQL and Redis? (`select 1` and PING; exit 1 when not.)
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["jobctl", "health"]
CMD ["jobctl", "worker"]
