"""The web dashboard: server-rendered pages over the API's own functions (docs/ui.md).

Only the API process imports this package (Jinja2 stays out of the worker's import graph).
"""

from pgjobs.ui.app import create_ui_app

__all__ = ["create_ui_app"]
