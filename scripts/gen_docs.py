"""Generate vfiokit's man pages and shell completion files from the CLI itself, at build time.

    python3 scripts/gen_docs.py OUTDIR

writes OUTDIR/man/vfiokit.1 and one OUTDIR/man/vfiokit-COMMAND.1 per command (a group's page holds
its subcommands), OUTDIR/completion/vfiokit (bash) and OUTDIR/completion/_vfiokit (zsh). Every word
comes from click's own help (the commands' docstrings, options and help texts), so the pages
cannot drift from `vfiokit --help`. Run with PYTHONPATH naming the tree to document.

The dates come from SOURCE_DATE_EPOCH when set (reproducible builds), else today.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

import click

from vfiokit import __version__
from vfiokit.cli import main
from vfiokit.errors import ExitCode

#: bash splits words at ':' (COMP_WORDBREAKS), so `04:00<TAB>` would reach click as `04 : 00` and
#: the answer would replace only `00`. This function is click's bash script (click 8.1
#: `_SOURCE_BASH`) with the line re-split at blanks only, and each answer trimmed of what bash
#: keeps before the last ':' (what bash-completion's __ltrim_colon_completions does).
BASH_COMPLETION = r"""# bash completion for vfiokit, generated from its click commands (scripts/gen_docs.py)

_vfiokit_completion() {
    local IFS=$'\n'
    local line="${COMP_LINE:0:COMP_POINT}"
    local -a words
    IFS=$' \t' read -r -a words <<< "$line"
    [[ -z $line || $line == *[[:space:]] ]] && words+=("")
    local cword=$(( ${#words[@]} - 1 ))
    local cur="${words[cword]}"
    local response
    response=$(env COMP_WORDS="${words[*]}" COMP_CWORD=$cword _VFIOKIT_COMPLETE=bash_complete $1)
    local kept=""
    [[ $cur == *:* && $COMP_WORDBREAKS == *:* ]] && kept="${cur%"${cur##*:}"}"
    for completion in $response; do
        IFS=',' read type value <<< "$completion"
        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == 'plain' ]]; then
            COMPREPLY+=("${value#"$kept"}")
        fi
    done
    return 0
}

complete -o nosort -F _vfiokit_completion vfiokit
"""


def _date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.UTC) if epoch
            else datetime.datetime.now(datetime.UTC))
    return when.strftime("%Y-%m-%d")


def roff(text: str) -> str:
    """Text as roff: backslashes and minus signs escaped, no line starting a request."""
    out = []
    for line in text.replace("\\", "\\e").replace("-", "\\-").splitlines():
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(out)


def _paragraphs(text: str) -> str:
    paras = [" ".join(p.split()) for p in click.unstyle(text).split("\n\n") if p.strip()]
    return "\n.PP\n".join(roff(p) for p in paras)


def _options(cmd: click.Command, ctx: click.Context) -> list[str]:
    out = []
    for param in cmd.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        name, help_text = record
        out += [".TP", f"\\fB{roff(name)}\\fR", roff(" ".join(help_text.split())) or "\\&"]
    return out


def _command_section(cmd: click.Command, ctx: click.Context, path: str, subcommands: bool = True) -> list[str]:
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    lines = [".SH SYNOPSIS", f".B {roff(path)}", roff(usage), ".SH DESCRIPTION",
             _paragraphs(cmd.help or cmd.short_help or "")]
    opts = _options(cmd, ctx)
    if opts:
        lines += [".SH OPTIONS", *opts]
    if subcommands and isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None
            sub_ctx = click.Context(sub, info_name=name, parent=ctx)
            lines += [f".SH {roff(path.upper())} {roff(name.upper())}", ".PP",
                      f".B {roff(path)} {roff(name)}", roff(" ".join(sub.collect_usage_pieces(sub_ctx))),
                      ".PP", _paragraphs(sub.help or ""), *(_options(sub, sub_ctx))]
    return lines


def _header(title: str, date: str) -> list[str]:
    return [f'.TH "{title.upper()}" "1" "{date}" "vfiokit {__version__}" "User Commands"']


def man_pages() -> dict[str, str]:
    """File name -> roff text, for vfiokit(1) and each command."""
    date = _date()
    root_ctx = click.Context(main, info_name="vfiokit", **main.context_settings)
    pages = {}
    names = main.list_commands(root_ctx)
    for name in names:
        cmd = main.get_command(root_ctx, name)
        assert cmd is not None
        ctx = click.Context(cmd, info_name=name, parent=root_ctx)
        lines = [*_header(f"vfiokit-{name}", date), ".SH NAME",
                 f"vfiokit\\-{roff(name)} \\- {roff(cmd.get_short_help_str(limit=200))}",
                 *_command_section(cmd, ctx, f"vfiokit {name}"),
                 ".SH SEE ALSO", ".BR vfiokit (1)"]
        pages[f"vfiokit-{name}.1"] = "\n".join(lines) + "\n"
    commands = []
    for name in names:
        cmd = main.get_command(root_ctx, name)
        assert cmd is not None
        commands += [".TP", f"\\fB{roff(name)}\\fR", roff(cmd.get_short_help_str(limit=200))]
    codes = []
    for code in ExitCode:
        codes += [".TP", f"\\fB{int(code)}\\fR", roff(code.name.lower().replace("_", " "))]
    see_also = ",\n".join(f".BR vfiokit\\-{roff(n)} (1)" for n in names)
    lines = [*_header("vfiokit", date), ".SH NAME",
             f"vfiokit \\- {roff(main.help or '')}",
             *_command_section(main, root_ctx, "vfiokit", subcommands=False),
             ".SH COMMANDS", *commands,
             ".PP", roff("Each command has its own page, e.g. vfiokit-check(1), and answers --help."),
             ".SH EXIT STATUS", *codes,
             ".SH SEE ALSO", see_also]
    pages["vfiokit.1"] = "\n".join(lines) + "\n"
    return pages


def zsh_completion() -> str:
    """click's own zsh script for the command (what `_VFIOKIT_COMPLETE=zsh_source vfiokit` prints)."""
    from click.shell_completion import ZshComplete

    return ZshComplete(main, {}, "vfiokit", "_VFIOKIT_COMPLETE").source()


def write_all(out: Path) -> list[Path]:
    written = []
    (out / "man").mkdir(parents=True, exist_ok=True)
    (out / "completion").mkdir(parents=True, exist_ok=True)
    for name, text in man_pages().items():
        written.append(out / "man" / name)
        written[-1].write_text(text)
    written.append(out / "completion" / "vfiokit")
    written[-1].write_text(BASH_COMPLETION)
    written.append(out / "completion" / "_vfiokit")
    written[-1].write_text(zsh_completion())
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: gen_docs.py OUTDIR")
    for p in write_all(Path(sys.argv[1])):
        print(p)
