"""Checkpoints off the commit path: a thread of its own folds the WAL back into the database file.

SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold (1,000 pages), so every
second or third 1,000-document import paid for copying the log into the database and fsyncing it: 2.3
ms a request on average, a tenth of its transaction.  Here the writer's threshold is raised to a
backstop, and after commits this thread runs a PASSIVE checkpoint on its own connection (at most one
every ``min_interval_s``), while the writer goes on with the next transaction.  A PASSIVE checkpoint
never blocks the writer or readers; what it cannot copy yet is copied by the next one.  Once a
checkpoint has copied the whole log, the writer starts the log again from its beginning, so the WAL
stays the size of a few transactions.  Should this thread fall behind, the writer's own automatic
checkpoint at the backstop keeps the log bounded, as before.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

from arrwdb.runtime.thread_priority import lower_this_thread

log = logging.getLogger("arrwdb.store.store")

# The writer's own automatic checkpoint, kept as a backstop: 32 MiB of log at 8 KiB pages.
BACKSTOP_PAGES = 4096


class WalCheckpointer:
    def __init__(self, connect: Callable[[], sqlite3.Connection], min_interval_s: float = 0.05) -> None:
        self._connect = connect
        self._min_interval_s = min_interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="arrwdb-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """Called after each commit: there is log to fold back."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _main(self) -> None:
        lower_this_thread()
        try:
            conn = self._connect()
        except sqlite3.Error as exc:  # the writer's backstop checkpoint still bounds the log
            log.warning("background WAL checkpoints are off: %s", exc)
            return
        try:
            while True:
                self._wake.wait()
                if self._stop.is_set():
                    return
                self._wake.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the writer's backstop checkpoint still bounds the log
                    log.warning("background WAL checkpoint failed: %s", exc)
                # Commits arriving meanwhile set the event again; waiting here lets a burst of small
                # transactions share one checkpoint instead of an fsync of the database each.
                if self._stop.wait(self._min_interval_s):
                    return
        finally:
            conn.close()
