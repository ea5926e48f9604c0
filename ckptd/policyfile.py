"""Guards on the policy file itself, before its content is trusted: who may write it, and how
much work reading it may cost.

A policy decides which containers are frozen and which checkpoints are deleted, so a file that
another user could change is refused. YAML can describe far more than it spells out (aliases
nest one inside another: a few hundred bytes can stand for billions of values), so the file's
size, nesting depth and expanded size are bounded before the schema walks it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from ckptd.errors import Problem

MAX_BYTES = 512 * 1024
MAX_DEPTH = 64
MAX_INDENT = 200
# Values after expanding every alias; a policy with a thousand targets holds a few tens of
# thousands.
MAX_VALUES = 200_000


def file_mode_problem(path: Path) -> Problem | None:
    """Return a problem when users other than its owner (or an owner other than root or us)
    could change the policy at ``path``; None when it is safe or cannot be read (reported later).
    """
    try:
        info = path.stat()
    except OSError:
        return None

    mode = stat.S_IMODE(info.st_mode)

    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return Problem(
            "",
            f"{path} is writable by its group or by other users (mode {mode:04o}); ckptd acts "
            f"as root on what it says, so refuse to read it: run chmod go-w {path}",
        )

    if info.st_uid not in (0, os.geteuid()):
        return Problem(
            "",
            f"{path} is owned by uid {info.st_uid}, neither root nor the user running ckptd; "
            f"that user could change it: run chown root {path}",
        )

    return None


def text_shape_problem(text: str) -> Problem | None:
    """Return a problem when ``text`` is too big or nests brackets too deeply to read as a policy.

    Deep indentation-based nesting is left to the parser, whose recursion limit ends it quickly.
    """
    size = len(text.encode("utf-8", errors="surrogatepass"))

    if size > MAX_BYTES:
        return Problem("", f"the file is {size} bytes; a policy may be at most {MAX_BYTES}")

    # PyYAML's scanner slows down with the square of unclosed flow brackets, so a crude count
    # (quotes and comments aside) runs first; over-counting only ever refuses, never admits.
    if _flow_depth(text) > MAX_DEPTH:
        return Problem("", f"brackets nested more than {MAX_DEPTH} levels deep")

    # Each block level sits further right, so the column where a line's content starts bounds
    # how deep it nests (the scanner too slows down with it).
    for number, line in enumerate(text.splitlines(), start=1):
        if len(line) - len(line.lstrip(" -?\t")) > MAX_INDENT:
            return Problem("", f"indented more than {MAX_INDENT} columns", line=number)

    return None


def _flow_depth(text: str) -> int:
    """Return the deepest nesting of [ and { in ``text``, outside quotes and comments."""
    depth = deepest = 0
    quote = ""

    for line in text.splitlines():
        for char in line:
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char == "#":
                break
            elif char in "[{":
                depth += 1
                deepest = max(deepest, depth)
            elif char in "]}":
                depth = max(0, depth - 1)

    return deepest


def expansion_problem(root: yaml.Node) -> Problem | None:
    """Return a problem when the document, aliases expanded, holds more than MAX_VALUES values.

    Sizes are computed once per node (aliases share nodes), so this costs the size of the file,
    not of its expansion.
    """
    sizes: dict[int, int] = {}
    pending: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()

    while pending:
        node, children_done = pending.pop()

        if id(node) in sizes:
            continue

        children = _children(node)

        if not children_done:
            if id(node) in on_path:
                return Problem("", "an alias refers to a value that contains it")

            on_path.add(id(node))
            pending.append((node, True))
            pending += [(child, False) for child in children if id(child) not in sizes]
            continue

        on_path.discard(id(node))
        sizes[id(node)] = 1 + sum(sizes.get(id(child), 0) for child in children)

        if sizes[id(node)] > MAX_VALUES:
            return Problem(
                "",
                f"expands to more than {MAX_VALUES} values once its aliases (*name) are "
                "filled in; a policy needs far fewer",
                line=node.start_mark.line + 1,
            )

    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]

    return []
