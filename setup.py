"""The package list, found rather than kept by hand: ``arrwdb`` and its subpackages, and the top-level
folders that install inside its namespace (pyproject.toml's ``package-dir`` maps them)."""

from setuptools import find_packages, setup

MAPPED = {"arrwdb.kernels": "kernels", "arrwdb.server": "server", "arrwdb.bench": "bench"}


def _mapped(namespace: str, folder: str) -> list[str]:
    return [namespace, *(f"{namespace}.{name}" for name in find_packages(folder))]


setup(
    packages=[
        *find_packages(include=["arrwdb", "arrwdb.*"]),
        *(name for namespace, folder in MAPPED.items() for name in _mapped(namespace, folder)),
    ]
)
