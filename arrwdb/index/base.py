"""The index protocol: one ``search`` shape for every index type, on the CPU and on a GPU.

Ids are the store's chunk row ids (int64, never reused).  ``search`` returns
``(scores[n, k] float32, ids[n, k] int64)``, best first, higher score = closer, id -1 for a slot
that has no eligible vector.  ``allowed`` restricts a search to the given row ids (a metadata filter)
inside the search, so k eligible hits come back whenever k exist.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Index(Protocol):
    dimension: int
    metric: str

    def add(self, row_ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, row_ids: np.ndarray) -> None: ...

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        params: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def __len__(self) -> int: ...

    def exact_rows(self) -> int:
        """Rows an unfiltered search scans exactly: every row of an exact index, the rows an ANN index
        does not hold yet."""
        ...

    def memory_bytes(self) -> int: ...

    def statistics(self) -> dict[str, Any]: ...
