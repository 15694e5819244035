"""mkdocs hook: the configuration reference, generated from the config dataclasses at build time.

A page writes ``<!-- config-reference -->`` where the tables go. Each section of
:class:`segcvae.config.Config` becomes a table of its keys (type, default, meaning), and so does
each model family's and each dataset's own settings dataclass where the registries offer one
(``segcvae.registry.family_settings(name)``, ``segcvae.data.registry.dataset_settings(name)``;
skipped while those do not exist).

A key's meaning is, in this order: ``dataclasses.field(metadata={"help": ...})`` with its bounds
(``ge``, ``le``, ``gt``, ``lt``, under ``"bounds"`` as ``segcvae.settings.setting`` writes them),
else the comment on its
line in the source, else the comment block right above it. A block above a key that has its own
comment, a ``# --- title`` line and a one-word comment (``# shapes``) are group notes: they
become a row of their own. Nothing is written by hand, so the page cannot drift from the code.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import sys
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Document this checkout's package, not another installed copy.
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MARKER = "<!-- config-reference -->"
BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


@dataclass
class FieldDoc:
    """What the source says about one dataclass field."""

    help: str = ""  # the field's own description
    note: str = ""  # a group note printed as a row before the field
    title: str = ""  # a group title (``# --- title`` or a one-word comment)


@dataclass
class Row:
    key: str
    type: str = ""
    default: str = ""
    help: str = ""
    group: bool = False  # a group row: key is its title, help its note


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the ``#`` comment on that line (without the ``#``)."""
    found = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            found[tok.start[0]] = tok.string.lstrip("#").strip()
    return found


def _split_title(text: str) -> tuple[str, str]:
    """``"k-fold ... items (how): more"`` -> (``"k-fold ... items"``, ``"(how): more"``)."""
    cut = min((i for i in (text.find(" ("), text.find(":")) if i > 0), default=len(text))
    return text[:cut].strip(), text[cut:].strip()


def field_docs(cls: type) -> dict[str, FieldDoc]:
    """The source comments of a dataclass's fields (empty where the source cannot be read)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments = _comments(source)
    (node,) = ast.parse(source).body
    docs: dict[str, FieldDoc] = {}
    for item in node.body:
        if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
            continue
        inline = " ".join(
            comments[n]
            for n in range(item.lineno, (item.end_lineno or item.lineno) + 1)
            if n in comments
        )
        above: list[str] = []
        n = item.lineno - 1
        while n >= 1 and lines[n - 1].lstrip().startswith("#"):
            above.insert(0, comments[n])
            n -= 1
        doc = FieldDoc()
        if above and above[0].startswith("---"):  # a title, on as many lines as its sentence takes
            title = above.pop(0).strip("- ")
            while above and not title.endswith((")", ".")):
                title += " " + above.pop(0)
            doc.title, doc.note = _split_title(title)
        first, _, rest = above[0].partition(" ") if above else ("", "", "")
        if item.target.id.startswith(first + "_") and rest[:1] in ("", "("):  # "# ssn (...)"
            doc.title, above[0] = first, above[0][len(first) :].strip()
            doc.note, doc.help = " ".join(a for a in above if a), inline
        elif inline:
            doc.help = inline
            doc.note = " ".join([doc.note, *above]).strip()
        else:
            doc.help = " ".join(above)
        docs[item.target.id] = doc
    return docs


def type_name(tp: Any) -> str:
    """A type as a reader of a YAML file thinks of it: ``one of a, b``, ``list[int] or null``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp))


def default_text(f: dataclasses.Field) -> str:
    """The field's default as YAML (``null``, ``true``, ``[1.0, 1.0]``, ``""``)."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    if dataclasses.is_dataclass(value):
        return ""
    if value == "":
        return '""'
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6)
    return text.strip().removesuffix("...").strip()


def bounds_text(metadata: typing.Mapping[str, Any]) -> str:
    """``≥ 1, ≤ 8`` from ``ge`` / ``le`` / ``gt`` / ``lt`` metadata (under ``"bounds"``, as
    ``segcvae.settings.setting`` writes them, or at the top level)."""
    bounds = metadata.get("bounds", metadata)
    return ", ".join(f"{sign} {bounds[k]}" for k, sign in BOUNDS.items() if k in bounds)


def rows(cls: type, prefix: str) -> list[Row]:
    """One row per field of ``cls`` (keys ``prefix.name``), group rows where the source has them."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    out: list[Row] = []
    for f in dataclasses.fields(cls):
        doc = docs.get(f.name, FieldDoc())
        if doc.title or doc.note:
            out.append(Row(key=doc.title, help=doc.note, group=True))
        text = str(f.metadata.get("help", "")) or doc.help
        bounds = bounds_text(f.metadata)
        if bounds:
            text = f"{text} ({bounds})" if text else bounds
        out.append(Row(f"{prefix}.{f.name}", type_name(hints[f.name]), default_text(f), text))
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(cls: type, prefix: str) -> str:
    """A Markdown table of the keys of dataclass ``cls``."""
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for r in rows(cls, prefix):
        if r.group:
            title = f"**{_cell(r.key)}**" if r.key else ""
            lines.append(f"| {title} | | | *{_cell(r.help)}* |" if r.help else f"| {title} | | | |")
        else:
            default = f"`{_cell(r.default)}`" if r.default else ""
            lines.append(f"| `{r.key}` | {_cell(r.type)} | {default} | {_cell(r.help)} |")
    return "\n".join(lines)


def _summary(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return " ".join(doc.split("\n\n")[0].split())


def sections(root: type) -> list[tuple[str, type]]:
    """The dataclass fields of ``root`` that are dataclasses themselves: (name, class)."""
    hints = typing.get_type_hints(root)
    return [
        (f.name, hints[f.name])
        for f in dataclasses.fields(root)
        if is_dataclass_type(hints[f.name])
    ]


def is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def family_settings() -> list[tuple[str, type]]:
    """(family name, settings dataclass) for every family that declares settings, where the
    registry can say (``segcvae.registry.family_settings``); nothing before it exists."""
    from segcvae import registry

    lookup = getattr(registry, "family_settings", None)
    if lookup is None:
        return []
    found = []
    for name in registry.family_names():
        settings = lookup(name)
        if settings is not None:
            found.append((name, settings))
    return found


def dataset_settings() -> list[tuple[str, type]]:
    """(dataset name, settings dataclass) for every dataset that declares settings, where the
    dataset registry can say (``segcvae.data.registry``); nothing before it exists."""
    try:
        from segcvae.data import registry
    except ImportError:
        return []
    found = []
    for name in registry.dataset_names():
        settings = registry.dataset_settings(name)
        if settings is not None:
            found.append((name, settings))
    return found


def _groups(title: str, selector: str, section: str, groups: list[tuple[str, type]]) -> list[str]:
    """A ``## title`` with one table per group (``### `model.arch: ssn` ``, keys ``model.ssn.*``)."""
    if not groups:
        return []
    parts = [f"## {title}", ""]
    for name, cls in groups:
        parts += [
            f"### `{section}.{selector}: {name}`",
            "",
            _summary(cls),
            "",
            table(cls, f"{section}.{name}"),
            "",
        ]
    return parts


def reference() -> str:
    """The whole reference: a section per config section, then the families' own settings."""
    from segcvae.config import Config

    parts = []
    for name, cls in sections(Config):
        parts += [f"## `{name}`", "", _summary(cls), "", table(cls, name), ""]
    parts += _groups("Settings of the model families", "arch", "model", family_settings())
    parts += _groups("Settings of the datasets", "name", "data", dataset_settings())
    return "\n".join(parts)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """mkdocs hook: replace the marker with the generated reference."""
    return markdown.replace(MARKER, reference()) if MARKER in markdown else markdown


__all__ = ["FieldDoc", "field_docs", "reference", "rows", "table", "type_name"]
