"""The crash harness, short: two SIGKILLs of a real ``arrwdb serve`` under concurrent writers (one
during an HNSW build, one aimed at a snapshot write), each followed by a restart and a full check of
every acknowledged write.  The long run is ``python -m tests.reliability.crash --rounds 50``."""

from __future__ import annotations

from tests.reliability.crash import run


def test_acknowledged_writes_survive_sigkill(tmp_path):
    report = run(rounds=2, writers=3, seed=7, work_dir=tmp_path, modes=("build", "snapshot"))
    assert report.failures == []
    assert report.kills == 2 and report.rounds == 2
    assert report.kills_during_build >= 1
    # Every document of the ledger (each one ever acknowledged among them) is read back after every
    # restart; a mismatch is one of ``failures``.  (``acknowledged_docs`` counts writes, rewrites of one
    # id included, ``docs_verified`` distinct documents per check: the two are not comparable.)
    assert report.acknowledged_docs > 0 and report.docs_verified > 0
    assert report.searches_verified > 0
    assert report.integrity_checks == 3
    assert report.error_answers == {}


def test_acknowledged_writes_survive_sigkill_of_the_engine_process(tmp_path):
    """The engine process alone killed under the writers: the HTTP workers answer 503 while the
    parent restarts it, and every acknowledged write is there afterwards."""
    report = run(rounds=2, writers=3, seed=11, work_dir=tmp_path, modes=("random", "build"), target="engine")
    assert report.failures == []
    assert report.kills == 2 and report.rounds == 2
    # Every document of the ledger (each one ever acknowledged among them) is read back after every
    # restart; a mismatch is one of ``failures``.  (``acknowledged_docs`` counts writes, rewrites of one
    # id included, ``docs_verified`` distinct documents per check: the two are not comparable.)
    assert report.acknowledged_docs > 0 and report.docs_verified > 0
    assert report.searches_verified > 0
    assert report.error_answers == {}
