"""The typed error hierarchy of arrwdb.

Every failure that a caller may see is one of these classes.  The HTTP layer maps them to a status
code and the API.md error body in exactly one place (``arrwdb.server.errors``); nothing else in the
code base decides a status code.
"""

from __future__ import annotations


class ArrwdbError(Exception):
    """Base class: ``type`` is the machine-readable error type, ``status`` its HTTP status."""

    type: str = "internal_error"
    status: int = 500

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param  # the request field at fault, when one is (OpenAI's ``error.param``)


class InvalidInput(ArrwdbError):
    """The request is well-formed JSON but its content is not acceptable (422)."""

    type = "invalid_input"
    status = 422


class BadRequest(ArrwdbError):
    """The request cannot be parsed at all: malformed JSON, a malformed cursor (400)."""

    type = "bad_request"
    status = 400


class UnknownModel(ArrwdbError):
    """A request names a model this server has not loaded (404, as OpenAI's ``model_not_found``)."""

    type = "model_not_found"
    status = 404


class Unauthorized(ArrwdbError):
    type = "unauthorized"
    status = 401


class NotFound(ArrwdbError):
    type = "not_found"
    status = 404


class Conflict(ArrwdbError):
    type = "conflict"
    status = 409


class RequestTimeout(ArrwdbError):
    """The request's body did not arrive within its deadline (a stalled or trickling upload)."""

    type = "request_timeout"
    status = 408


class PayloadTooLarge(ArrwdbError):
    type = "payload_too_large"
    status = 413


class Overloaded(ArrwdbError):
    """Admission refused: the queue is full.  ``retry_after_s`` becomes the Retry-After header."""

    type = "overloaded"
    status = 429

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(Overloaded):
    """The caller's key spent its rate limit (429 with Retry-After, like any overload)."""

    type = "rate_limited"


class NotReady(ArrwdbError):
    type = "not_ready"
    status = 503


class OutcomeUnknown(ArrwdbError):
    """A write was in flight when the engine process ended (or stopped answering): it may or may not
    have been applied.  The one error answer that does not mean "nothing was done": read back before
    writing again."""

    type = "outcome_unknown"
    status = 503


class ShardUnavailable(ArrwdbError):
    """An engine that holds a shard the request needs is down (Ray is restarting it): nothing was
    done; try again after ``retry_after_s``."""

    type = "shard_unavailable"
    status = 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StaleShardMap(ShardUnavailable):
    """A shard call reached an engine whose role for that shard differs from the caller's map (a
    promotion or a replica change the caller has not seen): nothing was done; the frontend reads the
    catalog again and retries."""


class PartialWrite(ArrwdbError):
    """A batch write to a sharded library that some shards committed and others did not (each shard's
    part is all or nothing): ``written`` lists the committed ids, ``unknown`` those whose shard ended
    during the write (read them back); the rest were not written."""

    type = "partial_write"
    status = 500

    def __init__(
        self,
        message: str,
        written: list[str] | None = None,
        unknown: list[str] | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.written = written or []
        self.unknown = unknown or []  # ids whose shard ended mid-write: they may or may not be there
        self.retry_after_s = retry_after_s  # when the shards that refused will be back (Retry-After)


class DeadlineExceeded(ArrwdbError):
    type = "deadline_exceeded"
    status = 504


class StorageFailure(ArrwdbError):
    """The store could not make a write durable (disk full, read-only directory)."""

    type = "storage_failure"
    status = 507


class WorkerFailure(ArrwdbError):
    """A device batch raised: every request in that batch gets this error."""

    type = "worker_failure"
    status = 500
