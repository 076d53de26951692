"""The HTTP API (``jobctl api``): an ASGI application over ``pgjobs.aio``.

app.py builds it; auth.py admits callers (tokens, scopes, rate limit); problems.py turns every
error into RFC 9457 problem details; routes/ holds one module per resource. The event streams
are served by the process's one event feed (pgjobs/aio/feed.py).
"""
