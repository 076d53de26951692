#!/usr/bin/env bash
# The tour's commands, run from this folder, with the project's virtualenv active
# (source .venv/bin/activate) or its bin/ on PATH. The docs tests run this file as it is.
# Without DATABASE_URL / REDIS_URL, jobctl starts embedded servers in the project's .dev/.
set -euo pipefail

jobctl db upgrade                           # create (or update) the job tables
JOBS_IMPORTS=handlers jobctl worker &       # workers: your handlers (and job types)
JOBS_IMPORTS=jobs jobctl maintenance &      # relay, rescuer, pruner: your job types
trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT
python enqueue.py                           # enqueue, wait, ask
jobctl jobs list --tenant acme --type thumbnail
