"""`arrwdb bench peers`: arrwdb beside Chroma, Milvus Lite and Infinity on the same data and queries.

Each peer lives in a venv of its own under ``.peers/`` (created with pip on first use), because the
peers pin their own fastapi, numpy, onnxruntime, tokenizers...  arrwdb's venv never receives them.
Chroma and Infinity run as servers on loopback and get their load over HTTP from this process, with
the same load generator as arrwdb; Milvus Lite is embedded, so a driver script runs inside its venv
and reports timings as JSON.
"""
