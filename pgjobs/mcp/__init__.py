"""MCP server settings, kept beside the credentials they authenticate with (registry.py)."""
