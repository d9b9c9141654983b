"""The corpus of bad inputs in ``tests/bad_inputs/``: every file makes ``vmapsim check`` fail
with exit code 2 and one line on stderr that names the file at fault, its line and the problem.

Each experiment file says what it must produce in its first line::

    # expect: cpus-zero.yaml:7: cpus: input should be greater than or equal to 1, found 0

(several fragments are separated by `` && ``). The fragment starts with the name of the file at
fault, which may be a broken machine profile (``*.machine.yaml``) or workload
(``*.workload.yaml``) that the experiment references: names resolve relative to the experiment
file first. Those helper files are not checked on their own. Files that cannot carry a comment
(empty, binary, not UTF-8) are written by the test from :data:`SIDECAR`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sim.cli import main

CORPUS = Path(__file__).parent / "bad_inputs"
HELPERS = (".machine.yaml", ".workload.yaml")
EXPECT = re.compile(r"#\s*expect:\s*(.+)")
WHERE = re.compile(r"^(?P<file>[\w.-]+\.yaml):(?P<line>\d+):")


def corpus_files() -> list[Path]:
    """Every experiment file of the corpus (not the profiles they reference)."""
    return sorted(p for p in CORPUS.glob("*.yaml") if not p.name.endswith(HELPERS))


def expected(path: Path) -> list[str]:
    """The fragments the first line of ``path`` promises."""
    first = path.read_text().splitlines()[0]
    match = EXPECT.fullmatch(first.strip())
    assert match, f"{path.name}: the first line must be '# expect: FRAGMENT'"
    return [part.strip() for part in match.group(1).split(" && ")]


def check_one_line(argv: list[str], fragments: list[str], capsys: pytest.CaptureFixture[str]
                   ) -> str:
    """``vmapsim ARGV`` exits with 2 and one stderr line holding every fragment."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("vmapsim: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and captured.out == ""
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    return err


def test_corpus_is_large_and_every_helper_is_used() -> None:
    files = corpus_files()
    assert len(files) + len(SIDECAR) >= 40
    texts = "".join(p.read_text() for p in files)
    for helper in CORPUS.glob("*.yaml"):
        if helper.name.endswith(HELPERS):
            assert f": {helper.name.removesuffix('.yaml')}\n" in texts, helper.name


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.stem)
def test_bad_file_is_one_clear_line(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fragments = expected(path)
    where = WHERE.match(fragments[0])
    assert where, f"{path.name}: the expectation must start with FILE:LINE:"
    named = CORPUS / where["file"]
    assert named.is_file(), f"{path.name}: names {where['file']}, which is not in the corpus"
    line = int(where["line"])
    assert 1 <= line <= max(1, len(named.read_text().splitlines()))
    err = check_one_line(["check", str(path)], fragments, capsys)
    assert f"{named}:{line}: " in err  # the full path of the file at fault, and its line


SIDECAR: list[tuple[str, bytes, str]] = [
    # (file name, content, fragment after "NAME")
    ("empty.yaml", b"", ":1: the file is empty"),
    ("blank.yaml", b"  \n\n\t\n", ":1: the file is empty"),
    ("comments.yaml", b"# nothing but a comment\n", ":1: the file has no content"),
    ("binary.yaml", b"\x7fELF\x02\x01\x01\x00\x00\x00", ":1: this is a binary file"),
    ("random.yaml", bytes(range(256)), ":1: this is a binary file"),
    ("latin1.yaml", b"name: caf\xe9\nduration: 1ms\n", ":1: the file is not UTF-8 text"),
    ("latin1-late.yaml", b"name: x\nduration: 1ms\ndescription: \xff\xfe\n",
     ":3: the file is not UTF-8 text"),
    ("utf16.yaml", "name: x\n".encode("utf-16"), ":1: the file is UTF-16 text; save it as UTF-8"),
    ("bom.yaml", b"\xef\xbb\xbfname: x\nduration: [\n", ":3: YAML syntax error"),
]


@pytest.mark.parametrize("name,content,fragment", SIDECAR, ids=[s[0] for s in SIDECAR])
def test_unreadable_file_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           name: str, content: bytes, fragment: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    check_one_line(["check", str(path)], [f"{path}{fragment}"], capsys)


def test_a_directory_or_missing_file_is_one_clear_line(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    for target in (tmp_path, tmp_path / "missing.yaml"):
        check_one_line(["check", str(target)],
                       [f"{target}: no such file or built-in experiment"], capsys)
