#!/usr/bin/env python3
"""cvc5 as an interactive SMT-LIB solver on stdin/stdout, over PyPI's cvc5 bindings.

cedar-policy-symcc speaks SMT-LIB 2 to a solver process (`cvc5 --lang smt`). Debian ships cvc5
1.0.3, older than symcc supports, and PyPI's `cvc5` wheel (1.4.2) ships the library and its Python
bindings but no executable. This script is that executable: it reads commands from stdin, runs
each through cvc5's own SMT-LIB parser and command interpreter, and prints what the cvc5 binary
would print, flushing after every command so the caller can read answers as they come.

Usage: cvc5-stdin.py [--lang smt] [--OPTION=VALUE ...] [--version]
Each --OPTION=VALUE is a cvc5 option (e.g. --tlimit-per=30000); scripts/test.sh installs this
file as `cvc5` in the test venv.
"""

import sys

try:
    import cvc5
except ImportError:  # pragma: no cover - depends on the environment
    sys.stderr.write("cvc5-stdin: the Python package `cvc5` is not installed (pip install cvc5)\n")
    sys.exit(2)


def commands(stream):
    """Yields each complete top-level S-expression of the stream as text.

    Strings ("..."), quoted symbols (|...|) and comments (; to end of line) may hold
    parentheses, so the balance is counted outside them only.
    """
    buf = []
    depth = 0
    in_str = in_quoted = in_comment = False
    while True:
        chunk = stream.readline()
        if not chunk:
            rest = "".join(buf).strip()
            if rest:
                yield rest
            return
        for ch in chunk:
            if in_comment:
                if ch == "\n":
                    in_comment = False
                continue
            buf.append(ch)
            if in_str:
                in_str = ch != '"'  # "" inside a string closes and reopens: same balance
            elif in_quoted:
                in_quoted = ch != "|"
            elif ch == '"':
                in_str = True
            elif ch == "|":
                in_quoted = True
            elif ch == ";":
                buf.pop()
                in_comment = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    yield "".join(buf)
                    buf = []


def smt_string(text):
    return '"' + text.replace('"', '""') + '"'


class Session:
    """One solver with its symbols; `(reset)` starts a new one with the command line's options.

    A fresh session rather than cvc5's reset command: the bindings' parser keeps the logic of
    the first `set-logic` across a reset and refuses the next one.
    """

    def __init__(self, options):
        self.solver = cvc5.Solver()
        for name, value in options:
            self.solver.setOption(name, value)
        self.symbols = cvc5.SymbolManager(self.solver)
        self.parser = cvc5.InputParser(self.solver, self.symbols)


def main(argv):
    options = []
    for arg in argv:
        if arg == "--version":
            version = cvc5.Solver().getVersion()
            if isinstance(version, bytes):
                version = version.decode()
            print(f"This is cvc5 version {version} (PyPI bindings, cvc5-stdin)")
            return 0
        if arg in ("--lang", "smt", "smt2", "--lang=smt", "--lang=smt2", "--incremental"):
            continue
        if arg.startswith("--") and "=" in arg:
            options.append(tuple(arg[2:].split("=", 1)))
            continue
        sys.stderr.write(f"cvc5-stdin: unknown argument {arg!r} (give cvc5 options as --NAME=VALUE)\n")
        return 2
    try:
        session = Session(options)
    except RuntimeError as e:
        sys.stderr.write(f"cvc5-stdin: {e}\n")
        return 2
    out = sys.stdout
    for text in commands(sys.stdin):
        # One input per command: the bindings' incremental input is dropped by set-logic.
        session.parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, "stdin")
        while True:
            try:
                command = session.parser.nextCommand()
            except RuntimeError as e:
                # As the cvc5 binary: a parse error is reported and ends the session.
                out.write(f"(error {smt_string('Parse Error: ' + str(e))})\n")
                out.flush()
                return 1
            if command.isNull():
                break
            name = command.getCommandName()
            if name == "reset":
                session = Session(options)
                break
            if name == "exit":
                return 0
            try:
                answer = command.invoke(session.solver, session.symbols)
            except RuntimeError as e:
                answer = f"(error {smt_string(str(e))})\n"
            if answer:
                out.write(answer)
                out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
