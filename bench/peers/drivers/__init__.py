"""Scripts run by a peer's own venv python (never imported by arrwdb)."""
