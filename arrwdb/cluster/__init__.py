"""Engines on a Ray cluster: placement, the catalog, sharded libraries and their frontend."""
