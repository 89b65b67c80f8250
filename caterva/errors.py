"""Every error caterva raises, with the stable code it travels under.

    CatervaError
    ├── BadRequest           (ValueError)        bad_request           400
    │   ├── InvalidName                          invalid_name          400
    │   ├── BadSelection     (IndexError too)    bad_selection         400
    │   ├── BadCursor                            bad_cursor            400
    │   ├── TargetExists     (FileExistsError)   target_exists         400  (client only)
    │   └── BodyTooLarge                         body_too_large        413
    ├── ProtocolError        (ValueError)        protocol_error        502
    │   ├── DigestMismatch                       digest_mismatch       502
    │   └── UntrustedSource                      untrusted_source      502
    │       └── KeyChanged                       key_changed           502
    ├── NotFound             (LookupError)       not_found             404
    │   ├── UnknownRoot                          unknown_root          404
    │   ├── UnknownDataset   (FileNotFoundError) unknown_dataset       404
    │   └── ChunkOutOfRange  (IndexError)        chunk_out_of_range    404
    ├── NotFollowed                              not_followed          409
    ├── DatasetChanged                           dataset_changed       409
    ├── PinTooLarge                              pin_too_large         409
    ├── Unauthorized         (PermissionError)   unauthorized          401
    │   ├── BadCredentials                       bad_credentials       401
    │   └── TokenExpired                         token_expired         401
    ├── Forbidden            (PermissionError)   forbidden             403
    ├── Unavailable          (ConnectionError)   unavailable           503
    │   ├── SourceOffline                        source_offline        503
    │   ├── SourceRefused                        source_refused        502
    │   └── BrokerUnavailable                    broker_unavailable    503
    ├── StateError           (RuntimeError)      state_error           500
    └── NotSupported                             not_supported         501

Errors are also the builtins callers already catch (a missing dataset is a
FileNotFoundError). Over HTTP an error is ``{"error": {"code": ..., "message": ...}}``
with the status above; ``from_response`` turns such a body back into the same class.
"""

from __future__ import annotations

import json
from typing import Any


class CatervaError(Exception):
    code = "caterva_error"
    status = 500

    def __init__(self, message: str = "", **detail: Any) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self.detail = detail

    def __str__(self) -> str:
        return self.message

    def to_payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail:
            body["detail"] = self.detail
        return {"error": body}


class BadRequest(CatervaError, ValueError):
    code, status = "bad_request", 400


class InvalidName(BadRequest):
    code, status = "invalid_name", 400


class BadSelection(BadRequest, IndexError):
    code, status = "bad_selection", 400


class BadCursor(BadRequest):
    """A listing's cursor that no answer of this service gave."""

    code, status = "bad_cursor", 400


class TargetExists(BadRequest, FileExistsError):
    """A download would replace a file that is there already (the client's, never sent)."""

    code, status = "target_exists", 400


class BodyTooLarge(BadRequest):
    code, status = "body_too_large", 413


class ProtocolError(CatervaError, ValueError):
    code, status = "protocol_error", 502


class DigestMismatch(ProtocolError):
    code, status = "digest_mismatch", 502


class UntrustedSource(ProtocolError):
    """What a source sent about a root fails verification: no signature, a bad one, content
    that does not match what was signed, or a version older than one already seen."""

    code, status = "untrusted_source", 502


class KeyChanged(UntrustedSource):
    """A root's manifest is signed by another key than the one this subscriber trusts."""

    code, status = "key_changed", 502


class NotFound(CatervaError, LookupError):
    code, status = "not_found", 404


class UnknownRoot(NotFound):
    code, status = "unknown_root", 404


class UnknownDataset(NotFound, FileNotFoundError):
    code, status = "unknown_dataset", 404


class ChunkOutOfRange(NotFound, IndexError):
    code, status = "chunk_out_of_range", 404


class NotFollowed(CatervaError):
    code, status = "not_followed", 409


class DatasetChanged(CatervaError):
    """The version of a dataset a read started with is gone: read it again."""

    code, status = "dataset_changed", 409


class PinTooLarge(CatervaError):
    """A root cannot be pinned: its stored bytes do not fit the cache budget that the other
    pinned roots leave."""

    code, status = "pin_too_large", 409


class Unauthorized(CatervaError, PermissionError):
    code, status = "unauthorized", 401


class BadCredentials(Unauthorized):
    """Wrong email or password at login (logging in again with the same ones will not help)."""

    code, status = "bad_credentials", 401


class TokenExpired(Unauthorized):
    code, status = "token_expired", 401


class Forbidden(CatervaError, PermissionError):
    code, status = "forbidden", 403


class Unavailable(CatervaError, ConnectionError):
    code, status = "unavailable", 503


class SourceOffline(Unavailable):
    code, status = "source_offline", 503


class SourceRefused(Unavailable):
    """A source answered 401/403 to this subscriber: its source credentials are missing or
    not enough. A 502: the reader's own credentials are not the problem."""

    code, status = "source_refused", 502


class BrokerUnavailable(Unavailable):
    code, status = "broker_unavailable", 503


class StateError(CatervaError, RuntimeError):
    code, status = "state_error", 500


class NotSupported(CatervaError):
    """What a service does not do: the writes of the Caterva2 API (a subscriber is read-only),
    a ``/file`` of a dataset it cannot frame from chunk sizes alone (a client frames it), a
    ``/printed`` selection of too many values to print (a client prints it), a handoff to a
    client on another machine."""

    code, status = "not_supported", 501


def _registry() -> dict[str, type[CatervaError]]:
    found: dict[str, type[CatervaError]] = {}
    todo: list[type[CatervaError]] = [CatervaError]
    while todo:
        cls = todo.pop()
        found[cls.code] = cls
        todo.extend(cls.__subclasses__())
    return found


_BY_CODE = _registry()


def from_payload(payload: Any, status: int) -> CatervaError:
    """Rebuild the error a caterva service sent; anything else becomes a ProtocolError."""
    body = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        return ProtocolError(f"unexpected HTTP {status} response")
    cls = _BY_CODE.get(body["code"])
    if cls is None:  # a newer service's code: keep the status family
        cls = next((c for c in _BY_CODE.values() if c.status == status), CatervaError)
    detail = body.get("detail") if isinstance(body.get("detail"), dict) else {}
    return cls(str(body.get("message", body["code"])), **detail)


def from_response(status: int, body: bytes | str) -> CatervaError:
    """The error a failed HTTP response carries, from its status and body: the caterva error
    its JSON names, else a ProtocolError (a body that is not ours: a proxy's page, say)."""
    try:
        payload = json.loads(body) if body else None
    except (ValueError, RecursionError):  # a UnicodeDecodeError is a ValueError too
        payload = None
    return from_payload(payload, status)
