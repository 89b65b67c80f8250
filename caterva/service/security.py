"""A service's security settings, resolved once from flags, ``CATERVA_*`` env and config.

    Security.build(...)      flags -> files read, paths checked, clear errors before binding
    source_client_options()  what a subscriber's HTTP client to its sources needs: each source
                             token for the sources it was given for (SourceTokens), the CA to
                             verify HTTPS sources, and the bounds on what a source may send
    scheme / tls             HTTPS when a certificate and key are given
    accounts(statedir)       a subscriber's users database and token secret, when --auth
    max_body                 the largest request body a service reads (caterva/service/http.py)

Tokens given in files are read here, so they never sit on a command line (``ps`` shows those).
A source token names the sources it is for (``URL=TOKEN``, or ``URL TOKEN`` lines in a file):
sources are learned from MQTT, where anyone may announce one, so a token sent to every source
would go to whoever announces first.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from caterva import config
from caterva.errors import BadRequest


def _text(name: str, flag: str | Path | None) -> str | None:
    value = config.setting(name, str(flag) if flag is not None else None)
    return str(value).strip() or None


def _lines(path: str) -> list[str]:
    """The non-blank, non-comment lines of a file, stripped."""
    try:
        lines = Path(path).expanduser().read_text().splitlines()
    except OSError as exc:
        raise BadRequest(f"cannot read the token file {path}: {exc.strerror or exc}") from exc
    return [t for t in (line.strip() for line in lines) if t and not t.startswith("#")]


def _read_tokens(path: str) -> tuple[str, ...]:
    tokens = tuple(_lines(path))
    if not tokens:
        raise BadRequest(f"the token file {path} holds no token")
    return tokens


SOURCE_TOKEN_FORM = "URL=TOKEN, e.g. --source-token http://pub.lab:8470=TOKEN"


def _site(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of a source URL or URL prefix; the port made explicit and
    the path without a trailing slash, so equal sites compare equal."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        parts, port = None, 0
    if (
        parts is None
        or parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
    ):
        raise BadRequest(f"invalid source URL {url!r}: use http(s)://HOST[:PORT][/PATH]")
    return parts.scheme.lower(), parts.hostname.lower(), port, parts.path.rstrip("/")


def _source_token(text: str, where: str) -> tuple[tuple[str, str, int, str], str]:
    url, sep, token = text.partition("=")
    if not sep or "://" not in url or not token.strip():
        raise BadRequest(
            f"{where}: a source token is now given with the sources it is for: {SOURCE_TOKEN_FORM}"
        )
    return _site(url), token.strip()


def _source_token_lines(path: str) -> list[tuple[tuple[str, str, int, str], str]]:
    out = []
    for line in _lines(path):
        url, _, token = line.partition(" ")
        if "://" not in url or not token.strip():
            raise BadRequest(
                f"the token file {path} must hold `URL TOKEN` lines, one per "
                "source (e.g. http://pub.lab:8470 TOKEN), not bare tokens"
            )
        out.append((_site(url), token.strip()))
    if not out:
        raise BadRequest(f"the token file {path} holds no token")
    return out


class SourceTokens(httpx.Auth):
    """``Authorization: Bearer`` on a request to a source configured with a token, and on no
    other: scheme, host and port equal, the path under the configured one (whole segments:
    http://h:8470/a covers /a/x, not /ab). The longest configured path wins."""

    def __init__(self, tokens: Iterable[tuple[tuple[str, str, int, str], str]]) -> None:
        self.tokens = sorted(tokens, key=lambda t: -len(t[0][3]))

    def token_for(self, url: str | httpx.URL) -> str | None:
        url = httpx.URL(str(url))
        scheme, host, port = url.scheme, url.host.lower(), url.port
        port = port or (443 if scheme == "https" else 80)
        path = url.path
        for (s, h, p, prefix), token in self.tokens:
            if (s, h, p) == (scheme, host, port) and (
                path == prefix or path.startswith(prefix + "/")
            ):
                return token
        return None

    def auth_flow(self, request: httpx.Request):
        token = self.token_for(request.url)
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token}"
        yield request


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
    # what this service sends to which sources: ((scheme, host, port, path prefix), token)
    source_tokens: tuple[tuple[tuple[str, str, int, str], str], ...] = ()
    ca_file: str | None = None  # verify HTTPS sources against it (default: the system's CAs)
    tls_cert: str | None = None  # serve HTTPS with these
    tls_key: str | None = None
    auth: bool = False  # a subscriber requires login and applies per-root grants
    users: str | None = None  # its users database ("" / None: <statedir>/users.db)
    token_ttl: float = config.parse_duration(config.DEFAULTS["token_ttl"])
    token_secret: str | None = None  # the file of the signing key (None: <statedir>/token-secret)
    max_body: int = config.parse_size(config.DEFAULTS["max_body"])  # request bodies, bytes
    max_source_json: int | None = None  # JSON read from a source (None: the setting's default)
    source_timeout: float | None = None  # seconds a source may stay silent (None: default)

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
        source_token: list[str] | None = None,
        source_token_file: str | Path | None = None,
        max_body: str | None = None,
        max_source_json: str | None = None,
        source_timeout: str | None = None,
        ca_file: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
    ) -> Security:
        required: tuple[str, ...] = ()
        if (token := _text("require_token", require_token)) is not None:
            required += (token,)
        if (path := _text("require_token_file", require_token_file)) is not None:
            required += _read_tokens(path)
        sources = [
            _source_token(t, "--source-token")
            for t in config.setting_list("source_token", source_token)
        ]
        if path := _text("source_token_file", source_token_file):
            sources += _source_token_lines(path)
        cert, key = tls_files(tls_cert, tls_key) or (None, None)
        users_path = _text("users", users)
        return cls(
            require_tokens=required,
            source_tokens=tuple(sources),
            ca_file=_existing(_text("ca_file", ca_file), "CA file"),
            tls_cert=cert,
            tls_key=key,
            # giving a users database means accounts are wanted: never serve it open by mistake
            auth=bool(config.setting("auth", auth)) or (users is not None),
            users=str(Path(users_path).expanduser()) if users_path else None,
            token_ttl=config.parse_duration(config.setting("token_ttl", token_ttl)),
            token_secret=_text("token_secret_file", token_secret_file),
            max_body=config.parse_size(config.setting("max_body", max_body)),
            max_source_json=config.parse_size(config.setting("max_source_json", max_source_json)),
            source_timeout=config.parse_duration(config.setting("source_timeout", source_timeout)),
        )

    def check_republishing(self, republish: bool) -> None:
        """Republishing never widens access: a mirror that needs a credential upstream asks
        for one downstream."""
        if republish and self.source_tokens and not (self.auth or self.require_tokens):
            raise BadRequest(
                "--republish with a --source-token would serve to anyone what its source serves "
                "only with a token: add --auth (accounts and grants) or --require-token"
            )

    def accounts(self, statedir: Path) -> tuple[Path, Path] | None:
        """(users database, token secret file) of a subscriber with --auth, else None."""
        if not self.auth:
            return None
        users = Path(self.users) if self.users else statedir / config.USERS_FILE
        secret = statedir / config.TOKEN_SECRET_FILE
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
        """Keyword arguments for ``caterva.subscriber.upstream.new_client``."""
        options: dict[str, Any] = {
            "max_json": self.max_source_json,
            "read_timeout": self.source_timeout,
        }
        if self.source_tokens:
            options["auth"] = SourceTokens(self.source_tokens)
        if self.ca_file:
            options["verify"] = ssl.create_default_context(cafile=self.ca_file)
        return options
