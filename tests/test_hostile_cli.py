"""Hostile input to `jobctl enqueue` and `jobctl jobs ...`: no traceback, ever.

Every invocation ends with exit 0, or 1 and one line ``Error: ...`` (a refused value), or 2 (a
usage error click reports), and a refused one writes nothing. The property tests run the
commands in-process (CliRunner, many examples); the regressions also run the real `jobctl`
process, where a traceback would reach the operator's terminal.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import jobctl
from hostile import (
    PROPERTY,
    Arguments,
    cursor_of,
    cursors,
    hostile_text,
    huge_ints,
    row_counts,
)
from hypothesis import event, given
from hypothesis import strategies as st
from test_hostile_input import insert_far_rows, job_id

from pgjobs.cli.groups import JobsGroup
from pgjobs.cli.job_commands import enqueue, jobs
from pgjobs.db.tenants import get_tenant

pytestmark = pytest.mark.usefixtures("jobs_env")
assert job_id  # a fixture, for the tests below

cli = JobsGroup("jobctl", commands=[enqueue, jobs])

PREVIEW = {"credential_id": str(uuid.uuid4()), "season": 2026, "team": "Navy"}

# command-line values: what a shell can pass (no NUL) and what an in-process caller can
cli_text = hostile_text.filter(lambda s: not s.startswith("-"))
number_words = st.one_of(
    st.sampled_from(
        ["inf", "-inf", "nan", "1e400", "1e12", "-1", "0", "1.5", "0x10", "", "\u0661"]
    ),
    huge_ints.map(str),
    st.integers(-5, 10**6).map(str),
)
json_texts = st.one_of(
    st.just(json.dumps(PREVIEW)),
    st.builds(lambda team: json.dumps({**PREVIEW, "team": team}), hostile_text),
    st.sampled_from(
        [
            '{"team": "\\u0000"}',  # NUL, as JSON writes it
            '{"team": "\\ud800"}',  # a lone surrogate, as JSON writes it
            '{"a": NaN}',
            '{"a": ' + "9" * 5000 + "}",
            "[1, 2]",
            "{",
            "",
            "null",
        ]
    ),
    st.integers(100, 10_000).map(lambda depth: '{"k": [' * depth + "1" + "]}" * depth),
    cli_text,
)
file_bytes = st.one_of(
    json_texts.map(lambda t: t.encode(errors="surrogatepass")),
    st.binary(max_size=64),
    st.just(b"\xff\xfe{}"),
    st.just(("[" * 10_000 + "]" * 10_000).encode()),
)


def run(args: list[str], stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, args, input=stdin)


def answered_cleanly(result: Result, before: tuple[int, int]) -> None:
    """Exit 0, 1 with one ``Error:`` line, or 2 (usage); no traceback; nothing written unless
    the command succeeded."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1, 2), result.output
    event(f"exit {result.exit_code}: {result.output.strip()[-40:] if result.exit_code else ''}")
    if result.exit_code == 1:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    if result.exit_code != 0:
        assert row_counts() == before


def slug(tenant_id: uuid.UUID) -> str:
    return get_tenant(tenant_id).slug


@PROPERTY
@given(data=st.data())
def test_enqueue_command_answers_hostile_input(tenant_id: uuid.UUID, data: st.DataObject) -> None:
    args = Arguments(data, "type", "tenant", "payload", "file", "key", "delay", "priority", "tries")
    tenant = args.draw("tenant", st.sampled_from([slug(tenant_id), str(tenant_id)]), cli_text)
    argv = [
        "enqueue",
        args.draw("type", st.just("scheduled_preview"), cli_text),
        "--tenant",
        tenant,
    ]
    stdin = None
    from_file = args.target == "file" or (args.target != "payload" and data.draw(st.booleans()))
    if not from_file:
        argv += ["--payload", args.draw("payload", st.just(json.dumps(PREVIEW)), json_texts)]
    else:
        argv += ["--payload-file", "-"]
        stdin = args.draw("file", st.just(json.dumps(PREVIEW).encode()), file_bytes)
    for option, name, valid in [
        ("--idempotency-key", "key", st.text("abc", min_size=1, max_size=5)),
        ("--delay", "delay", st.sampled_from(["0", "1.5", "60"])),
        ("--priority", "priority", st.sampled_from(["0", "-3", "7"])),
        ("--max-attempts", "tries", st.sampled_from(["1", "5"])),
    ]:
        value = args.draw(name, st.none() | valid, cli_text | number_words)
        if value is not None:
            argv += [option, value]
    before = row_counts()
    answered_cleanly(run(argv, stdin), before)


@PROPERTY
@given(data=st.data())
def test_jobs_commands_answer_hostile_input(
    tenant_id: uuid.UUID, job_id: int, data: st.DataObject
) -> None:
    args = Arguments(data, "tenant", "id", "cursor", "limit", "type", "reason")
    tenant = args.draw("tenant", st.just(slug(tenant_id)), cli_text)
    job = args.draw("id", st.just(str(job_id)), cli_text | number_words)
    command = data.draw(st.sampled_from(["list", "show", "events", "counts", "cancel", "retry"]))
    argv = ["jobs", command, "--tenant", tenant]
    if command == "list":
        argv += [
            "--cursor",
            args.draw("cursor", st.integers(0, 10**6).map(cursor_of), cursors.filter(_is_text)),
            "--limit",
            args.draw("limit", st.sampled_from(["1", "20"]), number_words),
            "--type",
            args.draw("type", st.just("scheduled_preview"), cli_text),
        ]
    elif command == "counts":
        argv += ["--type", args.draw("type", st.just("scheduled_preview"), cli_text)]
    elif command == "cancel":
        argv += [job, "--reason", args.draw("reason", st.just("no longer needed"), cli_text)]
    elif command != "list":
        argv.append(job)
    before = row_counts()
    answered_cleanly(run(argv), before)


def _is_text(value: object) -> bool:
    return isinstance(value, str) and not value.startswith("-")


# --- regressions --------------------------------------------------------------------------------


def refused_in_one_line(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"Error: {message}"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (("[" * 10_000 + "]" * 10_000).encode(), "--payload-file is nested too deeply"),
        (b'{"team": "\xff"}', "--payload-file is not UTF-8 text (byte 10)"),
        (bytes(range(256)), "--payload-file is not UTF-8 text (byte 128)"),
    ],
    ids=["nesting", "latin-1", "binary"],
)
def test_bad_payload_files_are_one_line_errors(
    tenant_id: uuid.UUID, tmp_path: Path, content: bytes, message: str
) -> None:
    before = row_counts()
    path = tmp_path / "payload.json"
    path.write_bytes(content)
    tenant = str(tenant_id)
    refused_in_one_line(
        jobctl("enqueue", "scheduled_preview", "--tenant", tenant, "--payload-file", str(path)),
        message,
    )
    refused_in_one_line(
        jobctl(
            "enqueue", "scheduled_preview", "--tenant", tenant, "--payload-file", "-", stdin=content
        ),
        message,
    )
    assert row_counts() == before


def test_far_future_rows_list_in_the_real_cli(tenant_id: uuid.UUID) -> None:
    ids = insert_far_rows(tenant_id)
    listed = jobctl("jobs", "list", "--tenant", str(tenant_id), "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(job["id"] for job in json.loads(listed.stdout)["items"]) == ids
    table = jobctl("jobs", "list", "--tenant", str(tenant_id), tz="Pacific/Kiritimati")
    assert table.returncode == 0, table.stderr
    assert all(str(far) in table.stdout for far in ids)
    shown = run(["jobs", "show", str(ids[0]), "--tenant", str(tenant_id)])
    assert shown.exit_code == 0, shown.output
    assert "9999-12-31" in shown.output


def test_far_future_delay_from_the_cli_writes_nothing(tenant_id: uuid.UUID) -> None:
    before = row_counts()
    payload = json.dumps(PREVIEW)
    for delay in ("1e12", "inf"):
        proc = jobctl(
            "enqueue", "scheduled_preview", "--tenant", str(tenant_id), "--payload", payload,
            "--delay", delay,
        )  # fmt: skip
        refused_in_one_line(proc, "delay must end before 9999-01-01 (UTC)")
    assert row_counts() == before
    assert jobctl("jobs", "list", "--tenant", str(tenant_id)).returncode == 0
