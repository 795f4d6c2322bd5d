"""Admission decided once per request, at the door.

The HTTP layer decides whether a search or embed request may wait for the device as soon as its
headers are parsed (``server/admission.py``), and an admitted request holds an ``AdmissionTicket``
from then on: its place counts against ``ARRWDB_MAX_QUEUE`` (``Scheduler.full``) until its items are
queued, which take the place over, or until the request ends without queuing anything (a bad body, a
missing library).  Its submits are not asked again: asked again at submit time, some requests were let
in at the door and refused after their body was read, when the queue had filled meanwhile (under
twice the saturating load on 2 cores: 3-14% of the refusals, and the slowest, 14-49 ms at p99 where
the door's took 5-19 ms).  The ticket travels in a context variable, set for the request's task by the gate.
"""

from __future__ import annotations

from contextvars import ContextVar


class AdmissionTicket:
    """One admitted request's place, held until its items are queued or it ends: ``release`` is
    idempotent, and only the first call gives the place back."""

    __slots__ = ("_places", "held")

    def __init__(self, places: ReservedPlaces) -> None:
        self._places = places
        self.held = True
        places.count += 1

    def release(self) -> None:
        if self.held:
            self.held = False
            self._places.count -= 1


class ReservedPlaces:
    """How many admitted requests have not queued their items yet (the scheduler counts them as waiting)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


# The ticket of the request the current task serves; None for callers that were not admitted at the
# door (the engine called in process, inserts): the scheduler then asks itself.
ADMITTED: ContextVar[AdmissionTicket | None] = ContextVar("arrwdb_admitted", default=None)
