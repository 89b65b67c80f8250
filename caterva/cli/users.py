"""Accounts: ``caterva user add/grant/revoke/list/remove/passwd`` (the admin, on the
subscriber's machine, writing its users database) and ``caterva login/logout`` (anyone, against
a subscriber's POST /v1/login; the token is stored per subscriber URL, caterva/credentials.py).

There is deliberately no HTTP way to change users or grants: whoever can write the users
database is the admin.
"""

# No `from __future__ import annotations` here: typer would have to eval every command's
# string annotations at each start-up (~9 ms of `caterva roots`).

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from caterva.cli.options import CaFile, Json, Sub, connect, display, emit, out
from caterva.errors import BadRequest

users_app = typer.Typer(
    name="user",
    help="Manage accounts and their per-root grants (a subscriber's users database).",
    no_args_is_help=True,
)

Email = Annotated[str, typer.Argument(metavar="EMAIL", help="The account, e.g. ada@lab.org.")]
Root = Annotated[str, typer.Argument(metavar="ROOT", help="A root name.")]
UsersDb = Annotated[
    Optional[Path],
    typer.Option(
        "--users",
        metavar="PATH",
        help="The users database [env CATERVA_USERS; default: in the subscriber's "
        "statedir, <statedir>/subscriber/users.db].",
    ),
]
PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from stdin (one line), for scripts."),
]


def users_path(flag: Path | None) -> Path:
    from caterva.config import USERS_FILE, setting, statedir

    chosen = setting("users", str(flag) if flag is not None else None)
    return Path(chosen).expanduser() if chosen else statedir(None, "subscriber") / USERS_FILE


def open_users(flag: Path | None):
    from caterva.users import Users

    return Users.open(users_path(flag))


def read_password(from_stdin: bool, *, confirm: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    if not password:
        raise BadRequest("empty password")
    return password


def _time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


# --- the admin ----------------------------------------------------------------------------------


@users_app.command()
def add(email: Email, password_stdin: PasswordStdin = False, users: UsersDb = None) -> None:
    """Add an account (the password is asked twice). It can read nothing until granted."""
    password = read_password(password_stdin, confirm=True)
    with open_users(users) as db:
        user = db.add(email, password)
    out().print(f"added {user.email}; grant it roots with `caterva user grant {user.email} ROOT`")


@users_app.command()
def passwd(email: Email, password_stdin: PasswordStdin = False, users: UsersDb = None) -> None:
    """Set a new password for an account (tokens already issued stay valid until they expire)."""
    password = read_password(password_stdin, confirm=True)
    with open_users(users) as db:
        db.set_password(email, password)
    out().print(f"password of {email} changed")


@users_app.command()
def grant(email: Email, root: Root, users: UsersDb = None) -> None:
    """Let EMAIL read ROOT; it takes effect on the next request, no restart."""
    with open_users(users) as db:
        new = db.grant(email, root)
    out().print(f"{email} may read {root}" + ("" if new else " (already could)"))


@users_app.command()
def revoke(email: Email, root: Root, users: UsersDb = None) -> None:
    """Take ROOT away from EMAIL; it takes effect on the next request, no restart."""
    with open_users(users) as db:
        had = db.revoke(email, root)
    out().print(f"{email} may no longer read {root}" + ("" if had else " (it had no grant)"))


@users_app.command("list")
def list_(as_json: Json = False, users: UsersDb = None) -> None:
    """Every account and the roots it may read."""
    with open_users(users) as db:
        found = db.list()
    if as_json:
        emit({"users": [u.to_dict() for u in found]})
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("email", "roots", "created"):
        table.add_column(column)
    for u in found:
        table.add_row(u.email, ", ".join(u.roots) or "-", _time(u.created))
    display(table if found else "no users yet: add one with `caterva user add EMAIL`")


@users_app.command()
def token(
    email: Email,
    ttl: Annotated[
        str, typer.Option("--ttl", metavar="DURATION", help="How long it is valid, e.g. 90d.")
    ] = "30d",
    secret: Annotated[
        Optional[Path],
        typer.Option(
            "--secret",
            metavar="PATH",
            help="The subscriber's token secret [env CATERVA_TOKEN_SECRET_FILE; default: "
            "<statedir>/subscriber/token-secret].",
        ),
    ] = None,
    as_json: Json = False,
    users: UsersDb = None,
) -> None:
    """Print a token for EMAIL without a password: for a service reading from this subscriber
    (a downstream subscriber's --source-token). Its grants still apply, read on every request;
    removing the account ends the token."""
    from caterva.config import TOKEN_SECRET_FILE, parse_duration, setting, statedir
    from caterva.tokens import Signer, load_secret

    with open_users(users) as db:
        email = db.require(email)
    chosen = setting("token_secret_file", str(secret) if secret is not None else None)
    path = Path(chosen).expanduser() if chosen else statedir(None, "subscriber") / TOKEN_SECRET_FILE
    if not path.is_file():
        raise BadRequest(
            f"no token secret at {path}: start the subscriber with --auth once, or give --secret"
        )
    value, claims = Signer(load_secret(path, create=False)).issue(email, parse_duration(ttl))
    if as_json:
        emit({"token": value, "user": claims.user, "expiry": claims.expiry})
    else:
        out().print(value, soft_wrap=True)


@users_app.command()
def remove(email: Email, users: UsersDb = None) -> None:
    """Delete an account and its grants; its tokens stop working at once."""
    with open_users(users) as db:
        db.remove(email)
    out().print(f"removed {email}")


# --- anyone -------------------------------------------------------------------------------------


def login(
    email: Annotated[
        Optional[str], typer.Option("--email", metavar="EMAIL", help="[default: asked]")
    ] = None,
    password_stdin: PasswordStdin = False,
    as_json: Json = False,
    sub: Sub = None,
    ca_file: CaFile = None,
) -> None:
    """Log in to a subscriber that requires it; the token is kept for later commands."""
    from caterva import credentials

    email = email or typer.prompt("Email")
    password = read_password(password_stdin, confirm=False)
    with connect(sub, ca_file) as client:
        answer = client.login(email, password)
        url = client.url
    path = credentials.store(url, answer["token"], user=answer["user"], expiry=answer["expiry"])
    if as_json:
        emit(
            {
                "sub": url,
                "user": answer["user"],
                "expiry": answer["expiry"],
                "token_file": str(path),
            }
        )
    else:
        out().print(f"logged in to {url} as {answer['user']} until {_time(answer['expiry'])}")


def logout(as_json: Json = False, sub: Sub = None) -> None:
    """Forget the token stored for a subscriber."""
    from caterva import credentials
    from caterva.client.transport import base_url

    url = base_url(sub)
    dropped = credentials.drop(url)
    if as_json:
        emit({"sub": url, "logged_out": dropped})
    else:
        out().print(f"logged out of {url}" if dropped else f"not logged in to {url}")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app)
    app.command()(login)
    app.command()(logout)
