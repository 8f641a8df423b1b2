"""Every code block of the README runs as written.

Each section's Python blocks run in order in one namespace, as a reader pastes them, in a fresh
working directory (a section imports what it uses, so the sections run apart, on several
workers); a failure's traceback points at the README's own line. The shell blocks' commands are
checked to exist (make targets, `hjax` subcommands and the files they name); the configs
themselves run in tests/studies_run/test_config.py, on fewer datasets.
"""

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from hjax.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _blocks(text: str, language: str) -> list[tuple[int, str]]:
    """(first line number, code) of each fenced block in `language`."""
    return [(text.count("\n", 0, match.start(1)) + 1, match.group(1))
            for match in re.finditer(rf"```{language}\n(.*?)```", text, re.S)]


def _sections(text: str) -> dict[str, str]:
    """Each `## ` section's text, blanked outside it so that line numbers stay the README's."""
    starts = [m.start() for m in re.finditer(r"^## ", text, re.M)] + [len(text)]
    return {text[a:text.index("\n", a)].removeprefix("## "):
            "\n" * text.count("\n", 0, a) + text[a:b]
            for a, b in zip(starts[:-1], starts[1:], strict=True)}


def run_python_blocks(text: str, filename: str = "README.md") -> dict:
    """Run the Python blocks of `text` in order in one namespace; the namespace at the end."""
    namespace: dict = {"__name__": "__readme__"}
    for line, code in _blocks(text, "python"):
        # Padded so that a traceback names the README's line.
        exec(compile("\n" * (line - 1) + code, filename, "exec"), namespace)
    return namespace


SECTIONS = {title: text for title, text in _sections(README.read_text()).items()
            if "```python" in text}


@pytest.mark.parametrize("title", SECTIONS)
def test_the_python_blocks_run_as_written(title, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_python_blocks(SECTIONS[title])


def test_the_readme_is_an_entry_point_of_150_to_200_lines():
    # Longer, it turns into a manual: the rest belongs in docs/ and scripts/bench/RESULTS.md.
    lines = README.read_text().count("\n")
    assert 150 <= lines <= 200, f"README.md has {lines} lines; keep it to 150-200."


def test_every_python_block_is_in_a_tested_section():
    text = README.read_text()
    assert len(_blocks(text, "python")) == sum(len(_blocks(s, "python"))
                                               for s in SECTIONS.values()) >= 4


def test_a_broken_example_fails_at_its_readme_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = README.read_text().replace("schools = hj.datasets.eight_schools()",
                                      "schools = hj.datasets.eight_school()", 1)
    line = text[:text.index("hj.datasets.eight_school()")].count("\n") + 1
    with pytest.raises(AttributeError, match="eight_school") as failure:
        run_python_blocks(text)
    frames = [(str(entry.path), entry.lineno + 1) for entry in failure.traceback]
    assert ("README.md", line) in frames


def _commands() -> list[list[str]]:
    lines = [line.split("#")[0].strip() for _, code in _blocks(README.read_text(), "bash")
             for line in code.splitlines()]
    return [shlex.split(line) for line in lines if line]


def test_the_shell_commands_exist():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    commands = _commands()
    assert commands
    for words in commands:
        if words[0] == "make":
            assert words[1] in targets, words
        else:
            assert words[0] == "hjax", words
            assert CliRunner().invoke(main, [words[1], "--help"]).exit_code == 0, words
            files = [w for w in words[2:] if w.endswith((".yaml", ".json"))]
            assert all((ROOT / f).is_file() for f in files), words
