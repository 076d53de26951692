"""PostgreSQL and Redis: where they are (locate.py), the embedded ones for a machine that has
neither (embedded.py), starting what a local command needs (local.py), and health checks
(health.py)."""
