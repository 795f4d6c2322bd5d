"""The runtime an engine runs on: the micro-batching scheduler and its batch jobs, the device worker
thread, the device, admission, rate limits, telemetry, and the process's CPU/GPU tuning
(``tuning.py`` holds every knob)."""
