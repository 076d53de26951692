"""``jobctl``: the operator's command line (main.py), one module per command group."""
