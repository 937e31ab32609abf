"""Every program the project runs comes from a Debian package that ``./testbed setup`` installs.

The host's packages are listed once, in ``debian-packages.txt`` (``PACKAGE PROGRAMS... # why``),
which ``testbed`` reads. The experiment VM's packages are ``GUEST_PACKAGES`` in
``dmsc/vm/image.py``: what runs only in the guest is checked against those instead.

The programs are found statically, without running anything:

* Python (``ast``, over dmsc/, scripts/, benchmarks/, tests/): the command given to
  ``subprocess.*``, ``os.exec*``/``os.spawn*``/``os.system``, ``asyncio.create_subprocess_*``,
  Mininet's ``node.cmd``/``popen``/``pexec``/``sendCmd`` and ``mininet.util.quietRun``; programs
  checked with ``shutil.which(...)`` or ``os.access(PATH, os.X_OK)``; and the project's own
  wrappers of those, found by name (a function whose parameter reaches the program position of
  a command it runs, e.g. ``Namespaces.exec(namespace, argv)`` or ``Commands.chroot``). A command
  is an argument list or a shell string; names are followed to their assignments, ``for``
  targets, parameter defaults, module constants (also imported ones), class attributes and the
  returns of the project's command-building functions (with the call's arguments bound). Inside
  a command, wrappers are looked through (``mnexec -a PID CMD``, ``ip netns exec NS CMD``,
  ``chroot ROOT CMD`` (the image's root: a guest program), ``env``, ``setpriv ... --``,
  ``unshare``, ``timeout``) and ``sh -c SCRIPT`` is read as shell. Functions named
  ``*_command``/``*_commands`` are command builders: what they return counts even where the
  code that runs it is too dynamic to follow (``impair.clear_commands``, joined into ``sh -c``).
* Shell (testbed, scripts/*.sh, .ci/run; the guest's init.sh and dmsc.sh): the first word of
  every simple command that is not a builtin, keyword, function or expansion, the program after
  ``exec``/``command``/``setsid``/``env``, and every ``command -v PROGRAM`` check.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dmsc.vm.image import GUEST_PACKAGES

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "debian-packages.txt"
MANIFEST_NAME = MANIFEST.name
PYTHON_SOURCES = ("dmsc/**/*.py", "scripts/**/*.py", "benchmarks/**/*.py", "tests/**/*.py")
HOST_SCRIPTS = ("testbed", "scripts/*.sh", ".ci/run")
GUEST_SCRIPTS = ("dmsc/vm/guest/init.sh", "dmsc/vm/guest/dmsc.sh")
#: Python that runs only inside the experiment VM.
GUEST_CODE = ("dmsc/vm/guest/",)
#: Files not scanned, and why.
NOT_SCANNED = {
    "dmsc/vm/guest/initramfs-init.sh": "the initramfs's /init runs under `#!/bin/busybox sh`: "
    "every command in it is a busybox applet (busybox-static is in GUEST_PACKAGES)",
}

#: Not Debian packages' programs: allowed wherever they run.
OWN_PROGRAMS = {
    "<sys.executable>": "the Python interpreter running the code (the project's virtualenv)",
    "<venv>": "a program of the project's virtualenv (/opt/dmsc/venv/bin/pip in the image)",
    "dmsc": "the project's entry point (setup.py console_scripts; /usr/local/bin/dmsc in the VM)",
    "testbed": "the project's own script (.ci/run runs ./testbed test)",
    "bare-root-check.sh": "the project's own script (.ci/run runs scripts/bare-root-check.sh)",
}
#: Named in a command on purpose, never installed.
NOT_PROGRAMS = {
    "dmsc-no-such-program": "tests/unit/test_cli_errors.py: the message for a missing program",
}

#: What the VM's image has besides GUEST_PACKAGES: debootstrap --variant=minbase installs the
#: packages of priority "required"; python3 depends on python3-minimal, openvswitch-switch on
#: openvswitch-common.
GUEST_BASE_PACKAGES = ("apt", "bash", "coreutils", "dash", "dpkg", "hostname", "mount",
                       "util-linux", "python3-minimal", "openvswitch-common")  # fmt: skip
#: Programs of the guest's packages that run in the guest only, so the host's manifest does not
#: list them (checked with dpkg -S, or dpkg-deb -c of bookworm's packages); the guest packages'
#: other programs are those the manifest lists for them.
GUEST_PROGRAMS = {
    "coreutils": ("echo", "sleep", "stty", "sync", "touch", "true", "uname"),
    "util-linux": ("mountpoint", "setsid"),
    "hostname": ("hostname",),
    "kmod": ("depmod",),
    "mininet": ("mn",),
    "openvswitch-common": ("ovs-appctl", "ovsdb-server", "ovsdb-tool"),
    "openvswitch-switch": ("ovs-dpctl", "ovs-vsctl", "ovs-vswitchd"),
    "busybox-static": ("busybox",),
}

#: subprocess/os/asyncio calls that run a command: (module, function) -> how the command is given.
#: "argv": an argument list or a shell string; "word": the program itself; "varargs": the
#: arguments from that position on are the argument list.
STDLIB_RUNNERS = {
    **{("subprocess", name): ("argv", 0) for name in (
        "run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput")},
    ("os", "system"): ("argv", 0),
    ("os", "popen"): ("argv", 0),
    **{("os", name): ("word", 0) for name in (
        "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe",
        "posix_spawn", "posix_spawnp")},
    **{("os", name): ("word", 1) for name in (
        "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe")},
    ("asyncio", "create_subprocess_exec"): ("varargs", 0),
    ("asyncio", "create_subprocess_shell"): ("argv", 0),
    ("shutil", "which"): ("word", 0),
}  # fmt: skip
#: Mininet's ways of running a command in a node (methods), and mininet.util's functions.
MININET_METHODS = ("cmd", "popen", "pexec", "sendCmd", "cmdPrint")
MININET_FUNCTIONS = ("quietRun", "errRun", "errFail")
#: Runners the wrapper search cannot see, by name: (position of the command, runs in the VM).
EXTRA_RUNNERS = {
    # tests/vm's fixture: `vm_run(COMMAND, ...)` runs `dmsc vm run -- COMMAND` (the fixture
    # returns its inner function, so the call's name is not the definition's).
    "vm_run": (0, True),
}
#: Project functions that run a command in the VM, by module: (position of the command, guest).
QUALIFIED_RUNNERS = {
    ("dmsc.vm.runner", "run"): (1, True),  # runner.run(image, COMMAND, options): `dmsc vm run`
}
#: Programs that take a command after their own options (argument lists and shell).
WRAPPERS = {"mnexec", "ip", "chroot", "env", "setpriv", "unshare", "nsenter", "timeout", "nohup",
            "setsid", "sudo", "exec", "command", "sh", "bash", "dash"}  # fmt: skip
PROGRAM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
SENTINEL = "\0parameter\0"


# ---------------------------------------------------------------------- the manifest


def read_manifest(path: Path = MANIFEST) -> dict[str, tuple[str, ...]]:
    """package -> the programs listed for it (``PACKAGE PROGRAM... # why``)."""
    packages: dict[str, tuple[str, ...]] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        assert words[0] not in packages, f"{path.name}:{number}: {words[0]} is listed twice"
        packages[words[0]] = tuple(words[1:])
    return packages


def providers(packages: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """program -> package."""
    return {program: package for package, programs in packages.items() for program in programs}


def guest_providers(manifest: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    found = {}
    for package in (*GUEST_PACKAGES, *GUEST_BASE_PACKAGES):
        for program in (*manifest.get(package, ()), *GUEST_PROGRAMS.get(package, ())):
            found[program] = package
    return found


# ---------------------------------------------------------------------- what the scan finds


@dataclass(frozen=True)
class Use:
    """A program the project runs (or checks for), where it is named, and where it runs."""

    program: str
    path: str
    line: int
    guest: bool = False

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def program_name(word: str) -> str | None:
    """The program a command word names (a path: its file name), or None if it names none."""
    if word in OWN_PROGRAMS or word == SENTINEL:
        return word
    if "/" in word:
        if re.search(r"(^|/)\.?venv/", word):
            return "<venv>"
        word = word.rstrip("/").rsplit("/", 1)[-1]
    return word if PROGRAM.fullmatch(word) and not word.isdigit() else None


# ---------------------------------------------------------------------- shell


SHELL_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "esac",
                  "in", "!", "{", "}", "]]", "time", "function"}  # fmt: skip
SHELL_BUILTINS = {
    ".",
    ":",
    "[",
    "[[",
    "alias",
    "bg",
    "bind",
    "break",
    "builtin",
    "caller",
    "cd",
    "compgen",
    "complete",
    "continue",
    "declare",
    "dirs",
    "disown",
    "echo",
    "enable",
    "eval",
    "exit",
    "export",
    "false",
    "fc",
    "fg",
    "getopts",
    "hash",
    "help",
    "history",
    "jobs",
    "kill",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "printf",
    "pushd",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "set",
    "shift",
    "shopt",
    "source",
    "suspend",
    "test",
    "times",
    "trap",
    "true",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "wait",
}


@dataclass
class _Word:
    text: str = ""
    dynamic: bool = False  # has an expansion: not a fixed program name
    line: int = 0


class _ShellTokens:
    """Words and separators of a shell script, enough to find the commands it runs.

    Quotes, ``$(...)`` (its commands are scanned as commands of their own), ``${...}``,
    ``$((...))``, redirections, comments, array assignments and line continuations; no heredocs.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line = 1
        self.tokens: list[_Word | str] = []
        self.inner: list[list[_Word | str]] = []

    def _peek(self, offset: int = 0) -> str:
        j = self.i + offset
        return self.text[j] if j < len(self.text) else ""

    def _advance(self, count: int = 1) -> str:
        chunk = self.text[self.i : self.i + count]
        self.line += chunk.count("\n")
        self.i += count
        return chunk

    def _balanced(self, opening: str, closing: str) -> str:
        """From just after an opening bracket to its match (quotes respected)."""
        depth, start = 1, self.i
        while self.i < len(self.text) and depth:
            char = self._peek()
            if char in "'\"":
                self._quoted(_Word())
                continue
            if char == "\\":
                self._advance(2)
                continue
            if char == opening:
                depth += 1
            elif char == closing:
                depth -= 1
            self._advance()
        return self.text[start : self.i - 1]

    def _dollar(self, word: _Word) -> None:
        word.dynamic = True
        self._advance()  # $
        if self.text.startswith("((", self.i):
            self._advance(2)
            self._balanced("(", ")")
            self._advance()  # the second )
        elif self._peek() == "(":
            self._advance()
            line = self.line
            body = self._balanced("(", ")")
            inner = _ShellTokens(body)
            inner.line = line
            inner.run()
            self.inner.append(inner.tokens)
            self.inner.extend(inner.inner)
        elif self._peek() == "{":
            self._advance()
            self._balanced("{", "}")

    def _quoted(self, word: _Word) -> None:
        quote = self._advance()
        while self.i < len(self.text) and self._peek() != quote:
            char = self._peek()
            if quote == '"' and char == "\\":
                word.text += self._advance(2)[-1:]
            elif quote == '"' and char == "$":
                self._dollar(word)
            elif quote == '"' and char == "`":
                word.dynamic = True
                self._advance()
                while self.i < len(self.text) and self._peek() != "`":
                    self._advance()
                self._advance()
            else:
                word.text += self._advance()
        self._advance()

    def run(self) -> None:
        word: _Word | None = None

        def flush() -> None:
            nonlocal word
            if word is not None:
                self.tokens.append(word)
                word = None

        while self.i < len(self.text):
            char = self._peek()
            if char == "\\" and self._peek(1) == "\n":
                self._advance(2)
                continue
            if char in " \t":
                flush()
                self._advance()
                continue
            if char == "#" and word is None:
                while self.i < len(self.text) and self._peek() != "\n":
                    self._advance()
                continue
            if char == "\n":
                flush()
                self.tokens.append("\n")
                self._advance()
                continue
            if char in "<>" or (char == "&" and self._peek(1) == ">"):
                if word is not None and word.text.isdigit() and not word.dynamic:
                    word = None  # a file descriptor: 2>
                flush()
                while self._peek() in "<>&":
                    self._advance()
                while self._peek() in " \t":
                    self._advance()
                target = _Word()  # the redirection's target: not a command word
                self._word_chars(target)
                continue
            if char == "(" and word is not None and word.text.endswith("="):
                self._advance()
                self._balanced("(", ")")  # an array assignment: a=( ... )
                continue
            if char == "(" and self._peek(1) == "(" and word is None:
                self._advance(2)
                self._balanced("(", ")")  # (( arithmetic ))
                self._advance()
                continue
            if char in ";&|()":
                flush()
                two = self.text[self.i : self.i + 2]
                if two in (";;", "&&", "||", "|&"):
                    self.tokens.append(self._advance(2))
                else:
                    self.tokens.append(self._advance())
                continue
            if word is None:
                word = _Word(line=self.line)
            self._word_chars(word, stop_at_space=True)
        flush()

    def _word_chars(self, word: _Word, stop_at_space: bool = True) -> None:
        """Characters of one word up to a blank or an operator."""
        if not word.line:
            word.line = self.line
        while self.i < len(self.text):
            char = self._peek()
            if char in " \t\n;&|()<>":
                return
            if char in "'\"":
                self._quoted(word)
            elif char == "$":
                self._dollar(word)
            elif char == "`":
                word.dynamic = True
                self._advance()
                while self.i < len(self.text) and self._peek() != "`":
                    self._advance()
                self._advance()
            elif char == "\\":
                word.text += self._advance(2)[-1:]
            else:
                if char in "*?[" and not word.text.endswith("="):
                    word.dynamic = word.dynamic or char != "["
                word.text += self._advance()


def _shell_functions(text: str) -> set[str]:
    return set(re.findall(r"^\s*(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\)", text, re.M))


def shell_programs(text: str, path: str, first_line: int = 1, guest: bool = False) -> list[Use]:
    """The programs a shell script runs or checks for with ``command -v``."""
    tokens = _ShellTokens(text)
    tokens.run()
    functions = _shell_functions(text)
    uses: list[Use] = []
    for stream in (tokens.tokens, *tokens.inner):
        for words in _simple_commands(stream):
            for word in _command_words(words, functions):
                name = program_name(word.text)
                if name:
                    uses.append(Use(name, path, first_line + word.line - 1, guest))
    return uses


def _simple_commands(stream: list[_Word | str]) -> Iterator[list[_Word]]:
    """The word lists of the simple commands, without case patterns and function headers."""
    words: list[_Word] = []
    case_state: list[str] = []  # per open case: "pattern" or "body"
    previous: _Word | str | None = None
    for token in [*stream, "\n"]:
        if isinstance(token, _Word):
            if case_state and case_state[-1] == "pattern":
                if token.text == "esac" and not words:
                    case_state.pop()
                else:
                    words.append(token)  # part of a pattern, dropped at its ")"
                previous = token
                continue
            words.append(token)
            previous = token
            continue
        if case_state and case_state[-1] == "pattern":
            if token == ")":
                words = []
                case_state[-1] = "body"
            elif token in ("\n", ";;"):
                words = []
            previous = token
            continue
        if token == "(" and isinstance(previous, _Word) and len(words) == 1:
            words = []  # name() { ...: a function definition
        if words and words[0].text == "case" and not words[0].dynamic:
            case_state.append("pattern")
            words = []
        elif words:
            yield words
            words = []
        if token == ";;" and case_state:
            case_state[-1] = "pattern"
        previous = token


def _command_words(words: list[_Word], functions: set[str]) -> Iterator[_Word]:
    i = 0
    while (
        i < len(words)
        and not words[i].dynamic
        and (
            words[i].text in SHELL_KEYWORDS or re.match(r"[A-Za-z_]\w*(\[.*\])?\+?=", words[i].text)
        )
    ):
        i += 1
    if i == len(words) or words[i].dynamic:
        return
    word = words[i]
    if word.text in ("for", "select", "[", "[[", "test") or word.text in functions:
        return
    if word.text == "command" and i + 1 < len(words) and words[i + 1].text in ("-v", "-V"):
        yield from (w for w in words[i + 2 :] if not w.dynamic)  # command -v PROGRAM...
        return
    if word.text in SHELL_BUILTINS:
        return
    if word.text in ("exec", "command", "builtin"):
        rest = [w for w in words[i + 1 :]]
        while rest and not rest[0].dynamic and rest[0].text.startswith("-"):
            rest.pop(0)
        yield from _command_words(rest, functions)
        return
    yield word
    if word.text in ("setsid", "nohup", "env", "sudo", "timeout", "chroot"):
        rest = list(words[i + 1 :])
        while (
            rest and not rest[0].dynamic and (rest[0].text.startswith("-") or "=" in rest[0].text)
        ):
            rest.pop(0)
        if word.text in ("timeout", "chroot") and rest:
            rest.pop(0)
        yield from _command_words(rest, functions)


# ---------------------------------------------------------------------- Python


@dataclass(eq=False)
class Module:
    path: str
    tree: ast.Module
    dotted: str
    parents: dict[ast.AST, ast.AST] = field(default_factory=dict)
    nodes: list[ast.AST] = field(default_factory=list)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        package = self.dotted.rsplit(".", 1)[0] if "." in self.dotted else ""
        if self.path.endswith("__init__.py"):
            package = self.dotted
        self.nodes = list(ast.walk(self.tree))
        for node in self.nodes:
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.imports[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0],
                        None,
                    )
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, *([base] if base else [])])
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = (base, alias.name)

    def scope_of(self, node: ast.AST) -> ast.AST:
        """The innermost function (or the module) whose scope ``node`` is in."""
        parent = self.parents.get(node)
        while parent is not None and not isinstance(parent, _FUNCTIONS):
            parent = self.parents.get(parent)
        return parent if parent is not None else self.tree


_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


@dataclass(frozen=True)
class Frame:
    """Where an expression is evaluated: its module and scope, and the parameters bound by the
    call being followed (name -> ("expr", expr, frame) or ("elts", [expr...], frame))."""

    module: Module
    scope: ast.AST
    env: tuple = ()
    guest: bool = False

    def bound(self, name: str):
        for key, value in self.env:
            if key == name:
                return value
        return None

    def with_guest(self) -> Frame:
        return Frame(self.module, self.scope, self.env, True)


@dataclass(frozen=True)
class Found:
    word: str
    path: str
    line: int
    guest: bool


class Scanner:
    """Finds the programs a set of Python modules runs (see the module docstring)."""

    def __init__(self, sources: Mapping[str, str]) -> None:
        self.modules = [Module(path, ast.parse(text, path), _dotted(path))
                        for path, text in sources.items()]  # fmt: skip
        self.by_dotted = {module.dotted: module for module in self.modules}
        self.functions: dict[str, list[tuple[Module, ast.AST]]] = defaultdict(list)
        self.class_attributes: dict[str, list[tuple[Module, ast.expr]]] = defaultdict(list)
        self._calls: dict[ast.AST, list[ast.Call]] = {}
        for module in self.modules:
            for node in module.nodes:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.functions[node.name].append((module, node))
                elif isinstance(node, ast.ClassDef):
                    for item in node.body:
                        if isinstance(item, ast.AnnAssign) and item.value is not None:
                            if isinstance(item.target, ast.Name):
                                self.class_attributes[item.target.id].append((module, item.value))
                        elif isinstance(item, ast.Assign):
                            for target in item.targets:
                                if isinstance(target, ast.Name):
                                    self.class_attributes[target.id].append((module, item.value))
        self._bindings: dict[ast.AST, dict[str, list[tuple]]] = {}
        self._active: set = set()
        #: name -> {(position, is a *args parameter, runs in the VM)}
        self.wrappers: dict[str, set[tuple[int, bool, bool]]] = defaultdict(set)
        for name, (position, guest) in EXTRA_RUNNERS.items():
            self.wrappers[name].add((position, False, guest))
        self._find_wrappers()

    # ------------------------------------------------------------ bindings of names

    def bindings(self, scope: ast.AST) -> dict[str, list[tuple]]:
        if scope not in self._bindings:
            found: dict[str, list[tuple]] = defaultdict(list)
            if isinstance(scope, _FUNCTIONS):
                arguments = scope.args
                positional = [*arguments.posonlyargs, *arguments.args]
                defaults = [None] * (len(positional) - len(arguments.defaults))
                defaults += arguments.defaults
                for argument, default in (
                    *zip(positional, defaults, strict=True),
                    *zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True),
                ):
                    found[argument.arg].append(("param", default))
                if arguments.vararg:
                    found[arguments.vararg.arg].append(("vararg", None))
            for node in _walk_scope(scope):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        _bind(found, target, "value", node.value)
                elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                    _bind(found, node.target, "value", node.value)
                elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                    _bind(found, node.target, "iter", node.iter)
            self._bindings[scope] = found
        return self._bindings[scope]

    def lookup(self, name: str, frame: Frame) -> Iterator[tuple[str, object, Frame, object]]:
        """(kind, expression, frame to evaluate it in, element index) for each binding."""
        bound = frame.bound(name)
        if bound is not None:
            yield (bound[0], bound[1], bound[2], None)
            return
        scope: ast.AST | None = frame.scope
        module = frame.module
        first = True
        while scope is not None:
            here = self.bindings(scope).get(name)
            if here:
                scope_frame = frame if first else Frame(module, scope, (), frame.guest)
                for kind, expr, *index in here:
                    if kind == "param":
                        if expr is not None:
                            yield ("value", expr, _outer(module, scope, frame.guest), None)
                    elif kind != "vararg":
                        yield (kind, expr, scope_frame, index[0] if index else None)
                return
            if scope is module.tree:
                break
            scope = module.scope_of(scope)
            first = False
        imported = module.imports.get(name)
        if imported and imported[1] is not None and imported[0] in self.by_dotted:
            other = self.by_dotted[imported[0]]
            if imported[1] in self.bindings(other.tree):
                yield from self.lookup(imported[1], Frame(other, other.tree, (), frame.guest))

    # ------------------------------------------------------------ resolution

    def _guarded(self, key) -> bool:
        if key in self._active or len(self._active) > 40:
            return False
        self._active.add(key)
        return True

    def words(self, expr: ast.expr | None, frame: Frame) -> list[Found]:
        """The strings a single-word expression can be (a program, a script, an option)."""
        if expr is None:
            return []
        key = ("w", id(expr), frame.env)
        if not self._guarded(key):
            return []
        try:
            return list(self._words(expr, frame))
        finally:
            self._active.discard(key)

    def _words(self, expr: ast.expr, frame: Frame) -> Iterator[Found]:
        path, line, guest = frame.module.path, getattr(expr, "lineno", 0), frame.guest
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            yield Found(expr.value, path, line, guest)
        elif isinstance(expr, ast.JoinedStr):
            text = self._fold(expr, frame)
            if text is not None:
                yield Found(text, path, line, guest)
        elif isinstance(expr, ast.Name):
            for kind, value, where, index in self.lookup(expr.id, frame):
                if kind == "value":
                    yield from self.words(value, where)
                elif kind == "iter":
                    for element, element_frame in self.elements(value, where):
                        if index is None:
                            yield from self.words(element, element_frame)
                        elif isinstance(element, (ast.Tuple, ast.List)) and index < len(
                            element.elts
                        ):
                            yield from self.words(element.elts[index], element_frame)
                elif kind == "expr":
                    yield from self.words(value, where)
                elif kind == "elts" and value:
                    yield from self.words(value[0], where)
        elif isinstance(expr, ast.Attribute):
            if isinstance(expr.value, ast.Name) and (expr.value.id, expr.attr) == (
                "sys",
                "executable",
            ):
                yield Found("<sys.executable>", path, line, guest)
                return
            module = self._imported_module(expr.value, frame)
            if module is not None:
                yield from self.lookup_words(expr.attr, module, guest)
                return
            for owner, value in self.class_attributes.get(expr.attr, ()):
                yield from self.words(value, Frame(owner, owner.tree, (), guest))
        elif isinstance(expr, ast.Call):
            name = _call_name(expr)
            if name in ("which", "str", "fspath", "abspath", "realpath") and expr.args:
                yield from self.words(expr.args[0], frame)
        elif isinstance(expr, ast.BoolOp):
            for value in expr.values:
                yield from self.words(value, frame)
        elif isinstance(expr, ast.IfExp):
            yield from self.words(expr.body, frame)
            yield from self.words(expr.orelse, frame)

    def lookup_words(self, name: str, module: Module, guest: bool) -> Iterator[Found]:
        for kind, value, where, _ in self.lookup(name, Frame(module, module.tree, (), guest)):
            if kind == "value":
                yield from self.words(value, where)

    def _imported_module(self, expr: ast.expr, frame: Frame) -> Module | None:
        if not isinstance(expr, ast.Name):
            return None
        imported = frame.module.imports.get(expr.id)
        if not imported:
            return None
        dotted = imported[0] if imported[1] is None else f"{imported[0]}.{imported[1]}"
        return self.by_dotted.get(dotted)

    def _fold(self, expr: ast.JoinedStr, frame: Frame) -> str | None:
        """An f-string whose every placeholder is one known string, else None."""
        parts = []
        for value in expr.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
                continue
            if value.format_spec is not None or value.conversion not in (-1, None):
                return None
            options = {found.word for found in self.words(value.value, frame)}
            if len(options) != 1:
                return None
            parts.append(options.pop())
        return "".join(parts)

    def _static_prefix(self, expr: ast.JoinedStr, frame: Frame) -> str:
        folded = self._fold(expr, frame)
        if folded is not None:
            return folded
        prefix = ""
        for value in expr.values:
            if not isinstance(value, ast.Constant):
                break
            prefix += str(value.value)
        # only the complete words before the first placeholder
        return prefix[: max(prefix.rfind(" "), prefix.rfind("\n"), 0)] if prefix else ""

    def elements(self, expr: ast.expr | None, frame: Frame) -> list[tuple[ast.expr, Frame]]:
        """The items of an iterable expression (a dict: its keys)."""
        if expr is None:
            return []
        key = ("e", id(expr), frame.env)
        if not self._guarded(key):
            return []
        try:
            return list(self._elements(expr, frame))
        finally:
            self._active.discard(key)

    def _elements(self, expr: ast.expr, frame: Frame) -> Iterator[tuple[ast.expr, Frame]]:
        if isinstance(expr, (ast.List, ast.Tuple, ast.Set)):
            for element in expr.elts:
                if isinstance(element, ast.Starred):
                    yield from self.elements(element.value, frame)
                else:
                    yield element, frame
        elif isinstance(expr, ast.Dict):
            for element in expr.keys:
                if element is not None:
                    yield element, frame
        elif isinstance(expr, ast.Name):
            for kind, value, where, _ in self.lookup(expr.id, frame):
                if kind in ("value", "expr"):
                    yield from self.elements(value, where)
                elif kind == "elts":
                    for element in value:
                        yield element, where
        elif isinstance(expr, ast.Attribute):
            module = self._imported_module(expr.value, frame)
            if module is not None:
                for kind, value, where, _ in self.lookup(
                    expr.attr, Frame(module, module.tree, (), frame.guest)
                ):
                    if kind == "value":
                        yield from self.elements(value, where)
        elif isinstance(expr, ast.Call):
            name = _call_name(expr)
            if name in ("list", "tuple", "sorted", "set", "reversed") and expr.args:
                yield from self.elements(expr.args[0], frame)
            elif name in ("items", "keys") and isinstance(expr.func, ast.Attribute):
                yield from self.elements(expr.func.value, frame)
            else:
                for returned, where in self._returns(expr, frame):
                    yield from self.elements(returned, where)

    def _returns(self, call: ast.Call, frame: Frame) -> Iterator[tuple[ast.expr, Frame]]:
        """The return expressions of the project's functions of that name, with the call's
        arguments bound to their parameters."""
        name = _call_name(call)
        for module, function in self.functions.get(name or "", ()):
            env = self._bind_call(function, call, frame, module)
            inner = Frame(module, function, env, frame.guest)
            for node in _walk_scope(function):
                if isinstance(node, ast.Return) and node.value is not None:
                    yield node.value, inner

    def _bind_call(self, function, call: ast.Call, frame: Frame, module: Module) -> tuple:
        arguments = function.args
        params = [a.arg for a in (*arguments.posonlyargs, *arguments.args)]
        if params and params[0] in ("self", "cls") and isinstance(call.func, ast.Attribute):
            params = params[1:]
        env: dict[str, tuple] = {}
        extra: list[ast.expr] = []
        for index, argument in enumerate(call.args):
            if index < len(params) and not isinstance(argument, ast.Starred):
                env[params[index]] = ("expr", argument, frame)
            elif index >= len(params):
                extra.append(argument)
            else:
                break
        if arguments.vararg:
            env[arguments.vararg.arg] = ("elts", tuple(extra), frame)
        for keyword in call.keywords:
            if keyword.arg:
                env[keyword.arg] = ("expr", keyword.value, frame)
        return tuple(env.items())

    def command(self, expr: ast.expr | None, frame: Frame) -> list[Found]:
        """The programs one command (an argument list or a shell string) runs."""
        if expr is None:
            return []
        key = ("c", id(expr), frame.env, frame.guest)
        if not self._guarded(key):
            return []
        try:
            return list(self._command(expr, frame))
        finally:
            self._active.discard(key)

    def _command(self, expr: ast.expr, frame: Frame) -> Iterator[Found]:
        line = getattr(expr, "lineno", 0)  # none: the wrapper search's marker
        if isinstance(expr, (ast.List, ast.Tuple)):
            yield from self.argv(expr.elts, frame)
        elif isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            yield from self._shell(expr.value, line, frame)
        elif isinstance(expr, ast.JoinedStr):
            yield from self._shell(self._static_prefix(expr, frame), line, frame)
        elif isinstance(expr, ast.Name):
            for kind, value, where, index in self.lookup(expr.id, frame):
                where = where.with_guest() if frame.guest else where
                if kind in ("value", "expr"):
                    yield from self.command(value, where)
                elif kind == "elts":
                    yield from self.argv(value, where)
                elif kind == "iter":
                    for element, element_frame in self.elements(value, where):
                        if index is not None:
                            if not isinstance(element, (ast.Tuple, ast.List)):
                                continue
                            if index >= len(element.elts):
                                continue
                            element = element.elts[index]
                        yield from self.command(element, element_frame)
        elif isinstance(expr, ast.Call):
            name = _call_name(expr)
            if name in ("list", "tuple") and expr.args:
                yield from self.command(expr.args[0], frame)
            elif name == "split" and isinstance(expr.func, ast.Attribute):
                yield from self.command(expr.args[0] if expr.args else None, frame)
            else:
                for returned, where in self._returns(expr, frame):
                    yield from self.command(returned, where)
        elif isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            yield from self.command(expr.left, frame)
        elif isinstance(expr, ast.IfExp):
            yield from self.command(expr.body, frame)
            yield from self.command(expr.orelse, frame)
        elif isinstance(expr, ast.BoolOp):
            for value in expr.values:
                yield from self.command(value, frame)

    def _shell(self, text: str, line: int, frame: Frame) -> Iterator[Found]:
        for use in shell_programs(text, frame.module.path, line, frame.guest):
            yield Found(use.program, use.path, use.line, use.guest)

    def argv(self, elements: list[ast.expr], frame: Frame) -> Iterator[Found]:
        """The programs of an argument list: its first word, and what wrappers in it run."""
        i = 0
        while i < len(elements):
            element = elements[i]
            if isinstance(element, ast.Starred):
                yield from self.command(element.value, frame)
                return
            found = self.words(element, frame)
            if len(elements) == 1 and any(" " in f.word or "\n" in f.word for f in found):
                for each in found:  # one string: a shell command line
                    yield from self._shell(each.word, each.line, frame)
                return
            yield from found
            names = {program_name(f.word) for f in found}
            constant = [self._constant(e, frame) for e in elements]
            start, guest, script = _wrapped(names & WRAPPERS, constant, i)
            if script is not None:
                for each in self.words(elements[script], frame):
                    yield from self._shell(each.word, each.line, frame)
                return
            if start is None:
                return
            if guest:
                frame = frame.with_guest()
            i = start

    def _constant(self, expr: ast.expr, frame: Frame) -> str | None:
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return expr.value
        if isinstance(expr, ast.JoinedStr):
            return "".join(str(v.value) for v in expr.values if isinstance(v, ast.Constant))
        return None

    # ------------------------------------------------------------ call sites

    def runner(self, call: ast.Call, module: Module) -> list[tuple[str, list[int], bool, bool]]:
        """How ``call`` runs a command: [(mode, positions, *args style, runs in the VM)]."""
        func = call.func
        name = _call_name(call)
        qualifier = None
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            imported = module.imports.get(func.value.id)
            qualifier = func.value.id
            if imported:
                qualifier = imported[0] if imported[1] is None else ".".join(imported)
        elif isinstance(func, ast.Name):
            imported = module.imports.get(func.id)
            if imported and imported[1] is not None:
                qualifier, name = imported
        ways = []
        if (qualifier, name) in QUALIFIED_RUNNERS:
            position, guest = QUALIFIED_RUNNERS[(qualifier, name)]
            return [("argv", [position], False, guest)]
        if (qualifier, name) in STDLIB_RUNNERS:
            mode, position = STDLIB_RUNNERS[(qualifier, name)]
            ways.append((mode, [position], mode == "varargs", False))
        elif (qualifier, name) == ("os", "access"):
            ways.append(("path", [0], False, False))
        elif name in MININET_FUNCTIONS or (
            isinstance(func, ast.Attribute) and name in MININET_METHODS and qualifier != "os"
        ):
            ways.append(("argv", [0], True, False))
        if name in self.wrappers and qualifier not in ("subprocess", "os", "asyncio", "shutil"):
            for position, varargs, guest in self.wrappers[name]:
                ways.append(("wrapper", [position], varargs, guest))
        return ways

    def call_site(self, call: ast.Call, frame: Frame) -> list[Found]:
        found: list[Found] = []
        for mode, positions, varargs, guest in self.runner(call, frame.module):
            here = frame.with_guest() if guest else frame
            for position in positions:
                found.extend(self._site(call, position, mode, varargs, here))
        return found

    def _site(self, call: ast.Call, position: int, mode: str, varargs: bool, frame: Frame):
        arguments = call.args
        if any(isinstance(a, ast.Starred) for a in arguments[:position]):
            return []
        if position >= len(arguments):
            keyword = next((k.value for k in call.keywords if k.arg in ("args", "cmd")), None)
            return self.command(keyword, frame) if mode == "argv" and position == 0 else []
        if mode in ("word", "path"):
            found = self.words(arguments[position], frame)
            if mode == "path":
                executable = any(
                    isinstance(a, ast.Attribute) and a.attr == "X_OK" for a in arguments[1:]
                )
                return [f for f in found if executable and re.search(r"/s?bin/", f.word)]
            return found
        if varargs and len(arguments) - position > 1:
            return list(self.argv(arguments[position:], frame))
        if isinstance(arguments[position], ast.Starred):
            return self.command(arguments[position].value, frame)
        if mode == "wrapper" and not self.listish(arguments[position], frame):
            return []  # wrappers are known by name only: `run(host, argv)` is not `run(argv)`
        return self.command(arguments[position], frame)

    def listish(self, expr: ast.expr | None, frame: Frame) -> bool:
        """Whether ``expr`` can be a command: an argument list, or a shell line (a string with a
        blank), rather than a host name or a path."""
        if expr is None:
            return False
        key = ("l", id(expr), frame.env)
        if not self._guarded(key):
            return False
        try:
            return self._listish(expr, frame)
        finally:
            self._active.discard(key)

    def _listish(self, expr: ast.expr, frame: Frame) -> bool:
        if isinstance(expr, (ast.List, ast.Tuple, ast.ListComp, ast.BinOp, ast.Starred)):
            return True
        if isinstance(expr, ast.Constant):
            return isinstance(expr.value, str) and (expr.value == SENTINEL or " " in expr.value)
        if isinstance(expr, ast.JoinedStr):
            return " " in self._static_prefix(expr, frame)
        if isinstance(expr, ast.IfExp):
            return self.listish(expr.body, frame) or self.listish(expr.orelse, frame)
        if isinstance(expr, ast.Name):
            for kind, value, where, index in self.lookup(expr.id, frame):
                if kind in ("value", "expr") and self.listish(value, where):
                    return True
                if kind == "elts":
                    return True
                if kind == "iter":
                    for element, element_frame in self.elements(value, where):
                        if isinstance(element, (ast.Tuple, ast.List)) and (
                            index is not None and index < len(element.elts)
                        ):
                            element = element.elts[index]
                        if self.listish(element, element_frame):
                            return True
            return False
        if isinstance(expr, ast.Call):
            name = _call_name(expr)
            if name in ("list", "tuple", "split"):
                return True
            return any(self.listish(value, where) for value, where in self._returns(expr, frame))
        return False

    def _find_wrappers(self) -> None:
        """Functions whose parameter reaches a program position of a command they run."""
        functions = [(m, f) for defs in self.functions.values() for m, f in defs]
        changed = True
        while changed:
            changed = False
            for module, function in functions:
                for way in self._wrapper_ways(function, module):
                    if way not in self.wrappers[function.name]:
                        self.wrappers[function.name].add(way)
                        changed = True

    def _wrapper_ways(self, function, module: Module) -> Iterator[tuple[int, bool, bool]]:
        arguments = function.args
        params = [a.arg for a in (*arguments.posonlyargs, *arguments.args)]
        method = bool(params) and params[0] in ("self", "cls")
        candidates = [(name, index - method, False) for index, name in enumerate(params)]
        if arguments.vararg:
            candidates.append((arguments.vararg.arg, len(params) - method, True))
        if function not in self._calls:
            self._calls[function] = [n for n in _walk_scope(function) if isinstance(n, ast.Call)]
        calls = [c for c in self._calls[function] if self.runner(c, module)]
        for name, position, varargs in candidates:
            if position < 0:
                continue
            marker, plain = ast.Constant(SENTINEL), Frame(module, function)
            value = ("elts", (marker,), plain) if varargs else ("expr", marker, plain)
            frame = Frame(module, function, ((name, value),))
            for call in calls:
                for found in self.call_site(call, frame):
                    if found.word == SENTINEL:
                        yield (position, varargs, found.guest)

    def scan(self) -> list[Use]:
        uses: set[Use] = set()
        for module in self.modules:
            guest = module.path.startswith(GUEST_CODE)
            for node in module.nodes:
                found: list[Found] = []
                if isinstance(node, ast.Call):
                    frame = Frame(module, module.scope_of(node), (), guest)
                    found = self.call_site(node, frame)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                    node.name.endswith(("_command", "_commands"))
                ):
                    frame = Frame(module, node, (), guest)
                    for returned in _walk_scope(node):
                        if isinstance(returned, ast.Return):
                            found.extend(self._builder(returned.value, frame))
                for each in found:
                    name = program_name(each.word)
                    if name and name != SENTINEL:
                        uses.add(Use(name, each.path, each.line, each.guest))
        return sorted(uses, key=lambda u: (u.program, u.path, u.line))

    def _builder(self, expr: ast.expr | None, frame: Frame) -> list[Found]:
        """A builder returns a command or a list of commands."""
        if (
            isinstance(expr, (ast.List, ast.Tuple))
            and expr.elts
            and all(isinstance(e, (ast.List, ast.Tuple)) for e in expr.elts)
        ):
            return [f for e in expr.elts for f in self.command(e, frame)]
        if isinstance(expr, ast.Name):
            found = []
            for kind, value, where, _ in self.lookup(expr.id, frame):
                if kind == "value":
                    found.extend(self._builder(value, where))
            return found
        return self.command(expr, frame)


def _wrapped(names: set[str], constant: list[str | None], i: int):
    """Where the command wrapped by the program at ``i`` starts: (index, runs in the VM, index
    of a shell script) -- (None, False, None) if it wraps none."""

    def at(j: int) -> str | None:
        return constant[j] if j < len(constant) else None

    for name in names:
        if name == "ip" and at(i + 1) == "netns" and at(i + 2) == "exec":
            return i + 4, False, None
        if name in ("sh", "bash", "dash"):
            j = i + 1
            while (at(j) or "").startswith("-"):
                if at(j) == "-c":
                    return None, False, j + 1
                j += 1
            return None, False, None
        if name == "chroot":
            return i + 2, True, None
        if name == "setpriv":
            for j in range(i + 1, len(constant)):
                if at(j) == "--":
                    return j + 1, False, None
            return None, False, None
        if name in ("mnexec", "env", "unshare", "nsenter", "timeout", "nohup", "setsid", "sudo"):
            j = i + 1
            while j < len(constant):
                word = at(j)
                if word is not None and word.startswith("-"):
                    takes_value = name == "mnexec" and any(c in word for c in "agr")
                    j += 2 if takes_value else 1
                elif name == "env" and (word is None or "=" in word):
                    j += 1
                else:
                    break
            return (j + 1 if name == "timeout" else j), False, None
    return None, False, None


def _dotted(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def _call_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _walk_scope(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a scope, not those of the functions and classes defined in it."""
    body = [scope.body] if isinstance(scope, ast.Lambda) else scope.body
    stack = list(body if isinstance(body, list) else [body])
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (*_FUNCTIONS, ast.ClassDef)):
                stack.append(child)
            elif isinstance(child, ast.ClassDef):
                stack.extend(c for c in child.body if not isinstance(c, _FUNCTIONS))


def _bind(found: dict, target: ast.expr, kind: str, value: ast.expr) -> None:
    if isinstance(target, ast.Name):
        found[target.id].append((kind, value))
    elif isinstance(target, (ast.Tuple, ast.List)):
        for index, element in enumerate(target.elts):
            if not isinstance(element, ast.Name):
                continue
            if kind == "iter":
                found[element.id].append(("iter", value, index))
            elif isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts):
                found[element.id].append(("value", value.elts[index]))


def _outer(module: Module, scope: ast.AST, guest: bool) -> Frame:
    """Where a parameter's default is evaluated: the scope around the function."""
    return Frame(module, module.scope_of(scope), (), guest)


# ---------------------------------------------------------------------- the whole project


def project_sources() -> dict[str, str]:
    paths = sorted({p for pattern in PYTHON_SOURCES for p in ROOT.glob(pattern)})
    return {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in paths}


def project_scripts() -> dict[str, bool]:
    """Shell scripts -> whether they run in the VM."""
    scripts = {p: False for pattern in HOST_SCRIPTS for p in sorted(ROOT.glob(pattern))}
    scripts |= {p: True for pattern in GUEST_SCRIPTS for p in sorted(ROOT.glob(pattern))}
    return {p.relative_to(ROOT).as_posix(): guest for p, guest in scripts.items()}


def scan_project() -> list[Use]:
    uses = Scanner(project_sources()).scan()
    for path, guest in project_scripts().items():
        if path not in NOT_SCANNED:
            uses += shell_programs((ROOT / path).read_text(encoding="utf-8"), path, guest=guest)
    return uses


def unprovided(uses: Iterable[Use], manifest: Mapping[str, tuple[str, ...]]) -> list[Use]:
    host, guest = providers(manifest), guest_providers(manifest)
    return [
        use for use in uses
        if use.program not in OWN_PROGRAMS and use.program not in NOT_PROGRAMS
        and use.program not in (guest if use.guest else host)
    ]  # fmt: skip


def failure_message(missing: Iterable[Use]) -> str:
    places: dict[tuple[str, bool], list[str]] = defaultdict(list)
    for use in missing:
        places[(use.program, use.guest)].append(use.where)
    lines = ["programs the project runs that no package provides:"]
    for (program, guest), wheres in sorted(places.items()):
        fix = (
            "runs in the VM: add the package that provides it to GUEST_PACKAGES in "
            f"dmsc/vm/image.py (and the program to GUEST_PROGRAMS in {Path(__file__).name})"
            if guest
            else f"add the package that provides it to {MANIFEST_NAME}"
        )
        lines.append(f"  {program} ({', '.join(wheres)}): {fix}")
    lines.append(
        f"({MANIFEST_NAME}: a line `PACKAGE PROGRAM... # why`; `dpkg -S $(command -v PROGRAM)` "
        "names the package)"
    )
    return "\n".join(lines)


@pytest.fixture(scope="module")
def manifest() -> dict[str, tuple[str, ...]]:
    return read_manifest()


@pytest.fixture(scope="module")
def uses() -> list[Use]:
    return scan_project()


# ---------------------------------------------------------------------- the tests


def test_setup_installs_every_program_the_project_runs(uses, manifest):
    missing = unprovided(uses, manifest)
    assert not missing, failure_message(missing)


def test_the_scan_finds_the_programs_it_must(uses):
    """A guard against a scanner that silently finds nothing: programs known to be run."""
    host = {use.program for use in uses if not use.guest}
    guest = {use.program for use in uses if use.guest}
    assert {"ip", "tc", "ethtool", "sysctl", "mnexec", "iperf3", "ping", "traceroute", "ss",
            "ovs-ofctl", "tshark", "tcpdump", "git", "qemu-system-x86_64", "debootstrap",
            "mke2fs", "dpkg-deb", "chroot", "apt-get", "setpriv", "modinfo", "pgrep", "unshare",
            "umount", "dpkg-query", "sha256sum"} <= host  # fmt: skip
    assert {"ovsdb-tool", "depmod", "ovs-vsctl", "ovs-dpctl", "mn", "tc", "ping",
            "modprobe", "mount"} <= guest  # fmt: skip


def test_the_scan_reports_an_unknown_program_with_its_place_and_the_fix(manifest):
    source = (
        "import subprocess\n"
        "\n"
        "def start(host):\n"
        '    subprocess.run(["dmsc-no-such-tool", "--now"], check=True)\n'
        '    host.cmd("ip", "link", "set", "lo", "up")\n'
    )
    uses = Scanner({"snippet.py": source}).scan()
    uses += shell_programs("command -v frobnicate >/dev/null || exit 1\n", "snippet.sh")
    missing = unprovided(uses, manifest)
    assert [(use.program, use.where) for use in missing] == [
        ("dmsc-no-such-tool", "snippet.py:4"),
        ("frobnicate", "snippet.sh:1"),
    ]
    message = failure_message(missing)
    assert (
        f"dmsc-no-such-tool (snippet.py:4): add the package that provides it to {MANIFEST_NAME}"
        in message
    )
    assert f"frobnicate (snippet.sh:1): add the package that provides it to {MANIFEST_NAME}" in (
        message
    )


PATTERNS = {
    "an argument list": ('subprocess.run(["tcpdump", "-r", path])', {"tcpdump"}),
    "a shell string": ('subprocess.run("pgrep -f x | sort", shell=True)', {"pgrep", "sort"}),
    "Mininet's cmd, words": ('host.cmd("ss", "-Hltn")', {"ss"}),
    "Mininet's cmd, a line": ('host.cmd(f"ethtool -K {name} tso off")', {"ethtool"}),
    "a splat": ('CLIENT = ["traceroute", "-6"]\nhost.popen([*CLIENT, name])', {"traceroute"}),
    "a name": ('def f():\n    argv = ["iperf3", "-s"]\n    host.popen(argv)', {"iperf3"}),
    "a default": (
        'def f(probe=("modinfo", "x")):\n    c = list(probe)\n    subprocess.run(c)',
        {"modinfo"},
    ),
    "a loop": ('for c in (["tc", "q"], ["ip", "l"]):\n    subprocess.run(c)', {"tc", "ip"}),
    "wrappers": (
        'subprocess.Popen(["mnexec", "-a", pid, "sh", "-c", "sleep 1; kill 2"])',
        {"mnexec", "sh", "sleep"},
    ),
    "a builder with bound arguments": (
        'def netns(ns, argv):\n    return ["ip", "netns", "exec", ns, *argv]\n'
        'subprocess.run(netns("a", ["ping6", "x"]))',
        {"ip", "ping6"},
    ),
    "a project wrapper": (
        "def run(argv):\n    return subprocess.run(list(argv))\n"
        'class S:\n    def ns(self, name, argv):\n        return run(["ip", "netns", "exec", '
        "name, *argv])\n"
        's = S()\ns.ns("n", ["bridge", "link"])',
        {"ip", "bridge"},
    ),
    "a *_commands builder": (
        'def clear_commands(i):\n    return [["tc", "qdisc", "del", "dev", i]]',
        {"tc"},
    ),
    "which and os.access": (
        'shutil.which("qemu-img")\nos.access("/usr/bin/tshark", os.X_OK)',
        {"qemu-img", "tshark"},
    ),
    "not a program": ('subprocess.run([sys.executable, "-m", "dmsc"])', {"<sys.executable>"}),
}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_scanner_sees_each_way_of_running_a_program(pattern):
    source, expected = PATTERNS[pattern]
    header = "import os\nimport shutil\nimport subprocess\nimport sys\n"
    uses = Scanner({"snippet.py": header + source}).scan()
    assert {use.program for use in uses} == expected


def test_chroot_runs_in_the_image_and_its_wrapped_program_is_a_guest_program():
    source = (
        "import subprocess\n"
        "class Commands:\n"
        "    def run(self, argv):\n"
        "        return subprocess.run(list(argv))\n"
        "    def chroot(self, root, argv):\n"
        '        return self.run(["chroot", str(root), *argv])\n'
        'Commands().chroot("/r", ["depmod", "-a"])\n'
    )
    uses = Scanner({"snippet.py": source}).scan()
    assert {(use.program, use.guest) for use in uses} == {("chroot", False), ("depmod", True)}


def test_shell_scripts_yield_commands_not_keywords_patterns_or_functions():
    script = (
        "#!/bin/bash\n"
        "set -euo pipefail\n"
        'cd "$(dirname "$(readlink -f "$0")")"\n'
        "say() { printf '%s\\n' \"$*\" >&2; }\n"
        "command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)\n"
        'case "$1" in\n'
        "    setup) say x ;;\n"
        '    main) exec "$VENV/bin/dmsc" run ;;\n'
        "    *) sed -n '2,3p' \"$0\" | grep -q x 2>/dev/null ;;\n"
        "esac\n"
        'for p in a b; do dpkg-query -W "$p"; done\n'
        "if [ -z x ] && ! id -u; then X=1 exec bash scripts/x.sh; fi\n"
    )
    found = {use.program: use.line for use in shell_programs(script, "x")}
    assert found == {"dirname": 3, "readlink": 3, "qemu-system-x86_64": 5, "sed": 9, "grep": 9,
                     "dpkg-query": 11, "id": 12, "bash": 12}  # fmt: skip


def test_every_program_is_listed_for_one_package_only(manifest):
    seen: dict[str, list[str]] = defaultdict(list)
    for package, programs in manifest.items():
        for program in programs:
            seen[program].append(package)
    assert {p: s for p, s in seen.items() if len(s) > 1} == {}


def test_the_manifest_names_the_right_package_of_each_installed_program(manifest):
    """On a Debian machine, `dpkg -S` of each listed program that is installed names the package
    the manifest gives (Debian 12 merged /usr: a file may be registered under /bin or /usr/bin,
    and an alternative (awk) is registered under its target)."""
    if shutil.which("dpkg") is None:
        pytest.skip("not a Debian machine")
    wrong = []
    for package, programs in manifest.items():
        for program in programs:
            path = shutil.which(program, path=SYSTEM_PATH)
            if path is None:
                continue  # not installed here
            owners = _dpkg_owners(Path(path))
            if package not in owners:
                wrong.append(f"{program}: {MANIFEST_NAME} says {package}, dpkg -S: {owners}")
    assert not wrong, "\n".join(wrong)


SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _dpkg_owners(path: Path) -> set[str]:
    names = {path.name, path.resolve().name}
    candidates = [f"{directory}/{name}" for name in names for directory in SYSTEM_PATH.split(":")]
    done = subprocess.run(["dpkg", "-S", *candidates], capture_output=True, text=True)
    owners: set[str] = set()
    for line in done.stdout.splitlines():
        if line.startswith(("diversion by", "local diversion")):
            continue
        packages, _, _ = line.partition(": ")
        owners |= {p.strip().split(":")[0] for p in packages.split(",")}
    return owners


def test_testbed_reads_the_same_packages_from_the_manifest(manifest):
    """testbed's own reading of the manifest (bash) gives the packages this test checks."""
    function = _bash_function((ROOT / "testbed").read_text(), "debian_packages")
    script = f"{function}\nDEBIAN_PACKAGES={shlex.quote(str(MANIFEST))}\ndebian_packages\n"
    shell = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert shell.stdout.split() == list(manifest)
    assert "APT_PACKAGES" not in (ROOT / "testbed").read_text()


def _bash_function(text: str, name: str) -> str:
    match = re.search(rf"^{name}\(\) \{{.*?^\}}\n", text, re.M | re.S)
    assert match, f"no {name}() in testbed"
    return match.group(0)


def test_the_scanned_files_exist():
    for path in (*NOT_SCANNED, *project_scripts()):
        assert (ROOT / path).exists(), path
    assert os.path.exists(MANIFEST)
