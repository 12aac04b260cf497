#!/usr/bin/env python3
"""Every log event the programs can write, checked against the catalogue in docs/OPERATIONS.md.

    log_events.py check [--source DIR] [--doc FILE]   exit 0 when code and catalogue agree, 1 otherwise
    log_events.py list  [--source DIR]                one line per (program, event): levels, fields, call sites

The C sources under lib/, registrar/, relay/, pod/ and tools/ are tokenized (comments dropped,
adjacent string literals joined) and every call of p2m_log is followed back to literals:

- the level and event arguments may be literals (P2M_LOG_INFO, "event") or conditional
  expressions of them (`c ? "a" : "b"`); the level and the event of one call are paired branch by
  branch when they test the same condition;
- an argument that names a parameter of the enclosing function or function-like macro (a wrapper
  such as tunnel_log, reg_failed or P2M_LOG_ERR) is resolved at every call of that wrapper, with the
  argument passed there, recursively. A static function is called from its own file; any other
  from its own directory, or from everywhere when it lives in lib/.

Anything else (a variable, a table lookup, NULL, a pointer to p2m_log or to a wrapper, a
wrapper never called) cannot be followed: `check` then fails and names the call, so that no event escapes the catalogue unseen.

The catalogue is the `## Log events` section: one `### ` subsection per program, each with a
Markdown table whose rows start `| `event` | levels | ...`; the heading names the program
(pipe2me-registrar, ...), or says "Several programs" for the events of lib/.
"""

import argparse
import os
import re
import sys

SOURCE_DIRS = ("lib", "registrar", "relay", "pod", "tools")
PROGRAMS = {"lib": "Several programs", "registrar": "pipe2me-registrar", "relay": "pipe2me-relay", "pod": "pipe2me-pod",
            "tools": "pipe2me-admin"}
LEVELS = {"P2M_LOG_DEBUG": "debug", "P2M_LOG_INFO": "info", "P2M_LOG_WARN": "warn", "P2M_LOG_ERROR": "error"}
LEVEL_ORDER = ["debug", "info", "warn", "error"]
ROOT = "p2m_log"  # the one function that writes a line: (level, event, fmt, ...)
MAX_DEPTH = 8  # wrapper of a wrapper of ...


# ---------------------------------------------------------------- tokens

class Tok:
    __slots__ = ("kind", "text", "line", "start", "end")

    def __init__(self, kind, text, line, start, end):
        self.kind, self.text, self.line = kind, text, line  # kind: id, str, num, chr, punct
        self.start, self.end = start, end  # offsets in the file

    def __repr__(self):
        return self.text


TOKEN_RE = re.compile(r'''
    (?P<ws>[ \t\r\f\v]+|\\\n)
  | (?P<nl>\n)
  | (?P<lcom>//[^\n]*)
  | (?P<bcom>/\*.*?\*/)
  | (?P<str>(?:u8|u|U|L)?"(?:[^"\\\n]|\\.)*")
  | (?P<chr>(?:u|U|L)?'(?:[^'\\\n]|\\.)*')
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<num>\.?[0-9](?:[eEpP][+-]|[A-Za-z0-9_.])*)
  | (?P<punct>\.\.\.|->|\+\+|--|<<=|>>=|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^!=<>]=|\#\#|[\[\](){}.,;:?~!%^&*+\-=<>|/#])
  | (?P<bad>.)
''', re.S | re.X)


def unescape(body):
    """The value of a C string literal's body, well enough to read event names and keys."""
    return re.sub(r'\\(x[0-9a-fA-F]+|[0-7]{1,3}|.)', lambda m: {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(m.group(1), "?"),
                  body)


def tokenize(text, path):
    """A list of (is_directive, [Tok]): runs of code, and preprocessor directives each on its own
    (a directive spans its continuation lines)."""
    lines, cur, line, directive, line_start = [], [], 1, False, True
    for m in TOKEN_RE.finditer(text):
        kind = m.lastgroup
        val = m.group()
        if kind == "bad":
            raise SystemExit(f"{path}:{line}: cannot tokenize {val!r}")
        if kind == "nl":
            if directive:
                lines.append((True, cur))
                cur, directive = [], False
            line += 1
            line_start = True
            continue
        line_here = line
        line += val.count("\n")
        if kind in ("ws", "lcom", "bcom"):
            continue
        if kind == "punct" and val == "#" and line_start and not directive:
            if cur:
                lines.append((False, cur))
            cur, directive = [], True
        line_start = False
        if kind == "str":
            body = unescape(val[val.index('"') + 1:-1])
            if cur and cur[-1].kind == "str":  # "a" "b" is one literal
                cur[-1].text += body
                cur[-1].end = m.end()
                continue
            cur.append(Tok("str", body, line_here, m.start(), m.end()))
        else:
            cur.append(Tok(kind, val, line_here, m.start(), m.end()))
    if cur:
        lines.append((directive, cur))
    return lines


def match_close(toks, i):
    """Index of the bracket closing toks[i]."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = []
    for j in range(i, len(toks)):
        t = toks[j].text
        if toks[j].kind != "punct":
            continue
        if t in pairs:
            stack.append(pairs[t])
        elif t in (")", "]", "}"):
            if not stack or stack.pop() != t:
                raise SystemExit(f"unbalanced {t!r} on line {toks[j].line}")
            if not stack:
                return j
    raise SystemExit(f"unclosed {toks[i].text!r} on line {toks[i].line}")


def split_args(toks):
    """Splits tokens at the commas outside brackets."""
    args, cur, depth = [], [], 0
    for t in toks:
        if t.kind == "punct" and t.text in "([{":
            depth += 1
        elif t.kind == "punct" and t.text in ")]}":
            depth -= 1
        if depth == 0 and t.kind == "punct" and t.text == ",":
            args.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur or args:
        args.append(cur)
    return args


# ---------------------------------------------------------------- functions, macros and calls

class Func:
    """A function definition or a function-like macro: where parameters come from."""

    def __init__(self, name, params, path, line, static, macro):
        self.name, self.params, self.path, self.line, self.static, self.macro = name, params, path, line, static, macro

    def scope_ok(self, caller_path):
        if self.static or (self.macro and self.path.endswith(".c")):
            return caller_path == self.path
        top = self.path.split("/")[0]
        return top == "lib" or caller_path.split("/")[0] == top


class Call:
    def __init__(self, name, args, path, line, func):
        self.name, self.args, self.path, self.line, self.func = name, args, path, line, func


def param_names(toks):
    names = []
    for arg in split_args(toks):
        ids = [t.text for t in arg if t.kind == "id"]
        if arg and arg[-1].text == "...":
            names.append("__VA_ARGS__")
        elif ids and not (len(arg) == 1 and arg[0].text == "void"):
            names.append(ids[-1])
        else:
            names.append(None)
    return names


def scan_file(path, text):
    """The functions and function-like macros a file defines, every call in a function or a macro
    body, and every other use of an identifier."""
    funcs, calls, uses = [], [], []

    def collect(toks, owner_of, in_code):
        for i, t in enumerate(toks):
            if t.kind != "id":
                continue
            if i + 1 < len(toks) and toks[i + 1].text == "(":
                if in_code(i):
                    close = match_close(toks, i + 1)
                    calls.append(Call(t.text, split_args(toks[i + 2:close]), path, t.line, owner_of(i)))
            else:
                uses.append((t.text, path, t.line))

    code = []
    for is_directive, toks in tokenize(text, path):
        if not is_directive:
            code.extend(toks)
        elif len(toks) >= 4 and toks[1].text == "define" and toks[2].kind == "id" and toks[3].text == "(" \
                and toks[3].start == toks[2].end:
            # #define NAME(params) body: a function-like macro (`#define NAME (x)` is object-like).
            close = match_close(toks, 3)
            m = Func(toks[2].text, param_names(toks[4:close]), path, toks[2].line, False, True)
            funcs.append(m)
            collect(toks[close + 1:], lambda i: m, lambda i: True)
        elif len(toks) >= 3 and toks[1].text == "define":
            collect(toks[3:], lambda i: None, lambda i: True)

    # Function bodies: a `{` at file scope right after `NAME(...)` (and any __attribute__((...))).
    owner = [None] * len(code)
    depth = [0] * len(code)
    i = 0
    while i < len(code):
        if code[i].text == "{":
            func, j = None, i - 1
            while j >= 0 and code[j].text == ")":
                k = j
                d = 0
                while k >= 0:  # the matching "("
                    d += {")": 1, "(": -1}.get(code[k].text, 0)
                    if d == 0:
                        break
                    k -= 1
                if k >= 2 and code[k - 1].text == "(" and code[k - 2].text == "__attribute__":
                    j = k - 3
                    continue
                if k >= 1 and code[k - 1].text == "__attribute__":
                    j = k - 2
                    continue
                if k >= 1 and code[k - 1].kind == "id":
                    s = k - 1
                    while s > 0 and code[s - 1].text not in (";", "}", ")"):
                        s -= 1
                    static = any(c.text == "static" for c in code[s:k - 1])
                    func = Func(code[k - 1].text, param_names(code[k + 1:j]), path, code[k - 1].line, static, False)
                    funcs.append(func)
                break
            close = match_close(code, i)
            for x in range(i + 1, close):
                owner[x] = func
                depth[x] = 1
            i = close + 1
            continue
        i += 1
    collect(code, lambda i: owner[i], lambda i: depth[i] > 0)
    return funcs, calls, uses


# ---------------------------------------------------------------- resolving arguments

def strip_parens(expr):
    while len(expr) >= 2 and expr[0].text == "(" and match_close(expr, 0) == len(expr) - 1:
        expr = expr[1:-1]
    return expr


def split_ternary(expr):
    """(cond, then, else) for a top-level `c ? a : b`, or None."""
    depth, q = 0, None
    for i, t in enumerate(expr):
        if t.kind != "punct":
            continue
        if t.text in "([{":
            depth += 1
        elif t.text in ")]}":
            depth -= 1
        elif depth == 0 and t.text == "?":
            q = i
            break
    if q is None:
        return None
    depth, nested = 0, 0
    for i in range(q + 1, len(expr)):
        t = expr[i]
        if t.kind != "punct":
            continue
        if t.text in "([{":
            depth += 1
        elif t.text in ")]}":
            depth -= 1
        elif depth == 0 and t.text == "?":
            nested += 1
        elif depth == 0 and t.text == ":":
            if nested == 0:
                return expr[:q], expr[q + 1:i], expr[i + 1:]
            nested -= 1
    return None


def choices(expr, world):
    """Yields (leaf, world) for every branch of the conditional expression expr; world maps a
    condition's text to the branch taken, so that two arguments testing one condition agree."""
    expr = strip_parens(expr)
    tern = split_ternary(expr)
    if tern is None:
        yield expr, world
        return
    cond, a, b = tern
    key = " ".join(t.text for t in strip_parens(cond))
    for taken, branch in ((True, a), (False, b)):
        if key in world and world[key] != taken:
            continue
        yield from choices(branch, {**world, key: taken})


def show(expr):
    return " ".join(('"%s"' % t.text) if t.kind == "str" else t.text for t in expr) or "(nothing)"


class Site:
    """One event as it is written: the p2m_log call, and the chain of wrapper calls that led there."""

    def __init__(self, level, event, fields, chain):
        self.level, self.event, self.fields, self.chain = level, event, fields, chain


def fields_of(exprs):
    keys = []
    for e in exprs:
        for t in e:
            if t.kind == "str":
                for k in re.findall(r'(?:^|[ "])([a-z_][a-z0-9_]*)=', t.text):
                    if k not in keys:
                        keys.append(k)
    return keys


class Catalogue:
    def __init__(self, root):
        self.funcs, self.calls, self.uses, self.errors = [], [], [], []
        for top in SOURCE_DIRS:
            base = os.path.join(root, top)
            for d, _, files in sorted(os.walk(base)):
                for f in sorted(files):
                    if f.endswith((".c", ".h")):
                        full = os.path.join(d, f)
                        rel = os.path.relpath(full, root)
                        with open(full, encoding="utf-8", errors="replace") as fh:
                            fs, cs, us = scan_file(rel, fh.read())
                        self.funcs += fs
                        self.calls += cs
                        self.uses += us
        self.sites = []
        self.wrappers = set()  # names of the functions and macros whose parameters reach p2m_log
        for c in self.calls:
            if c.name == ROOT:
                self.resolve(c, c.args[0] if c.args else [], c.args[1] if len(c.args) > 1 else [], c.args[2:], [], [])
        # p2m_log and its wrappers may only be called, never taken as a pointer.
        watched = {ROOT, *self.wrappers}
        for name, path, line in self.uses:
            if name in watched:
                self.errors.append(f"{path}:{line}: {name} used other than in a call: its events cannot be followed")

    def resolve(self, call, level, event, rest, fields, chain):
        """Adds a Site for every (level, event) that call (p2m_log's, or a wrapper's that stands for
        it) can write. rest are the arguments after the event (they carry the fields), fields the
        keys the wrappers below add, chain the calls from the one that names the event down."""
        chain = [f"{call.path}:{call.line}", *chain]
        if len(chain) > MAX_DEPTH:
            self.errors.append(f"{chain[0]}: wrappers nest deeper than {MAX_DEPTH}: {' -> '.join(chain)}")
            return
        fields = fields + [k for k in fields_of(rest) if k not in fields]
        for lv, w in choices(level, {}):
            for ev, _ in choices(event, w):
                self.resolve_pair(call, lv, ev, fields, chain)

    def resolve_pair(self, call, lv, ev, fields, chain):
        func = call.func
        params = func.params if func is not None else []

        def leaf(expr, what):
            if len(expr) == 1 and what == "level" and expr[0].text in LEVELS:
                return ("lit", LEVELS[expr[0].text])
            if len(expr) == 1 and what == "event" and expr[0].kind == "str":
                return ("lit", expr[0].text)
            if len(expr) == 1 and expr[0].kind == "id" and expr[0].text in params:
                return ("param", params.index(expr[0].text))
            return None

        l, e = leaf(lv, "level"), leaf(ev, "event")
        bad = False
        for what, x, r in (("level", lv, l), ("event", ev, e)):
            if r is None:
                bad = True
                via = f" (logged through {' -> '.join(chain[1:])})" if len(chain) > 1 else ""
                want = "a P2M_LOG_* constant" if what == "level" else "a string literal"
                self.errors.append(f"{call.path}:{call.line}: cannot follow the {what} argument `{show(x)}`{via}: pass {want},"
                                   " a `?:` of them, or a parameter of a wrapper every call of which passes one")
        if bad:
            return
        if l[0] == "lit" and e[0] == "lit":
            self.sites.append(Site(l[1], e[1], fields, chain))
            return
        # A wrapper: follow every call of it with the arguments given there. One that is never
        # called is dead code, or called through a pointer (which fails below): either way its
        # events cannot be known.
        self.wrappers.add(func.name)
        used = [i for k, i in (l, e) if k == "param"]
        found = False
        for c in self.calls:
            if c.name != func.name or c.func is func or not func.scope_ok(c.path):
                continue
            found = True
            if max(used) >= len(c.args):
                self.errors.append(f"{c.path}:{c.line}: {func.name} called with too few arguments")
                continue
            nl = c.args[l[1]] if l[0] == "param" else lv
            ne = c.args[e[1]] if e[0] == "param" else ev
            after = params.index("__VA_ARGS__") if func.macro and "__VA_ARGS__" in params else max(used) + 1
            self.resolve(c, nl, ne, c.args[after:], fields, chain)
        if not found:
            self.errors.append(f"{func.path}:{func.line}: {func.name} passes its parameter to p2m_log"
                               f" (at {chain[0]}) but is never called: its events cannot be known")

    def events(self):
        """{(top dir, event): {"levels": set, "fields": [..], "sites": [..]}}"""
        out = {}
        for s in self.sites:
            top = s.chain[0].split("/")[0]
            e = out.setdefault((top, s.event), {"levels": set(), "fields": [], "sites": []})
            e["levels"].add(s.level)
            for k in s.fields:
                if k not in e["fields"]:
                    e["fields"].append(k)
            if s.chain[0] not in e["sites"]:
                e["sites"].append(s.chain[0])
        return out


# ---------------------------------------------------------------- the catalogue in the docs

def read_doc(path, shown):
    """{(top dir, event): (levels, line)} from the `## Log events` section, and errors (naming the
    file as shown)."""
    rows, errors = {}, []
    by_heading = {v: k for k, v in PROGRAMS.items()}
    section, top = False, None
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.startswith("## "):
                section = line.strip() == "## Log events"
                top = None
                continue
            if not section:
                continue
            if line.startswith("### "):
                head = line[4:].strip()
                top = next((k for name, k in by_heading.items() if name in head), None)
                if top is None:
                    errors.append(f"{shown}:{n}: heading names none of {', '.join(PROGRAMS.values())}")
                continue
            m = re.match(r"\|\s*`([^`]+)`\s*\|([^|]*)\|", line)
            if not m:
                continue
            if top is None:
                errors.append(f"{shown}:{n}: event row before any program's heading")
                continue
            levels = set(re.findall(r"[a-z]+", m.group(2)))
            if not levels or not levels <= set(LEVEL_ORDER):
                errors.append(f"{shown}:{n}: `{m.group(1)}`: levels must be among {', '.join(LEVEL_ORDER)}, got {m.group(2).strip()!r}")
            if (top, m.group(1)) in rows:
                errors.append(f"{shown}:{n}: `{m.group(1)}` listed twice under {PROGRAMS[top]}")
            rows[(top, m.group(1))] = (levels, n)
    if not rows:
        errors.append(f"{shown}: no `## Log events` section with event rows")
    return rows, errors


def fmt_levels(levels):
    return ", ".join(l for l in LEVEL_ORDER if l in levels)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("check", "list"))
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--source", default=os.path.normpath(os.path.join(here, "..", "..")))
    ap.add_argument("--doc")
    a = ap.parse_args()
    cat = Catalogue(a.source)
    events = cat.events()
    if a.mode == "list":
        for (top, ev), e in sorted(events.items()):
            print(f"{PROGRAMS[top]}\t{ev}\t{fmt_levels(e['levels'])}\t{' '.join(k + '=' for k in e['fields'])}\t{' '.join(e['sites'])}")
        for err in dict.fromkeys(cat.errors):
            print(f"error: {err}", file=sys.stderr)
        return 1 if cat.errors else 0

    doc = a.doc or os.path.join(a.source, "docs", "OPERATIONS.md")
    shown = os.path.relpath(doc, a.source)
    if shown.startswith(".."):
        shown = doc
    rows, errors = read_doc(doc, shown)
    problems = list(dict.fromkeys(cat.errors)) + errors  # a call reached by two branches is named once
    for key in sorted(events.keys() - rows.keys()):
        problems.append(f"not in the catalogue: {PROGRAMS[key[0]]} logs `{key[1]}` ({fmt_levels(events[key]['levels'])}) at "
                        + ", ".join(events[key]["sites"]))
    for key in sorted(rows.keys() - events.keys()):
        problems.append(f"{shown}:{rows[key][1]}: the catalogue lists `{key[1]}` under {PROGRAMS[key[0]]}, which does not log it")
    for key in sorted(rows.keys() & events.keys()):
        if rows[key][0] != events[key]["levels"]:
            problems.append(f"{shown}:{rows[key][1]}: `{key[1]}` ({PROGRAMS[key[0]]}) is logged at {fmt_levels(events[key]['levels'])},"
                            f" the catalogue says {fmt_levels(rows[key][0])}")
    for p in problems:
        print(p)
    names = {ev for _, ev in events}
    print(f"log_events: {len(names)} event names, {len(events)} (program, event) pairs, {len(cat.sites)} call paths;"
          f" {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
