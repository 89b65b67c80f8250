"""How `caterva --help` reads: plain usage lines, whole command summaries, and the text every
help page shares (exit codes, examples). typer's defaults are adjusted here, in one place:
usage lines said ``{name}`` and ``[[ROOT]]``, arguments carried ``<str>`` tags, and command
summaries were cut at 45 columns mid-sentence. Like app.py's pydantic patch this leans on
typer internals; if they move, help only looks as it did (tests/unit/test_cli_help.py).
"""

from __future__ import annotations

import re

EPILOG = """\b
Client commands talk to a subscriber: --sub URL or CATERVA_SUB [default
http://127.0.0.1:8471]; --json prints one JSON document on stdout instead of text.
Every setting is also an environment variable (CATERVA_<NAME>) or a key of caterva.toml.

\b
Exit codes: 0 ok, 1 other error, 2 bad usage or input, 3 not found,
4 unavailable (subscriber, source or broker), 5 authentication, 6 root not followed,
130 interrupted (Ctrl-C).

\b
Examples:
  caterva demo                                   # the whole flow, once
  caterva bro & caterva pub example ./root-example & caterva sub &
  caterva follow example && caterva list example
  caterva show 'example/images/terrain.b2nd[0:4, ::100]'
  caterva download example/images/terrain.b2nd -o terrain.b2nd
"""

_SENTENCE = re.compile(r"(?<=[.!?])\s")


def summary(help_text: str | None) -> str:
    """A command's line in the command list: the first sentence of its help, whole."""
    first = (help_text or "").strip().split("\n\n")[0]
    return _SENTENCE.split(" ".join(first.split()), maxsplit=1)[0]


def adjust_typer() -> None:
    """Arguments show as their metavar (NAME, [ROOT]) without a type tag; summaries whole."""
    from typer import core

    def usage_name(self) -> str:
        name = self.metavar or self.name.upper()
        if not self.required and not name.startswith("["):
            name = f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    def short_help(self, limit: int = 45) -> str:
        return self.short_help or summary(self.help)

    core.TyperArgument._usage_display_name = usage_name
    core.TyperArgument._rich_display_name = lambda self: self.metavar or self.name.upper()
    core.TyperArgument.display_type_rich = lambda self, ctx: None
    core.TyperCommand.get_short_help_str = short_help
    core.TyperGroup.get_short_help_str = short_help
