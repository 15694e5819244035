"""The code blocks of the README and the docs, and how the snippet tests run each of them.

A block is a fenced code block of ``README.md``, ``docs/**/*.md`` or a file those include with
``--8<-- "path"`` (the data set READMEs). Its language decides what a test does with it: ``python``
is executed, ``bash`` / ``sh`` commands are run in-process through ``segcvae.cli.main`` (with the
tiny model's overrides added to every training command), ``yaml`` must load as a config; any other
language (``text``, ``bibtex``, none) is text. An HTML comment on the line before a block changes
that: ``<!-- snippet: slow -->``, ``<!-- snippet: skip REASON -->``, ``<!-- snippet: requires
MODULE -->``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import SHARED_DATA
from tests.tools.conftest import TINY

REPO = Path(__file__).resolve().parents[2]
RUN = ("python", "bash", "sh", "shell", "yaml")  # the languages a test runs or checks
MARKER = re.compile(r"<!--\s*snippet:\s*(slow|skip|requires)\b\s*(.*?)\s*-->")
INCLUDE = re.compile(r'^--8<--\s+"([^"]+)"\s*$', re.MULTILINE)

# Added to every training command of a block: the tiny model, two steps, tiny embedded splits.
RUN_OVERRIDES = [
    *TINY,
    "train.steps=2",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "data.lesions.train_size=16",
    "data.lesions.val_size=4",
    "data.lesions.test_size=4",
]
# Paths the docs use for data, and where the tests find it: the shared real data, or folders the
# workspace fixture writes (the value is then relative to the workspace).
DATA_PATHS = {
    "../shared/data": str(SHARED_DATA),
    "/data/lfw": str(SHARED_DATA / "lfw"),
    "/path/to/lfw": str(SHARED_DATA / "lfw"),
    "/path/to/qubiq_brain_growth": str(SHARED_DATA / "qubiq_brain_growth"),
    "DATA_ROOT": str(SHARED_DATA / "qubiq_brain_growth"),
    "/data/my_set": "my_set",
    "/data/my_raters": "my_raters",
}
COMMANDS = ("train", "evaluate", "predict", "export", "demo", "crossval", "benchmark")


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    path: str  # relative to the repository
    line: int  # of the opening fence
    lang: str
    code: str
    marker: tuple[str, str] | None = None  # ("slow", ""), ("skip", reason), ("requires", module)

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def real_data(self) -> bool:
        """Whether the block reads the shared real data (such blocks are slow)."""
        return any(k in self.code for k, v in DATA_PATHS.items() if v.startswith(str(SHARED_DATA)))


def read_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with the marker on the line before each."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(`{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.search(before)
        rel = str(path.resolve().relative_to(REPO))
        found.append(
            Block(rel, start + 1, lang.lower(), "\n".join(body) + "\n", marker and marker.groups())
        )
        i += 1
    return found


def doc_files() -> list[Path]:
    """README.md, every page under docs/ and the files they include, each once."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    files = list(pages)
    for page in pages:
        for name in INCLUDE.findall(page.read_text()):
            if (REPO / name).is_file() and REPO / name not in files:
                files.append(REPO / name)
    return files


def all_blocks() -> list[Block]:
    return [b for f in doc_files() for b in read_blocks(f)]


# ---------------------------------------------------------------------------------- commands
@dataclass
class Command:
    """One command of a shell block, as the test runs it (or why it does not)."""

    text: str
    kind: str = "segcvae"  # segcvae | toy | skip
    argv: list[str] = field(default_factory=list)
    reason: str = ""


def command_lines(code: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped, split at
    ``&&`` and ``;``."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words: list[str] = []
        for word in shlex.split(line, comments=True):
            if word in ("&&", ";"):
                commands.append(words)
                words = []
            else:
                words.append(word)
        commands.append(words)
    return [c for c in commands if c]


def _skip(words: list[str], reason: str) -> Command:
    return Command(shlex.join(words), "skip", reason=reason)


def translate(words: list[str]) -> Command:
    """How the test runs one command of a docs block."""
    text = shlex.join(words)
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # OMP_NUM_THREADS=1 python ...
        words = words[1:]
    head = words[0]
    if head == "export" or words[:3] == ["python3", "-m", "venv"] or head in (".", "source"):
        return _skip(words, "environment set-up: the tests run in the installed environment")
    if head in ("pip", "apt-get"):
        return _skip(words, "package installation: the tests run in the installed environment")
    if head == "mkdocs":
        return _skip(words, "the docs build: CI runs mkdocs build --strict")
    if head == "torchrun":
        return _skip(words, "distributed training: tests/tools/test_distributed.py runs it")
    if head in ("python", "python3") and words[1:3] == ["-m", "pytest"]:
        return _skip(words, "the test suite itself")
    if head in ("python", "python3") and words[1:3] == ["-m", "segcvae.toy"]:
        return Command(text, "toy", [*_data(words[3:]), "--quick"])
    if head in ("python", "python3") and (m := re.fullmatch(r"tools/(\w+)\.py", words[1])):
        if m[1] not in COMMANDS:
            raise ValueError(f"{text}: tools/{m[1]}.py is not a segcvae command")
        words = ["segcvae", m[1], *words[2:]]
    elif head in ("python", "python3") and words[1].startswith("tools/results/"):
        return _skip(words, "a results protocol: docs/RESULTS.md gives what it printed")
    elif head.startswith("tools/results/"):
        return _skip(words, "a results protocol: docs/RESULTS.md gives what it printed")
    if words[0] != "segcvae" or len(words) < 2 or words[1] not in COMMANDS:
        raise ValueError(f"unknown command in a docs block: {text} (teach tests/docs/snippets.py)")
    name, rest = words[1], _data(words[2:])
    if name == "demo":
        return _skip(words, "it serves a page until interrupted (tests/api/test_demo.py)")
    if name in ("train", "crossval"):
        rest += RUN_OVERRIDES
    if name == "train" and not {"--resume", "--overwrite"} & set(rest):
        rest.append("--overwrite")  # the workspace may hold the fixture's run there
    if name == "benchmark":
        rest += ["--families", "cnn", "--settings", "1x32", "--repeats", "1", "--no-training"]
        rest += ["--loader", "none", "--encoder", "resnet18"]
    return Command(text, "segcvae", [name, *rest])


def _data(args: list[str]) -> list[str]:
    """The docs' data paths replaced by where the tests find the data."""
    out = []
    for arg in args:
        for placeholder, path in DATA_PATHS.items():
            arg = arg.replace(placeholder, path)
        out.append(arg)
    return out


def missing_data(argv: list[str]) -> str | None:
    """A path the command needs that the tests do not have (the user's own data), or None."""
    for arg in argv:
        value = arg.split("=", 1)[-1]
        if value.startswith(("/data/", "/path/to/")):
            return value
        if value.startswith(str(SHARED_DATA)) and not Path(value).exists():
            return value
    return None
