"""The dashboard in a real browser: a headless Chromium against a real API process and worker
(tests/apiserver.py, tests/browser.py)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from apiserver import Stack, token_for
from browser import browser, screenshot
from helpers import make_tenant

from pgjobs.db.models import TokenScope

pytestmark = pytest.mark.usefixtures("keys")
READ, WRITE = TokenScope.JOBS_READ, TokenScope.JOBS_WRITE


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    yield from browser()


@pytest.fixture
def tenant_a(db_env: str) -> uuid.UUID:
    return make_tenant()


def until(check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def sign_in(driver: Any, stack: Stack, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{stack.url}/ui/signin")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "signin").click()
    until(lambda: driver.current_url.endswith("/ui/overview"))


def enqueue(stack: Stack, token: str, **payload: Any) -> int:
    with stack.client(token) as client:
        answer = client.post("/v1/jobs", json={"type": "api_steps", "payload": payload})
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"])


def status_of(stack: Stack, token: str, job_id: int) -> str:
    with stack.client(token) as client:
        return str(client.get(f"/v1/jobs/{job_id}").json()["status"])


def started_twice(stack: Stack, token: str, job_id: int) -> bool:
    """Whether the job ran again (a retry from the page)."""
    with stack.client(token) as client:
        events = client.get(f"/v1/jobs/{job_id}/events").json()["items"]
    return sum(e["event_type"] == "started" for e in events) >= 2


def test_sign_in_and_security_headers(stack: Stack, driver: Any, tenant_a: uuid.UUID) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{stack.url}/ui/jobs")
    assert driver.current_url.endswith("/ui/signin")  # not signed in: sent to sign in
    driver.find_element(By.ID, "token").send_keys("pgj_nothing_wrong")
    driver.find_element(By.ID, "signin").click()
    until(lambda: "invalid token" in driver.page_source)
    screenshot(driver, "signin")
    sign_in(driver, stack, token_for(tenant_a))
    cookie = driver.get_cookie("pgjobs_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    headers = httpx.get(f"{stack.url}/ui/signin").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    driver.find_element(By.ID, "signout").click()
    until(lambda: driver.current_url.endswith("/ui/signin"))
    driver.get(f"{stack.url}/ui/jobs")
    assert driver.current_url.endswith("/ui/signin")  # the session is gone


def test_job_runs_with_live_progress(stack: Stack, driver: Any, tenant_a: uuid.UUID) -> None:
    from selenium.webdriver.common.by import By

    token = token_for(tenant_a)
    sign_in(driver, stack, token)
    job_id = enqueue(stack, token, steps=8, step_ms=400, note="hello")
    driver.get(f"{stack.url}/ui/jobs/{job_id}")
    seen: dict[int, float] = {}  # bar value -> when the page first showed it

    def finished() -> bool:
        value = int(driver.find_element(By.ID, "progress").get_attribute("value"))
        seen.setdefault(value, time.time())
        return driver.find_element(By.ID, "status").text == "succeeded"

    until(finished, timeout=30)
    assert len(set(seen) - {0, 100}) >= 2, seen  # the bar moved while the job ran, no reload
    with stack.client(token) as client:
        events = client.get(f"/v1/jobs/{job_id}/events").json()["items"]
    lags = [
        seen[e["data"]["percent"]] - datetime.fromisoformat(e["created_at"]).timestamp()
        for e in events
        if e["event_type"] == "progress" and e["data"]["percent"] in seen
    ]
    assert lags, seen
    print(f"progress commit -> bar moved: max {max(lags):.3f} s over {len(lags)} steps")
    # pushed by the job's event stream (Server-Sent Events), not the polling fallback
    assert driver.find_element(By.ID, "job").get_attribute("data-live") == "sse"
    driver.refresh()
    assert '"steps": 8' in driver.find_element(By.ID, "result").text
    events = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "table.events tr")]
    assert any(e.startswith("completed") for e in events), events
    screenshot(driver, "job")


def test_filter_and_bulk_retry(stack: Stack, driver: Any, tenant_a: uuid.UUID) -> None:
    from selenium.webdriver.common.by import By

    token = token_for(tenant_a)
    failing = [enqueue(stack, token, fail=True) for _ in range(3)]
    good = enqueue(stack, token)
    for job_id in [*failing, good]:
        until(lambda j=job_id: status_of(stack, token, j) in {"failed", "succeeded"})
    sign_in(driver, stack, token)
    assert driver.find_element(By.ID, "count-failed").text == "3"  # the overview's counts
    assert driver.find_element(By.ID, "count-succeeded").text == "1"
    screenshot(driver, "overview")
    driver.get(f"{stack.url}/ui/jobs")
    driver.find_element(By.CSS_SELECTOR, "input[name=status][value=failed]").click()
    driver.find_element(By.ID, "apply-filter").click()
    until(lambda: "status=failed" in driver.current_url)
    rows = driver.find_elements(By.CSS_SELECTOR, "tr.job")
    assert sorted(int(r.get_attribute("data-id")) for r in rows) == sorted(failing)
    screenshot(driver, "jobs")
    for box in driver.find_elements(By.CSS_SELECTOR, "input[name=job_id]"):
        box.click()
    driver.find_element(By.ID, "bulk-retry").click()
    result = until(lambda: driver.find_elements(By.ID, "bulk-result"))[0].text
    assert result.startswith("3 jobs retried"), result
    for job_id in failing:
        until(lambda j=job_id: started_twice(stack, token, j))


def delayed(stack: Stack, token: str) -> int:
    """A job due in an hour."""
    with stack.client(token) as client:
        answer = client.post("/v1/jobs", json={"type": "api_steps", "payload": {}, "delay": 3600})
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"])


def test_bulk_cancel_everything_the_filter_matches(
    stack: Stack, driver: Any, tenant_a: uuid.UUID
) -> None:
    from selenium.webdriver.common.by import By

    token = token_for(tenant_a)
    waiting = [delayed(stack, token) for _ in range(4)]
    done = enqueue(stack, token)
    until(lambda: status_of(stack, token, done) == "succeeded")
    theirs = delayed(stack, token_for(other := make_tenant()))
    sign_in(driver, stack, token)
    driver.get(f"{stack.url}/ui/jobs?status=pending&status=queued&status=succeeded")
    driver.find_element(By.ID, "cancel-matching").click()
    until(lambda: driver.find_elements(By.ID, "bulk-count"))
    assert driver.find_element(By.ID, "bulk-count").text == "4"  # the succeeded job cannot move
    screenshot(driver, "bulk-confirm")
    newer = delayed(stack, token)  # created after the count: not part of what was confirmed
    driver.find_element(By.ID, "confirm-bulk").click()
    result = until(lambda: driver.find_elements(By.ID, "bulk-result"))[0].text
    assert result.startswith("4 jobs cancelled"), result
    assert [status_of(stack, token, j) for j in waiting] == ["cancelled"] * 4
    assert status_of(stack, token, newer) in ("pending", "queued")
    assert status_of(stack, token, done) == "succeeded"
    assert status_of(stack, token_for(other), theirs) in ("pending", "queued")
    with stack.client(token) as client:
        events = client.get(f"/v1/jobs/{waiting[0]}/events").json()["items"]
    assert events[-1]["event_type"] == "cancelled"
    assert events[-1]["data"]["actor"].startswith("token:")  # the signed-in token acted
    csrf = driver.find_element(By.CSS_SELECTOR, "meta[name=csrf-token]").get_attribute("content")
    cookies = {"pgjobs_session": driver.get_cookie("pgjobs_session")["value"]}
    too_many = {"csrf_token": csrf, "action": "cancel", "job_id": list(range(1, 10_002))}
    refused = httpx.post(f"{stack.url}/ui/bulk", data=too_many, cookies=cookies)
    assert refused.status_code == 400 and "at most 10000" in refused.text
    assert status_of(stack, token, newer) in ("pending", "queued")


def test_run_now_for_a_delayed_job(stack: Stack, driver: Any, tenant_a: uuid.UUID) -> None:
    from selenium.webdriver.common.by import By

    token = token_for(tenant_a)
    job_id = delayed(stack, token)
    sign_in(driver, stack, token)
    driver.get(f"{stack.url}/ui/jobs/{job_id}")
    assert "due in" in driver.find_element(By.ID, "due").text
    screenshot(driver, "job-delayed")
    driver.find_element(By.ID, "run-now").click()
    until(lambda: status_of(stack, token, job_id) == "succeeded")
    driver.get(f"{stack.url}/ui/jobs/{job_id}")
    assert not driver.find_elements(By.ID, "run-now")  # not delayed any more
    assert "run now" in driver.find_element(By.CSS_SELECTOR, "table.events").text
    csrf = driver.find_element(By.CSS_SELECTOR, "meta[name=csrf-token]").get_attribute("content")
    cookies = {"pgjobs_session": driver.get_cookie("pgjobs_session")["value"]}
    again = httpx.post(
        f"{stack.url}/ui/jobs/{job_id}/run-now", data={"csrf_token": csrf}, cookies=cookies
    )
    assert again.status_code == 409 and "only a delayed job" in again.text


def test_cancel_a_running_job(stack: Stack, driver: Any, tenant_a: uuid.UUID) -> None:
    from selenium.webdriver.common.by import By

    token = token_for(tenant_a)
    job_id = enqueue(stack, token, steps=100, step_ms=200)
    until(lambda: status_of(stack, token, job_id) == "active")
    sign_in(driver, stack, token)
    driver.get(f"{stack.url}/ui/jobs/{job_id}")
    driver.find_element(By.ID, "cancel").click()
    until(lambda: status_of(stack, token, job_id) == "cancelled", timeout=30)


def test_read_only_token_cannot_act(stack: Stack, driver: Any, tenant_a: uuid.UUID) -> None:
    from selenium.webdriver.common.by import By

    writer = token_for(tenant_a)
    job_id = enqueue(stack, writer, fail=True)
    until(lambda: status_of(stack, writer, job_id) == "failed")
    sign_in(driver, stack, token_for(tenant_a, READ))
    driver.get(f"{stack.url}/ui/jobs/{job_id}")
    assert not driver.find_elements(By.ID, "retry")
    assert not driver.find_elements(By.ID, "cancel")
    csrf = driver.find_element(By.CSS_SELECTOR, "meta[name=csrf-token]").get_attribute("content")
    cookies = {"pgjobs_session": driver.get_cookie("pgjobs_session")["value"]}
    forged = httpx.post(
        f"{stack.url}/ui/jobs/{job_id}/retry", data={"csrf_token": csrf}, cookies=cookies
    )
    assert forged.status_code == 403
    assert status_of(stack, writer, job_id) == "failed"
    driver.get(f"{stack.url}/ui/jobs?status=failed")
    assert not driver.find_elements(By.ID, "retry-matching")
    for path, data in (
        ("bulk/matching", {"action": "retry", "status": "failed", "max_id": str(job_id)}),
        ("bulk", {"action": "retry", "job_id": str(job_id)}),
    ):
        refused = httpx.post(
            f"{stack.url}/ui/{path}", data={**data, "csrf_token": csrf}, cookies=cookies
        )
        assert refused.status_code == 403
    assert status_of(stack, writer, job_id) == "failed"


def test_request_without_csrf_token_is_refused(
    stack: Stack, driver: Any, tenant_a: uuid.UUID
) -> None:
    from selenium.webdriver.common.by import By

    token = token_for(tenant_a)
    job_id = enqueue(stack, token, fail=True)
    until(lambda: status_of(stack, token, job_id) == "failed")
    sign_in(driver, stack, token)
    driver.get(f"{stack.url}/ui/jobs/{job_id}")
    cookies = {"pgjobs_session": driver.get_cookie("pgjobs_session")["value"]}
    for data in ({}, {"csrf_token": "wrong"}):
        answer = httpx.post(f"{stack.url}/ui/jobs/{job_id}/retry", data=data, cookies=cookies)
        assert answer.status_code == 403
    assert status_of(stack, token, job_id) == "failed"
    driver.find_element(By.ID, "retry").click()  # the page's own form carries it
    until(lambda: started_twice(stack, token, job_id))


def test_other_tenants_job_is_not_found(stack: Stack, driver: Any, tenant_a: uuid.UUID) -> None:
    other = make_tenant()
    job_id = enqueue(stack, token_for(other))
    sign_in(driver, stack, token_for(tenant_a))
    driver.get(f"{stack.url}/ui/jobs/{job_id}")
    assert "no such job" in driver.page_source
    cookies = {"pgjobs_session": driver.get_cookie("pgjobs_session")["value"]}
    assert httpx.get(f"{stack.url}/ui/jobs/{job_id}", cookies=cookies).status_code == 404


def test_revoked_token_ends_its_session(stack: Stack, driver: Any, tenant_a: uuid.UUID) -> None:
    from pgjobs.auth.store import revoke_token

    token = token_for(tenant_a)
    sign_in(driver, stack, token)
    prefix = re.match(r"pgj_([a-z0-9]+)_", token)
    assert prefix is not None
    revoke_token(tenant_a, prefix.group(1))
    driver.get(f"{stack.url}/ui/jobs")
    assert driver.current_url.endswith("/ui/signin")


def test_credential_secret_is_never_rendered(
    stack: Stack, driver: Any, tenant_a: uuid.UUID
) -> None:
    from selenium.webdriver.common.by import By

    secret = "sk-" + uuid.uuid4().hex + "ZZsecretZZ"
    sign_in(driver, stack, token_for(tenant_a, TokenScope.ADMIN))
    driver.get(f"{stack.url}/ui/credentials")
    driver.find_element(By.ID, "name").send_keys("main")
    driver.find_element(By.ID, "secret").send_keys(secret)
    driver.find_element(By.ID, "save-credential").click()
    until(lambda: driver.find_elements(By.CSS_SELECTOR, "tr.credential"))
    row = driver.find_element(By.CSS_SELECTOR, "tr.credential").text
    assert "main" in row and secret[-4:] in row  # the vault's mask
    assert secret not in driver.page_source
    screenshot(driver, "credentials")


def test_tokens_page_shows_a_new_token_once(stack: Stack, driver: Any, tenant_a: uuid.UUID) -> None:
    from selenium.webdriver.common.by import By

    sign_in(driver, stack, token_for(tenant_a, TokenScope.ADMIN))
    driver.get(f"{stack.url}/ui/tokens")
    driver.find_element(By.ID, "token-name").send_keys("ci")
    driver.find_element(By.CSS_SELECTOR, "input[name=scope][value='jobs:read']").click()
    driver.find_element(By.ID, "create").click()
    raw = until(lambda: driver.find_elements(By.ID, "new-token"))[0].text
    with stack.client(raw) as client:
        assert client.get("/v1/jobs").status_code == 200
    driver.get(f"{stack.url}/ui/tokens")
    assert raw not in driver.page_source  # shown once only
    prefix = raw.split("_")[1]
    driver.find_element(By.ID, f"revoke-{prefix}").click()
    until(lambda: "revoked" in driver.page_source)
    screenshot(driver, "tokens")
    with stack.client(raw) as client:  # within the API's token cache time (1 s in the tests)
        until(lambda: client.get("/v1/jobs").status_code == 401)


def test_read_only_token_sees_no_admin_pages(
    stack: Stack, driver: Any, tenant_a: uuid.UUID
) -> None:
    sign_in(driver, stack, token_for(tenant_a, READ))
    cookies = {"pgjobs_session": driver.get_cookie("pgjobs_session")["value"]}
    assert httpx.get(f"{stack.url}/ui/credentials", cookies=cookies).status_code == 403
    assert httpx.get(f"{stack.url}/ui/tokens", cookies=cookies).status_code == 403


def test_schedules_pause_resume_and_run_now(stack: Stack, driver: Any, tenant_a: uuid.UUID) -> None:
    import api_jobs  # noqa: F401 - registers api_steps in this process
    from selenium.webdriver.common.by import By

    from pgjobs.schedules import api as schedules

    made = schedules.create(tenant_a, "every-minute", "api_steps", payload={}, every=60)
    sign_in(driver, stack, token_for(tenant_a))
    driver.get(f"{stack.url}/ui/schedules")
    row = driver.find_element(By.CSS_SELECTOR, "tr.schedule[data-name=every-minute]")
    row.find_element(By.CSS_SELECTOR, "button.run-now").click()
    until(lambda: schedules.get(tenant_a, made.id).last_job_id is not None)
    screenshot(driver, "schedules")
    driver.find_element(By.CSS_SELECTOR, "button.pause").click()
    until(lambda: schedules.get(tenant_a, made.id).status.value == "paused")
    driver.find_element(By.CSS_SELECTOR, "button.resume").click()
    until(lambda: schedules.get(tenant_a, made.id).status.value == "active")


def test_mcp_servers_page_pings_now(stack: Stack, driver: Any, tenant_a: uuid.UUID) -> None:
    from selenium.webdriver.common.by import By

    from pgjobs.mcp.registry import create_mcp_server, get_mcp_server

    server = create_mcp_server(tenant_a, label="docs-search", base_url="http://127.0.0.1:9/mcp")
    other = create_mcp_server(make_tenant(), label="theirs", base_url="http://127.0.0.1:9/mcp")
    sign_in(driver, stack, token_for(tenant_a, TokenScope.ADMIN))
    driver.get(f"{stack.url}/ui/mcp")
    row = driver.find_element(By.CSS_SELECTOR, "tr.mcp-server[data-label=docs-search]")
    assert "never" in row.text and "theirs" not in driver.page_source
    screenshot(driver, "mcp")
    row.find_element(By.CSS_SELECTOR, "button.ping").click()
    until(lambda: "/ui/jobs/" in driver.current_url)
    job_id = int(driver.current_url.rsplit("/", 1)[1])
    with stack.client(token_for(tenant_a)) as client:
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["type"] == "mcp_ping" and job["payload"]["server_id"] == str(server.id)
    until(lambda: get_mcp_server(tenant_a, server.id).last_ping_at is not None, timeout=60)

    # another tenant's server: refused like a missing one, and nothing enqueued
    cookies = {"pgjobs_session": driver.get_cookie("pgjobs_session")["value"]}
    page = httpx.get(f"{stack.url}/ui/mcp", cookies=cookies).text
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    refused = httpx.post(
        f"{stack.url}/ui/mcp/{other.id}/ping", data={"csrf_token": csrf}, cookies=cookies
    )
    assert refused.status_code == 400 and "not found" in refused.text.lower()
    with stack.client(token_for(tenant_a)) as client:
        assert client.get("/v1/counts", params={"type": "mcp_ping"}).json()["queued"] == 0
        assert sum(client.get("/v1/counts", params={"type": "mcp_ping"}).json().values()) == 1

    sign_in(driver, stack, token_for(tenant_a, READ))
    cookies = {"pgjobs_session": driver.get_cookie("pgjobs_session")["value"]}
    assert httpx.get(f"{stack.url}/ui/mcp", cookies=cookies).status_code == 403


def test_overview_shows_the_last_hour_queues_and_workers(
    stack: Stack, driver: Any, tenant_a: uuid.UUID
) -> None:
    from selenium.webdriver.common.by import By

    token = token_for(tenant_a)
    done = [enqueue(stack, token), enqueue(stack, token, fail=True)]
    with stack.client(token) as client:
        later = client.post(
            "/v1/jobs", json={"type": "api_steps", "payload": {}, "delay": 3600}
        ).json()["id"]
    until(lambda: all(status_of(stack, token, j) in ("succeeded", "failed") for j in done))
    sign_in(driver, stack, token)
    driver.get(f"{stack.url}/ui/overview")
    assert driver.find_element(By.ID, "finished-last-hour").text == "2"
    bars = driver.find_elements(By.CSS_SELECTOR, "svg.minutes title")
    assert len(bars) == 60 and any(
        "1 succeeded, 1 failed" in b.get_attribute("textContent") for b in bars
    )
    queue = driver.find_element(By.CSS_SELECTOR, "tr.queue[data-queue=apitest]").text
    assert queue.split()[:3] == ["apitest", "1", "0"], queue  # the delayed job waits, not due
    assert int(driver.find_element(By.ID, "worker-count").text) >= 1
    assert driver.find_element(By.ID, "relay-backlog").text == "0"
    assert status_of(stack, token, later) in ("pending", "queued")  # not due: not a backlog
    driver.execute_script("document.getElementById('last-hour').scrollIntoView()")
    screenshot(driver, "overview-last-hour")


def test_sign_in_needs_the_forms_csrf_token(stack: Stack, tenant_a: uuid.UUID) -> None:
    """Login CSRF: another site cannot sign a browser in with a token of its choosing."""
    token = token_for(tenant_a)
    url = f"{stack.url}/ui/signin"
    forged = httpx.post(url, data={"token": token})  # no form token, no cookie
    assert forged.status_code == 403 and "pgjobs_session" not in forged.cookies
    with httpx.Client() as browser_like:
        page = browser_like.get(url)
        csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        assert "pgjobs_signin" in browser_like.cookies
        wrong = browser_like.post(url, data={"token": token, "csrf_token": csrf[::-1]})
        assert wrong.status_code == 403 and "pgjobs_session" not in browser_like.cookies
        csrf = wrong.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        ok = browser_like.post(url, data={"token": token, "csrf_token": csrf})
        assert ok.status_code == 303 and "pgjobs_session" in browser_like.cookies, ok.text
    # a form token without its cookie (taken from another browser) is refused too
    assert httpx.post(url, data={"token": token, "csrf_token": csrf}).status_code == 403


def test_the_job_pages_event_stream_needs_the_session(
    stack: Stack, driver: Any, tenant_a: uuid.UUID
) -> None:
    token = token_for(tenant_a)
    job_id = enqueue(stack, token, steps=2)
    until(lambda: status_of(stack, token, job_id) == "succeeded")
    url = f"{stack.url}/ui/jobs/{job_id}/events"
    assert httpx.get(url).status_code == 401  # no session
    sign_in(driver, stack, token)
    cookies = {"pgjobs_session": driver.get_cookie("pgjobs_session")["value"]}
    answer = httpx.get(url, cookies=cookies, timeout=10)  # a finished job's stream ends
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    kinds = [
        line.split(": ", 1)[1] for line in answer.text.splitlines() if line.startswith("event:")
    ]
    assert kinds[0] == "enqueued" and kinds[-1] == "completed" and "progress" in kinds
    other = make_tenant()
    theirs = enqueue(stack, token_for(other))
    assert httpx.get(f"{stack.url}/ui/jobs/{theirs}/events", cookies=cookies).status_code == 404


def test_operator_switches_tenants_and_acts_as_itself(
    stack: Stack, driver: Any, tenant_a: uuid.UUID
) -> None:
    from selenium.webdriver.common.by import By

    from pgjobs.auth.store import authenticate, create_token

    slug = f"b-{uuid.uuid4().hex[:8]}"
    tenant_b = make_tenant(slug)
    theirs = enqueue(stack, token_for(tenant_b), fail=True)
    until(lambda: status_of(stack, token_for(tenant_b), theirs) == "failed")
    raw = create_token(tenant_a, name="ops", scopes=[READ, WRITE], operator=True).token
    operator = authenticate(raw)
    sign_in(driver, stack, raw)
    assert driver.find_element(By.ID, "current-tenant").get_attribute("title") == str(tenant_a)
    driver.get(f"{stack.url}/ui/jobs/{theirs}")
    assert "no such job" in driver.page_source  # its own tenant until it switches
    driver.find_element(By.ID, "switch-tenant").click()
    row = until(lambda: driver.find_elements(By.CSS_SELECTOR, f"tr.tenant[data-slug={slug}]"))[0]
    screenshot(driver, "tenants")
    row.find_element(By.CSS_SELECTOR, "button.switch").click()
    until(lambda: driver.current_url.endswith("/ui/overview"))
    assert driver.find_element(By.ID, "current-tenant").text == slug  # its slug once switched
    assert driver.find_element(By.ID, "current-tenant").get_attribute("title") == str(tenant_b)
    assert driver.find_elements(By.ID, "away")
    driver.get(f"{stack.url}/ui/jobs/{theirs}")
    driver.find_element(By.ID, "retry").click()
    until(lambda: started_twice(stack, token_for(tenant_b), theirs))
    with stack.client(token_for(tenant_b)) as client:
        events = client.get(f"/v1/jobs/{theirs}/events").json()["items"]
    retry = next(e for e in events if e["event_type"] == "retry" and e["data"].get("manual"))
    assert retry["data"]["actor"] == f"token:{operator.token_id}"  # the operator, by its token
    driver.get(f"{stack.url}/ui/tenants")  # and back home
    home = driver.find_element(By.CSS_SELECTOR, "tr.tenant:not([data-slug=" + slug + "])")
    assert home  # the page lists every tenant
    csrf = driver.find_element(By.CSS_SELECTOR, "meta[name=csrf-token]").get_attribute("content")
    cookies = {"pgjobs_session": driver.get_cookie("pgjobs_session")["value"]}
    back = httpx.post(
        f"{stack.url}/ui/tenants/{tenant_a}/switch", data={"csrf_token": csrf}, cookies=cookies
    )
    assert back.status_code == 303
    assert httpx.get(f"{stack.url}/ui/jobs/{theirs}", cookies=cookies).status_code == 404
    # a switch needs the CSRF token too, and an existing tenant
    url = f"{stack.url}/ui/tenants/{tenant_b}/switch"
    assert httpx.post(url, cookies=cookies).status_code == 403
    missing = f"{stack.url}/ui/tenants/{uuid.uuid4()}/switch"
    assert httpx.post(missing, data={"csrf_token": csrf}, cookies=cookies).status_code == 404


def test_ordinary_tokens_never_switch_tenants(
    stack: Stack, driver: Any, tenant_a: uuid.UUID
) -> None:
    from selenium.webdriver.common.by import By

    tenant_b = make_tenant()
    theirs = enqueue(stack, token_for(tenant_b))
    sign_in(driver, stack, token_for(tenant_a, TokenScope.ADMIN))  # admin is not operator
    assert not driver.find_elements(By.ID, "switch-tenant")
    csrf = driver.find_element(By.CSS_SELECTOR, "meta[name=csrf-token]").get_attribute("content")
    cookies = {"pgjobs_session": driver.get_cookie("pgjobs_session")["value"]}
    assert httpx.get(f"{stack.url}/ui/tenants", cookies=cookies).status_code == 403
    forged = httpx.post(
        f"{stack.url}/ui/tenants/{tenant_b}/switch", data={"csrf_token": csrf}, cookies=cookies
    )
    assert forged.status_code == 403
    assert httpx.get(f"{stack.url}/ui/jobs/{theirs}", cookies=cookies).status_code == 404
    # the tokens page cannot grant the operator scope either
    driver.get(f"{stack.url}/ui/tokens")
    assert not driver.find_elements(By.CSS_SELECTOR, "input[name=scope][value=operator]")
    made = httpx.post(
        f"{stack.url}/ui/tokens",
        data={"csrf_token": csrf, "name": "sneaky", "scope": "operator"},
        cookies=cookies,
    )
    assert 'id="new-token"' not in made.text and "operator scope cannot be granted" in made.text
    from pgjobs.auth.store import list_tokens

    assert all(TokenScope.OPERATOR not in t.scopes for t in list_tokens(tenant_a))


def test_a_session_record_naming_another_tenant_ends_an_ordinary_session(
    stack: Stack, tenant_a: uuid.UUID, server_urls: tuple[str, str]
) -> None:
    """Defence in depth: even a Redis record altered to name another tenant gives an ordinary
    token nothing; its session ends."""
    import hashlib
    import json

    import redis as redis_lib

    tenant_b = make_tenant()
    theirs = enqueue(stack, token_for(tenant_b))
    with httpx.Client(base_url=stack.url) as browser_like:
        page = browser_like.get("/ui/signin")
        csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        browser_like.post("/ui/signin", data={"token": token_for(tenant_a), "csrf_token": csrf})
        session_id = browser_like.cookies["pgjobs_session"]
        assert browser_like.get(f"/ui/jobs/{theirs}").status_code == 404
        client = redis_lib.Redis.from_url(server_urls[1])
        key = f"{stack.namespace}:ui:session:{hashlib.sha256(session_id.encode()).hexdigest()}"
        record = json.loads(client.get(key))  # type: ignore[arg-type]
        client.set(key, json.dumps(record | {"tenant_id": str(tenant_b)}))
        answer = browser_like.get(f"/ui/jobs/{theirs}")
        assert answer.status_code == 303 and answer.headers["location"].endswith("/ui/signin")
        assert client.get(key) is None  # the session is gone


def test_filter_by_time_range_and_idempotency_key(
    stack: Stack, driver: Any, tenant_a: uuid.UUID
) -> None:
    from selenium.webdriver.common.by import By

    token = token_for(tenant_a)
    key = f"order-{uuid.uuid4().hex[:8]}"
    with stack.client(token) as client:
        keyed = client.post(
            "/v1/jobs",
            json={"type": "api_steps", "payload": {}, "delay": 3600},
            headers={"Idempotency-Key": key},
        ).json()["id"]
    other = delayed(stack, token)
    sign_in(driver, stack, token)
    driver.get(f"{stack.url}/ui/jobs")
    driver.find_element(By.ID, "key-filter").send_keys(key)
    driver.find_element(By.ID, "apply-filter").click()
    until(lambda: "idempotency_key=" in driver.current_url)
    rows = driver.find_elements(By.CSS_SELECTOR, "tr.job")
    assert [int(r.get_attribute("data-id")) for r in rows] == [keyed]
    driver.find_element(By.ID, "cancel-matching").click()
    assert until(lambda: driver.find_elements(By.ID, "bulk-count"))[0].text == "1"
    driver.find_element(By.ID, "confirm-bulk").click()
    until(lambda: driver.find_elements(By.ID, "bulk-result"))
    assert status_of(stack, token, keyed) == "cancelled"
    assert status_of(stack, token, other) in ("pending", "queued")
    cookies = {"pgjobs_session": driver.get_cookie("pgjobs_session")["value"]}
    future = httpx.get(
        f"{stack.url}/ui/jobs", params={"created_after": "2999-01-01T00:00"}, cookies=cookies
    )
    assert future.status_code == 200 and "No jobs match." in future.text
    past = httpx.get(
        f"{stack.url}/ui/jobs",
        params={"created_before": "2000-01-01T00:00", "status": "queued"},
        cookies=cookies,
    )
    assert "No jobs match." in past.text
    bad = httpx.get(f"{stack.url}/ui/jobs", params={"created_after": "soon"}, cookies=cookies)
    assert bad.status_code == 400 and "created_after" in bad.text
