"""The keyword index: one SQLite FTS5 table per library over its chunks' texts, ranked by BM25.

One table per library keeps BM25's term statistics (document frequencies, average length) per
library.  A row's rowid is the chunk's row id (the vector's id), so a keyword hit names the same row
a vector hit does.  Rows are written and deleted by the statements that write the chunks, inside the
same transaction: a keyword search sees exactly the committed documents (durable, read-your-writes).

The table keeps its own copy of each chunk's text (a regular FTS5 table): SQLite 3.40 has no
``contentless_delete``, and a chunk's text is a slice of its document's, so no table can serve as
external content.  User text never reaches ``MATCH`` as syntax: it is split into words here and each
word is a quoted string (``match_expression``), so no input is a query syntax error.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

# Porter stemming over unicode61 (case folding, diacritics removed): "running" matches "runs".
_TOKENIZER = "porter unicode61 remove_diacritics 2"
_WORD = re.compile(r"\w+")
MAX_TERMS = 256  # distinct words of one query; more are a 4xx (arrwdb.library.retrieval.check_keywords)
_PAGE = 256  # rows read at a time from a filtered query's ranked matches


def table_name(library_id: str) -> str:
    """The quoted name of the library's FTS5 table (a library id never holds a quote, but the name
    is quoted as an identifier all the same)."""
    return '"kw_' + library_id.replace('"', '""') + '"'


def create_table(conn: sqlite3.Connection, library_id: str) -> None:
    conn.execute(
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {table_name(library_id)} USING fts5(text, tokenize = '{_TOKENIZER}')"
    )


def drop_table(conn: sqlite3.Connection, library_id: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {table_name(library_id)}")


def table_exists(conn: sqlite3.Connection, library_id: str) -> bool:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", ("kw_" + library_id,)
    ).fetchone()
    return found is not None


def insert_rows(conn: sqlite3.Connection, library_id: str, rows: Iterable[tuple[int, str]]) -> None:
    """Index (row id, chunk text) pairs; empty texts are left out (they match nothing)."""
    conn.executemany(
        f"INSERT INTO {table_name(library_id)} (rowid, text) VALUES (?, ?)",
        [(row_id, text) for row_id, text in rows if text],
    )


def delete_rows(conn: sqlite3.Connection, library_id: str, row_ids: Sequence[int]) -> None:
    if row_ids:
        conn.executemany(f"DELETE FROM {table_name(library_id)} WHERE rowid = ?", [(int(r),) for r in row_ids])


def rebuild(conn: sqlite3.Connection, library_id: str) -> int:
    """Create the library's table if it is missing and index every chunk with a text (recovery: a
    store written before the keyword index existed, or whose table was lost).  Returns the rows indexed.
    Runs inside the caller's transaction."""
    drop_table(conn, library_id)
    create_table(conn, library_id)
    cursor = conn.execute(
        'SELECT c.row_id, substr(d.text, c.start + 1, c."end" - c.start) FROM chunks c'
        " JOIN documents d ON d.library_id = c.library_id AND d.id = c.doc_id"
        " WHERE c.library_id = ? AND d.text IS NOT NULL",
        (library_id,),
    )
    rows = [(row_id, text) for row_id, text in cursor if text]
    insert_rows(conn, library_id, rows)
    return len(rows)


def query_words(text: str) -> tuple[str, ...]:
    """The distinct words of a query's text, lower-cased, in order (none: it matches nothing)."""
    return tuple(dict.fromkeys(word.lower() for word in _WORD.findall(text)))


def match_expression(words: Sequence[str]) -> str:
    """An FTS5 query matching a chunk that holds any of ``words`` (Elasticsearch's ``match``): each
    word a quoted string (a quote inside doubled), joined by OR: no input is FTS5 syntax."""
    return " OR ".join('"' + word.replace('"', '""') + '"' for word in words)


def count_terms(text: str) -> int:
    return len(query_words(text))


def _varint(data: bytes, at: int) -> int:
    """SQLite's variable-length integer at ``data[at:]`` (the format of FTS5's own records)."""
    value = 0
    for n in range(8):
        byte = data[at + n]
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value
    return (value << 8) | data[at + 8]


def indexed_rows(conn: sqlite3.Connection, library_id: str) -> int:
    """Rows in the index, from FTS5's averages record (row 1 of ``_data``): O(1), unlike COUNT(*)."""
    shadow = '"kw_' + library_id.replace('"', '""') + '_data"'
    found = conn.execute(f"SELECT block FROM {shadow} WHERE id = 1").fetchone()
    return _varint(found[0], 0) if found is not None and found[0] else 0


def frequency(conn: sqlite3.Connection, library_id: str, word: str) -> int:
    """Rows holding ``word``."""
    table = table_name(library_id)
    count = f"SELECT COUNT(*) FROM {table} WHERE {table} MATCH ?"
    return int(conn.execute(count, (match_expression([word]),)).fetchone()[0])


def useful_among(words: Sequence[str], frequencies: Mapping[str, int], rows: int) -> list[str]:
    """``words`` without those in half the ``rows`` or more: FTS5's BM25 gives such a word an IDF of
    log((N - n + 0.5) / (n + 0.5)) <= 0, floored at 1e-6, so it adds nothing to a score while its
    matches make FTS5 score and sort most of the library (a verse-long query on 8,000 verses: 10 ms
    with them, 5.7 without, the same top hits).  All of them when every word is that common."""
    if len(words) < 2 or rows < 2:
        return list(words)
    kept = [word for word in words if 2 * frequencies[word] < rows]
    return kept or list(words)


def useful_words(conn: sqlite3.Connection, library_id: str, words: Sequence[str]) -> list[str]:
    """``useful_among`` with each word's frequency counted in the index."""
    rows = indexed_rows(conn, library_id)
    if len(words) < 2 or rows < 2:
        return list(words)
    return useful_among(words, {word: frequency(conn, library_id, word) for word in words}, rows)


def search(
    conn: sqlite3.Connection, library_id: str, words: Sequence[str], limit: int, allowed: np.ndarray | None
) -> list[tuple[int, float]]:
    """The best ``limit`` (row id, score) pairs for chunks holding any of ``words`` (those of
    ``useful_words``), best first; the score is BM25 made higher-is-better (SQLite's ``bm25()`` is
    lower-is-better).  With ``allowed`` (sorted row ids a filter lets through), only those rows."""
    if not words or (allowed is not None and len(allowed) == 0):
        return []
    return ranked(conn, library_id, useful_words(conn, library_id, words), limit, allowed)


def ranked(
    conn: sqlite3.Connection, library_id: str, words: Sequence[str], limit: int, allowed: np.ndarray | None
) -> list[tuple[int, float]]:
    """``search`` for words already chosen, by one FTS5 query over their OR.  With ``allowed``, the
    ranked matches are read in pages until ``limit`` of them are found, so a filtered search returns
    up to ``limit`` matching rows and never one that does not match."""
    found: list[tuple[int, float]] = []
    if not words or (allowed is not None and len(allowed) == 0):
        return found
    expression = match_expression(words)
    table = table_name(library_id)
    sql = f"SELECT rowid, rank FROM {table} WHERE {table} MATCH ? ORDER BY rank"
    if allowed is None:
        rows = conn.execute(sql + " LIMIT ?", (expression, limit)).fetchall()
        return [(int(row_id), -float(rank)) for row_id, rank in rows]
    cursor = conn.execute(sql, (expression,))
    try:
        while len(found) < limit:
            page = cursor.fetchmany(_PAGE)
            if not page:
                break
            ids = np.fromiter((row[0] for row in page), dtype=np.int64, count=len(page))
            at = np.searchsorted(allowed, ids)
            ok = (at < len(allowed)) & (allowed[np.minimum(at, len(allowed) - 1)] == ids)
            found.extend((int(row[0]), -float(row[1])) for row, keep in zip(page, ok.tolist(), strict=True) if keep)
    finally:
        cursor.close()
    return found[:limit]


def size(conn: sqlite3.Connection, library_id: str) -> dict[str, int]:
    """Rows in the library's keyword index (one ``_docsize`` entry each) and the bytes of its tables'
    pages (SQLite's ``dbstat``; where it is not compiled in, the texts' and index blocks' lengths)."""
    prefix = "kw_" + library_id
    shadow = '"' + prefix.replace('"', '""')
    (rows,) = conn.execute(f'SELECT COUNT(*) FROM {shadow}_docsize"').fetchone()
    try:
        (pages,) = conn.execute(
            "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN (?, ?, ?, ?, ?) AND aggregate = TRUE",
            tuple(prefix + suffix for suffix in ("_data", "_idx", "_content", "_docsize", "_config")),
        ).fetchone()
    except sqlite3.OperationalError:  # no dbstat in this SQLite
        (text,) = conn.execute(f'SELECT COALESCE(SUM(length(CAST(c0 AS BLOB))), 0) FROM {shadow}_content"').fetchone()
        (blocks,) = conn.execute(f'SELECT COALESCE(SUM(length(block)), 0) FROM {shadow}_data"').fetchone()
        pages = int(text) + int(blocks)
    return {"rows": int(rows), "bytes": int(pages)}
