"""API tokens: their format and hash (tokens.py), and their storage (store.py), shared by
`jobctl tokens` and the HTTP API (pgjobs/api/auth.py)."""
