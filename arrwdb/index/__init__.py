"""Vector indexes: exact (torch kernels) and ANN (FAISS IVF and HNSW), behind one small protocol.

Every FAISS import in arrwdb goes through this package, so this is where FAISS's loader is quieted:
it logs at INFO each SIMD build it tries and cannot load (``ModuleNotFoundError`` for
``swigfaiss_avx512``, then ``swigfaiss_avx2``) before the one that works, six lines at every start
that read as failures.  Its warnings and errors still show.
"""

import logging

logging.getLogger("faiss.loader").setLevel(logging.WARNING)
