"""Configuration files: safe YAML loading with line numbers, clear errors, catalogs, overrides.

Every configuration error becomes a :class:`ConfigError` whose one-line message names the file,
the line, the dotted key path, what was expected and what was found. Nothing in a file is ever
executed: YAML is composed with PyYAML's safe loader and converted node by node, with limits on
size, depth and alias expansion.
"""

from __future__ import annotations

import codecs
import copy
import difflib
import os
import re
import stat
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

MAX_NODES = 200_000
"""Most YAML nodes one document may expand to (stops alias bombs)."""
MAX_DEPTH = 64
"""Deepest nesting accepted in one document."""
PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
"""The only tags a mapping or list may carry (the ones YAML gives it without an explicit tag)."""
MAX_KEY_CHARS = 80
"""Longer key paths are shortened in messages (a deeply nested document stays one short line)."""
MAX_WHERE_CHARS = 240
"""Longer file names (or ``--set KEY`` origins) are shortened in messages."""


class ConfigError(Exception):
    """A configuration problem a user can fix; rendered as one line ``file:line: key: message``."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 path: tuple = ()) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.path = tuple(path)

    def __str__(self) -> str:
        where = self.file or "<config>"
        if len(where) > MAX_WHERE_CHARS:  # a --set of a 10,000-character key names itself
            half = MAX_WHERE_CHARS // 2 - 2
            where = f"{where[:half]}...{where[-half:]}"
        if self.line is not None:
            where += f":{self.line}"
        key = dotted(self.path)
        if len(key) > MAX_KEY_CHARS:
            half = MAX_KEY_CHARS // 2 - 2
            key = f"{key[:half]}...{key[-half:]}"
        text = f"{where}: {key}: {self.message}" if key else f"{where}: {self.message}"
        return one_line(text)


def one_line(text: str) -> str:
    """``text`` with control characters (a newline in a key, say) escaped: one printable line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown(value: Any, limit: int = 40) -> str:
    """``value`` as echoed in an error: its repr, control characters escaped, truncated."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def dotted(path: tuple) -> str:
    """``("workload", "size", 0)`` -> ``"workload.size[0]"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def did_you_mean(word: str, choices: list[str]) -> str:
    """A ``"; did you mean 'x'?"`` suffix when ``word`` is close to one of ``choices``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


@dataclass
class Origins:
    """Where each key of a merged configuration came from: path -> (file, line)."""

    entries: dict[tuple, tuple[str, int | None]] = field(default_factory=dict)
    default_file: str = "<config>"

    def add(self, prefix: tuple, file: str, lines: dict[tuple, int]) -> None:
        for path, line in lines.items():
            self.entries[prefix + path] = (file, line)

    def locate(self, path: tuple) -> tuple[str, int | None]:
        """The origin of the longest known prefix of ``path``."""
        for n in range(len(path), -1, -1):
            hit = self.entries.get(tuple(path[:n]))
            if hit is not None:
                return hit
        return (self.default_file, None)

    def error(self, message: str, path: tuple) -> ConfigError:
        file, line = self.locate(path)
        return ConfigError(message, file, line, path)


@dataclass
class Document:
    """A loaded YAML document: plain Python data plus the line of every key path."""

    data: Any
    file: str
    lines: dict[tuple, int]

    def error(self, message: str, path: tuple = ()) -> ConfigError:
        origins = Origins(default_file=self.file)
        origins.add((), self.file, self.lines)
        return origins.error(message, path)


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading plain scalars as YAML 1.2's core schema does (PyYAML
    implements YAML 1.1): ``1e5`` is a number, ``010`` is ten (``0o10`` is eight), and only
    ``true``/``false`` are booleans (``on``, ``yes``, ``y`` are strings); ``1:20`` is a string,
    not a sexagesimal number."""


_BOOL, _INT, _FLOAT = (f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float"))
Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
Yaml12Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
Yaml12Loader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
Yaml12Loader.add_implicit_resolver(
    _FLOAT, re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """YAML 1.2 integers: decimal (leading zeros allowed), ``0o`` octal, ``0x`` hex."""
    text = str(loader.construct_scalar(node))
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


Yaml12Loader.add_constructor(_INT, _construct_int)


class _Converter:
    """Turns a composed YAML node tree into Python data, recording lines and enforcing limits."""

    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.lines: dict[tuple, int] = {}
        self.nodes = 0

    def convert(self, node: yaml.Node, path: tuple, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ConfigError(f"document expands to more than {MAX_NODES} nodes "
                              "(an alias bomb?)", self.file, node.start_mark.line + 1, path)
        if depth > MAX_DEPTH:
            raise ConfigError(f"nesting deeper than {MAX_DEPTH} levels",
                              self.file, node.start_mark.line + 1, path)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.CollectionNode) and node.tag not in PLAIN_TAGS:
            # scalars go through the safe constructor, which refuses unknown tags; mappings
            # and lists are built here, so an explicit tag on one must be refused here too
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise ConfigError(f"unsupported YAML tag '{tag}' (only plain mappings, "
                              "lists and scalars are accepted)", self.file,
                              node.start_mark.line + 1, path)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, path + (i,), depth + 1)
                    for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: tuple, depth: int) -> dict:
        self.loader.flatten_mapping(node)
        out: dict = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise ConfigError(f"expected a plain key, found {key!r}", self.file, line, path)
            if key in out:
                raise ConfigError(f"duplicate key '{key}' (first at line "
                                  f"{self.lines[path + (key,)]})", self.file, line, path + (key,))
            self.lines[path + (key,)] = line
            out[key] = self.convert(value_node, path + (key,), depth + 1)
        return out


def parse_yaml_text(text: str, file: str) -> Document:
    """Parse one YAML document from ``text``; every problem is a :class:`ConfigError`."""
    if not text.strip():
        raise ConfigError("the file is empty; expected a YAML mapping", file, 1)
    try:
        loader = Yaml12Loader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow in a file
        line = text[: exc.position].count("\n") + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(f"the character U+{code:04X} (column {column}) is not allowed in "
                          "YAML", file, line) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError("the file has no content; expected a YAML mapping", file, 1)
        converter = _Converter(loader, file)
        data = converter.convert(node, (), 0)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, text, file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {' '.join(str(exc).split())}", file) from None
    except RecursionError:
        raise ConfigError(f"nesting deeper than {MAX_DEPTH} levels", file) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"expected a YAML mapping at the top level, found "
                          f"{type(data).__name__}", file, 1)
    return Document(data, file, converter.lines)


def _syntax_error(exc: yaml.MarkedYAMLError, text: str, file: str) -> ConfigError:
    """One line for a YAML error: where it was found, and what was open there (an unclosed
    quote or bracket is reported at its start, not at the end of the file)."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
    context = exc.context_mark
    if exc.problem and exc.context and context is not None and context is not mark:
        problem += f" ({' '.join(exc.context.split())} at line {context.line + 1})"
        if mark is not None and mark.index >= len(text.rstrip()):
            line = context.line + 1  # ran off the end: the thing left open is the clue
    return ConfigError(f"YAML syntax error: {problem}", file, line)


MAX_FILE_BYTES = 4 << 20
"""Largest experiment, machine, workload or scenario file read (4 MiB: the node limit is
reached long before)."""


def read_regular(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them. A directory,
    FIFO or device is refused before it is read (a FIFO is opened without waiting for a
    writer), and so is a file larger than ``limit``; errors name the file."""
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError("no such file", name) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", name) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
        if info.st_size > limit and stat.S_ISREG(info.st_mode):
            raise ConfigError(f"the file is {info.st_size / 2**20:.1f} MiB; at most "
                              f"{limit / 2**20:.0f} MiB are read", name)
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else \
            "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
        raise ConfigError(f"not a regular file ({kind})", name)
    with os.fdopen(fd, "rb") as handle:
        try:
            raw = handle.read(limit + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read the file: {exc.strerror}", name) from None
    if len(raw) > limit:  # it grew while being read
        raise ConfigError(f"the file is larger than {limit / 2**20:.0f} MiB", name)
    return raw


def load_yaml(path: str | Path) -> Document:
    """Read and parse a YAML file; unreadable, binary or empty files are :class:`ConfigError`."""
    name = str(path)
    raw = read_regular(path, MAX_FILE_BYTES)
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError("the file is UTF-16 text; save it as UTF-8", name, 1)
    if b"\0" in raw:
        raise ConfigError("this is a binary file, not YAML text", name, 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("the file is not UTF-8 text", name, line) from None
    return parse_yaml_text(text, name)


# ---------------------------------------------------------------------------------------------
# Catalogs: cpus/, workloads/, experiments/ next to this checkout, or inside the installed package.

CATALOG_KINDS = ("cpus", "workloads", "experiments")


def catalog_dir(kind: str) -> Path:
    """The directory holding the built-in ``kind`` catalog (checkout first, then package)."""
    checkout = Path(__file__).resolve().parents[2] / kind
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("sim.catalog").joinpath(kind)))


def catalog_names(kind: str) -> list[str]:
    """Sorted names (file stems) of the built-in ``kind`` catalog."""
    return sorted(p.stem for p in catalog_dir(kind).glob("*.yaml"))


def resolve_reference(kind: str, name: str, relative_to: Path | None) -> Path | None:
    """Find ``name`` of catalog ``kind``: first relative to a file, then in the catalog. The
    referring file itself is never the answer (an experiment ``seed-i915.yaml`` naming the
    workload ``seed-i915`` means the catalog's)."""
    candidates = []
    if relative_to is not None:
        base = relative_to.parent
        candidates += [base / name, base / f"{name}.yaml", base.parent / kind / f"{name}.yaml"]
    candidates.append(catalog_dir(kind) / f"{name}.yaml")
    for candidate in candidates:
        if candidate.is_file() and not (relative_to is not None
                                         and candidate.resolve() == relative_to.resolve()):
            return candidate
    return None


def load_reference(kind: str, name: str, relative_to: Path | None,
                   origins: Origins, path: tuple) -> Document:
    """Load catalog entry ``name``; an unknown name is an error listing the known ones."""
    found = resolve_reference(kind, str(name), relative_to)
    if found is None:
        known = catalog_names(kind)
        raise origins.error(f"unknown {kind[:-1] if kind != 'cpus' else 'machine'} "
                            f"'{name}'{did_you_mean(name, known)} (known: {', '.join(known)})",
                            path)
    return load_yaml(found)


# ---------------------------------------------------------------------------------------------
# Dotted-key overrides: --set key=value and sweep points.

def parse_override(text: str) -> tuple[str, Any]:
    """``"workload.set_memory_rate=200"`` -> ``("workload.set_memory_rate", 200)``."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"expected key=value, found {shown(text)}", "--set")
    if key.count(".") >= MAX_DEPTH:
        raise ConfigError(f"the key {shown(key)} is nested deeper than {MAX_DEPTH} levels",
                          "--set")
    return key, _override_value(raw, tuple(key.split(".")))


def _override_value(raw: str, path: tuple) -> Any:
    """An override's value, read with the limits of a file (nodes, depth, tags)."""
    if not raw.strip():
        return ""
    loader = Yaml12Loader(raw)
    try:
        node = loader.get_single_node()
        return None if node is None else _Converter(loader, "--set").convert(node, path, 0)
    except (yaml.YAMLError, RecursionError):
        raise ConfigError(f"cannot parse the value {shown(raw)}", "--set", None, path) from None
    except ConfigError as exc:
        raise ConfigError(exc.message, "--set", None, path) from None
    finally:
        loader.dispose()


def set_dotted(data: dict, key: str, value: Any, origins: Origins) -> None:
    """Set ``data[a][b][c] = value`` for key ``"a.b.c"``, creating missing mappings (the
    schema then rejects keys that do not exist)."""
    parts = tuple(key.split("."))
    node = data
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, dict) and part not in node:
            node[part] = {}
        child = node.get(part) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            choices = [c for c in node if c != part] if isinstance(node, dict) else []
            raise origins.error(f"cannot set '{key}': '{part}' is not a mapping here"
                                f"{did_you_mean(part, choices)}", parts[: depth + 1])
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def anchor_trace(workload: Any, origin: str) -> None:
    """Make a relative ``trace`` path of a workload mapping absolute, against the directory
    of the file ``origin`` that names it (a ``--set`` origin: the current directory)."""
    if not isinstance(workload, dict) or not isinstance(workload.get("trace"), str):
        return
    trace = os.path.expanduser(workload["trace"])
    if os.path.isabs(trace):
        return
    if origin.startswith(("--set", "<")):
        base = os.getcwd()
    else:
        base = os.path.dirname(os.path.abspath(origin))
    workload["trace"] = os.path.normpath(os.path.join(base, trace))
