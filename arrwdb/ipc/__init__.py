"""The engine protocol: HTTP worker processes talk to the engine process over ZMQ (``wire`` is the
message format, ``board`` the shared page of engine state, ``remote`` the worker's side, ``service``
the engine's side)."""
