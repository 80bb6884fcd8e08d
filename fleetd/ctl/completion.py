"""``fleetd completion bash|zsh``: completion scripts generated from the argument parser itself.

Commands, sub-verbs, options and option choices come from the parser, so they never drift from it;
host names and HOST/CONTAINER references are asked of the running fleetd (``fleetd hosts -q``,
``fleetd ps -a --format``) with the same FLEETD_URL / FLEETD_TOKEN as the command being completed.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Final

__all__ = ["script"]

HOSTS_CMD: Final = "fleetd hosts -q 2>/dev/null"
REFS_CMD: Final = "fleetd ps -a --format '{{.Host}}/{{.Name}}' 2>/dev/null"
FILE_DESTS: Final = {"ctl_config", "config", "token_file", "cacert", "output"}
REF_COMMANDS: Final = ("stop", "start", "restart", "rm", "logs")


@dataclass(slots=True)
class _Option:
    flags: list[str]
    help: str
    takes_value: bool
    choices: list[str] | None
    kind: str  # "", "file", "host"


@dataclass(slots=True)
class _Command:
    name: str
    help: str
    options: list[_Option] = field(default_factory=list)
    verbs: dict[str, _Command] = field(default_factory=dict)


def _subparsers(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _command(name: str, help_text: str, parser: argparse.ArgumentParser) -> _Command:
    cmd = _Command(name, help_text)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for verb, sub in action.choices.items():
                cmd.verbs[verb] = _command(verb, helps.get(verb, ""), sub)
            continue
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        kind = "file" if action.dest in FILE_DESTS else "host" if action.dest == "host" else ""
        cmd.options.append(
            _Option(
                list(action.option_strings),
                action.help or "",
                action.nargs != 0,
                [str(c) for c in action.choices] if action.choices else None,
                kind,
            )
        )
    return cmd


def _tree(parser: argparse.ArgumentParser) -> _Command:
    sub = _subparsers(parser)
    root = _Command("fleetd", "")
    if sub is not None:
        helps = {a.dest: a.help or "" for a in sub._choices_actions}
        for name, p in sub.choices.items():
            root.verbs[name] = _command(name, helps.get(name, ""), p)
    return root


def _words(items: list[str]) -> str:
    return " ".join(items)


def _bash(root: _Command) -> str:
    lines = [
        '# bash completion for fleetd: eval "$(fleetd completion bash)"',
        "_fleetd() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local cmd="${COMP_WORDS[1]}" verb="" opts="" i',
        "    if (( COMP_CWORD == 1 )); then",
        f'        COMPREPLY=( $(compgen -W "{_words(list(root.verbs))}" -- "$cur") ); return',
        "    fi",
        "    for (( i = 2; i < COMP_CWORD; i++ )); do",
        '        [[ ${COMP_WORDS[i]} != -* ]] && { verb="${COMP_WORDS[i]}"; break; }',
        "    done",
        '    case "$prev" in',
    ]
    seen: dict[str, str] = {}
    for cmd in [*root.verbs.values(), *(v for c in root.verbs.values() for v in c.verbs.values())]:
        for opt in cmd.options:
            if not opt.takes_value:
                continue
            if opt.kind == "file":
                action = 'COMPREPLY=( $(compgen -f -- "$cur") ); return ;;'
            elif opt.kind == "host":
                action = f'COMPREPLY=( $(compgen -W "$({HOSTS_CMD})" -- "$cur") ); return ;;'
            elif opt.choices:
                action = f'COMPREPLY=( $(compgen -W "{_words(opt.choices)}" -- "$cur") ); return ;;'
            else:
                action = "return ;;"
            for flag in opt.flags:
                seen.setdefault(flag, action)
    for flag, action in seen.items():
        lines.append(f"        {flag}) {action}")
    lines += ["    esac", '    case "$cmd" in']
    for name, cmd in root.verbs.items():
        opts = [f for o in cmd.options for f in o.flags]
        body = [f'opts="{_words(opts)}"']
        if cmd.verbs:
            body.append('case "$verb" in')
            for verb, sub in cmd.verbs.items():
                body.append(f'    {verb}) opts="{_words([f for o in sub.options for f in o.flags])}" ;;')
            body.append("esac")
        lines.append(f"        {name})")
        lines += [f"            {b}" for b in body]
        lines.append("            ;;")
    lines += [
        "    esac",
        '    if [[ "$cur" == -* ]]; then COMPREPLY=( $(compgen -W "$opts" -- "$cur") ); return; fi',
        '    case "$cmd" in',
        f'        {"|".join(REF_COMMANDS)}) COMPREPLY=( $(compgen -W "$({REFS_CMD})" -- "$cur") ) ;;',
        f'        host) COMPREPLY=( $(compgen -W "$({HOSTS_CMD})" -- "$cur") ) ;;',
        '        completion) COMPREPLY=( $(compgen -W "bash zsh" -- "$cur") ) ;;',
    ]
    for name, cmd in root.verbs.items():
        if cmd.verbs:
            lines.append(
                f'        {name}) [[ -z "$verb" ]] && COMPREPLY=( $(compgen -W "{_words(list(cmd.verbs))}" -- "$cur") ) ;;'
            )
    lines += ["    esac", "}", "complete -F _fleetd fleetd", ""]
    return "\n".join(lines)


def _zq(text: str) -> str:
    """Text safe inside a single-quoted _arguments spec."""
    return text.replace("'", "'\\''").replace("[", "(").replace("]", ")").replace(":", " -")


def _zsh_specs(cmd: _Command, name: str) -> list[str]:
    specs = []
    for opt in cmd.options:
        for flag in opt.flags:
            spec = f"'{flag}[{_zq(opt.help)}]"
            if opt.takes_value:
                if opt.kind == "file":
                    spec += ":file:_files"
                elif opt.kind == "host":
                    spec += ":host:_fleetd_hosts"
                elif opt.choices:
                    spec += f":value:({' '.join(opt.choices)})"
                else:
                    spec += ":value: "
            specs.append(spec + "'")
    if name in REF_COMMANDS:
        specs.append("'*:container:_fleetd_refs'")
    elif name == "host":
        specs.append("':host:_fleetd_hosts'")
    elif name == "completion":
        specs.append("':shell:(bash zsh)'")
    return specs


def _zsh(root: _Command) -> str:
    lines = [
        "#compdef fleetd",
        '# zsh completion for fleetd: fleetd completion zsh > "${fpath[1]}/_fleetd"',
        f'_fleetd_hosts() {{ local -a h; h=(${{(f)"$({HOSTS_CMD})"}}); compadd -a h }}',
        f'_fleetd_refs() {{ local -a r; r=(${{(f)"$({REFS_CMD})"}}); compadd -a r }}',
        "_fleetd() {",
        "    local -a commands",
        "    commands=(",
    ]
    lines += [f"        '{name}:{_zq(cmd.help)}'" for name, cmd in root.verbs.items()]
    lines += [
        "    )",
        "    if (( CURRENT == 2 )); then _describe 'command' commands; return; fi",
        "    local cmd=$words[2]",
        "    shift words; (( CURRENT-- ))",
        "    case $cmd in",
    ]
    for name, cmd in root.verbs.items():
        lines.append(f"        {name})")
        if cmd.verbs:
            lines.append("            if (( CURRENT == 2 )) && [[ $words[CURRENT] != -* ]]; then")
            lines.append("                local -a verbs; verbs=(")
            lines += [f"                    '{v}:{_zq(sub.help)}'" for v, sub in cmd.verbs.items()]
            lines.append("                ); _describe 'verb' verbs; return")
            lines.append("            fi")
            lines.append("            case $words[2] in")
            for verb, sub in cmd.verbs.items():
                specs = " ".join(_zsh_specs(sub, verb))
                lines.append(
                    f"                {verb}) shift words; (( CURRENT-- )); _arguments {specs}; return ;;"
                )
            lines.append("            esac")
            lines.append(f"            _arguments {' '.join(_zsh_specs(cmd, name))} ;;")
        else:
            lines.append(f"            _arguments {' '.join(_zsh_specs(cmd, name))} ;;")
    lines += [
        "    esac",
        "}",
        'if [[ $zsh_eval_context[-1] == loadautofunc ]]; then _fleetd "$@"; else compdef _fleetd fleetd; fi',
        "",
    ]
    return "\n".join(lines)


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    root = _tree(parser)
    return _bash(root) if shell == "bash" else _zsh(root)
