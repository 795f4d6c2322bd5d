"""The store: the SQLite file that is the source of truth (libraries, documents, chunks, vectors, keys,
the keyword index), its group-commit writer and its WAL checkpointer.  Nothing here imports torch."""
