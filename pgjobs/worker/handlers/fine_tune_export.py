"""``fine_tune_export``: build a chat-format JSONL dataset and upload it to OpenAI's files API.

Each example becomes one line in OpenAI's chat fine-tuning format::

    {"messages": [{"role": "system", "content": <system_prompt>},   # only when given
                  {"role": "user", "content": <prompt>},
                  {"role": "assistant", "content": <completion>}]}

The file is uploaded as ``multipart/form-data`` to ``POST {openai_base_url}/files`` with
``purpose=fine-tune`` and the name ``<dataset_name>.jsonl``. The credential must be an ``openai``
one. Building reports progress every 10% of the examples (0-50%), the upload 60-100%.
"""

from __future__ import annotations

import json
from typing import Any

from pgjobs.db.models import Provider
from pgjobs.producer.builtin_types import FineTuneExample, FineTuneExportPayload, fine_tune_export
from pgjobs.settings import get_settings
from pgjobs.worker.context import JobContext
from pgjobs.worker.errors import PermanentError
from pgjobs.worker.handlers import http
from pgjobs.worker.handlers.credential_check import credential_secret, provider_credential
from pgjobs.worker.handlers.registry import handles

BUILD_PERCENT = 50
"""Progress reached when the JSONL is built; the upload takes the rest."""


def example_line(example: FineTuneExample, system_prompt: str | None) -> dict[str, Any]:
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": example.prompt})
    messages.append({"role": "assistant", "content": example.completion})
    return {"messages": messages}


def build_jsonl(ctx: JobContext[FineTuneExportPayload]) -> bytes:
    """The dataset as UTF-8 JSONL, reporting progress at every 10% of the examples."""
    payload = ctx.payload
    total = len(payload.examples)
    step = max(1, total // 10)
    lines: list[str] = []
    for index, example in enumerate(payload.examples, start=1):
        line = example_line(example, payload.system_prompt)
        lines.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
        if index % step == 0 or index == total:
            ctx.progress(index * BUILD_PERCENT / total, f"built {index}/{total} examples")
    return ("\n".join(lines) + "\n").encode("utf-8")


@handles(fine_tune_export)
def run(ctx: JobContext[FineTuneExportPayload]) -> dict[str, Any]:
    payload = ctx.payload
    provider_credential(ctx.tenant_id, payload.credential_id, {Provider.OPENAI})
    ctx.progress(0, f"building {len(payload.examples)} examples")
    data = build_jsonl(ctx)

    filename = f"{payload.dataset_name}.jsonl"
    url = f"{get_settings().openai_base_url.rstrip('/')}/files"
    action = "file upload"
    ctx.progress(60, f"uploading {filename} ({len(data)} bytes)")
    with http.client() as client, credential_secret(ctx, payload.credential_id) as secret:
        response = http.send(
            client,
            "POST",
            url,
            provider="openai",
            action=action,
            headers={"Authorization": http.bearer(secret.reveal())},
            data={"purpose": "fine-tune"},
            files={"file": (filename, data, "application/jsonl")},
        )
    http.check_status(response, provider="openai", action=action)
    body = http.json_body(response, provider="openai", action=action)
    file_id = body.get("id") if isinstance(body, dict) else None
    if not isinstance(file_id, str) or not file_id:
        # Not retried: the upload may have worked, and a retry would upload a second copy.
        raise PermanentError("openai: file upload answered without a file id")
    ctx.progress(100, f"uploaded as {file_id}")
    return {
        "file_id": file_id,
        "filename": filename,
        "bytes": len(data),
        "examples": len(payload.examples),
        "dataset_name": payload.dataset_name,
    }
