"""A service's security settings, resolved once from flags, ``CATERVA_*`` env and config.

    Security.build(...)      flags -> files read, paths checked, clear errors before binding
    source_client_options()  what a subscriber's HTTP client to its sources needs: the source
                             token (Authorization: Bearer) and the CA to verify HTTPS sources
    scheme / tls             HTTPS when a certificate and key are given
    accounts(statedir)       a subscriber's users database and token secret, when --auth

Tokens given in files are read here, so they never sit on a command line (``ps`` shows those).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caterva import config
from caterva.errors import BadRequest


def _text(name: str, flag: str | Path | None) -> str | None:
    value = config.setting(name, str(flag) if flag is not None else None)
    return str(value).strip() or None


def _read_tokens(path: str) -> tuple[str, ...]:
    try:
        lines = Path(path).expanduser().read_text().splitlines()
    except OSError as exc:
        raise BadRequest(f"cannot read the token file {path}: {exc.strerror or exc}") from exc
    tokens = tuple(t for t in (line.strip() for line in lines) if t and not t.startswith("#"))
    if not tokens:
        raise BadRequest(f"the token file {path} holds no token")
    return tokens


def _existing(path: str | None, what: str) -> str | None:
    if path is not None and not Path(path).expanduser().is_file():
        raise BadRequest(f"{what} {path} does not exist")
    return str(Path(path).expanduser()) if path else None


def tls_files(cert: str | Path | None, key: str | Path | None) -> tuple[str, str] | None:
    """(certificate, key) to serve TLS with, checked to load; None when neither is set."""
    cert = _existing(_text("tls_cert", cert), "TLS certificate")
    key = _existing(_text("tls_key", key), "TLS key")
    if bool(cert) != bool(key):
        raise BadRequest("TLS needs both --tls-cert and --tls-key")
    if not cert or not key:
        return None
    try:  # a wrong pair fails here, clearly, not as a traceback from the server
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise BadRequest(f"cannot use TLS certificate {cert} with key {key}: {exc}") from exc
    return cert, key


@dataclass(frozen=True)
class Security:
    require_tokens: tuple[str, ...] = ()  # service tokens every request must carry one of
    source_token: str | None = None  # what this service sends to its sources
    ca_file: str | None = None  # verify HTTPS sources against it (default: the system's CAs)
    tls_cert: str | None = None  # serve HTTPS with these
    tls_key: str | None = None
    auth: bool = False  # a subscriber requires login and applies per-root grants
    users: str | None = None  # its users database ("" / None: <statedir>/users.db)
    token_ttl: float = 12 * 3600.0
    token_secret: str | None = None  # the file of the signing key (None: <statedir>/token-secret)

    @classmethod
    def build(
        cls,
        *,
        auth: bool | None = None,
        users: str | Path | None = None,
        token_ttl: str | None = None,
        token_secret_file: str | Path | None = None,
        require_token: str | None = None,
        require_token_file: str | Path | None = None,
        source_token: str | None = None,
        source_token_file: str | Path | None = None,
        ca_file: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
    ) -> Security:
        required: tuple[str, ...] = ()
        if (token := _text("require_token", require_token)) is not None:
            required += (token,)
        if (path := _text("require_token_file", require_token_file)) is not None:
            required += _read_tokens(path)
        source = _text("source_token", source_token)
        if source is None and (path := _text("source_token_file", source_token_file)):
            source = _read_tokens(path)[0]
        cert, key = tls_files(tls_cert, tls_key) or (None, None)
        users_path = _text("users", users)
        return cls(
            require_tokens=required,
            source_token=source,
            ca_file=_existing(_text("ca_file", ca_file), "CA file"),
            tls_cert=cert,
            tls_key=key,
            # giving a users database means accounts are wanted: never serve it open by mistake
            auth=bool(config.setting("auth", auth)) or (users is not None),
            users=str(Path(users_path).expanduser()) if users_path else None,
            token_ttl=config.parse_duration(config.setting("token_ttl", token_ttl)),
            token_secret=_text("token_secret_file", token_secret_file),
        )

    def check_republishing(self, republish: bool) -> None:
        """Republishing never widens access: a mirror that needs a credential upstream asks
        for one downstream."""
        if republish and self.source_token and not (self.auth or self.require_tokens):
            raise BadRequest(
                "--republish with a --source-token would serve to anyone what its source serves "
                "only with a token: add --auth (accounts and grants) or --require-token"
            )

    def accounts(self, statedir: Path) -> tuple[Path, Path] | None:
        """(users database, token secret file) of a subscriber with --auth, else None."""
        if not self.auth:
            return None
        users = Path(self.users) if self.users else statedir / "users.db"
        secret = statedir / "token-secret"
        if self.token_secret:
            secret = Path(self.token_secret).expanduser()
        return users, secret

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def tls(self) -> tuple[str, str] | None:
        return (self.tls_cert, self.tls_key) if self.tls_cert and self.tls_key else None

    def source_client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``caterva.fetch.new_client``."""
        options: dict[str, Any] = {}
        if self.source_token:
            options["headers"] = {"Authorization": f"Bearer {self.source_token}"}
        if self.ca_file:
            options["verify"] = ssl.create_default_context(cafile=self.ca_file)
        return options
