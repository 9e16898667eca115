"""CLI text arguments are literal; files only through `@FILE` / `--text-file`, never folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from anybind.cli.inputs import read_inputs
from anybind.errors import InputError, InputFileError


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder holding a text file, a binary file, a Latin-1 file and a sub-folder."""
    (tmp_path / "queries.txt").write_text("a dog\n\n  rain on a roof  \n")
    (tmp_path / "bom.txt").write_bytes("\ufeffcafé\n".encode())
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02")
    (tmp_path / "empty.txt").write_text("\n \n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_text_arguments_are_literal_even_when_a_file_has_that_name(folder: Path) -> None:
    assert read_inputs("text", ["queries.txt", "sub", "a cat"], "*", "queries") == ["queries.txt", "sub", "a cat"]


def test_text_files_are_explicit(folder: Path) -> None:
    assert read_inputs("text", ["@queries.txt", "@@handle"], "*", "queries", ["bom.txt"]) == [
        "a dog", "rain on a roof", "@handle", "café"]
    assert read_inputs("text", [], "*", "queries", ["queries.txt"]) == ["a dog", "rain on a roof"]


@pytest.mark.parametrize(
    ("values", "text_files", "error", "words"),
    [
        (["."], [], None, None),  # a literal "." is a text, not the working folder
        ([""], [], InputError, ["`queries[0]`", "non-empty text", "''"]),
        (["  "], [], InputError, ["`queries[0]`", "non-empty text"]),
        ([], [], InputError, ["`queries`", "at least one"]),
        (["@sub"], [], InputFileError, ["`queries[0]`", "folder 'sub'", "never read from folders"]),
        (["@."], [], InputFileError, ["folder '.'", "never read from folders"]),
        (["@missing.txt"], [], InputFileError, ["`queries[0]`", "'missing.txt' does not exist"]),
        (["@latin1.txt"], [], InputFileError, ["not UTF-8", "0xe9", "offset 3", "re-save it as UTF-8"]),
        (["@blob.bin"], [], InputFileError, ["NUL bytes", "binary"]),
        (["@empty.txt"], [], InputFileError, ["no non-empty lines"]),
        ([], ["sub"], InputFileError, ["`--text-file`", "folder 'sub'"]),
        ([], ["latin1.txt"], InputFileError, ["`--text-file`", "not UTF-8"]),
    ],
)
def test_text_input_error_table(folder: Path, values: list[str], text_files: list[str],
                                error: type[Exception] | None, words: list[str] | None) -> None:
    if error is None:
        assert read_inputs("text", values, "*", "queries", text_files) == values
        return
    with pytest.raises(error) as caught:
        read_inputs("text", values, "*", "queries", text_files)
    for word in words or []:
        assert word in str(caught.value)


def test_unreadable_text_file_via_patched_read(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(InputFileError, match=r"`queries\[0\]`: text file 'queries.txt' cannot be read "
                                             r"\(permission denied\)"):
        read_inputs("text", ["@queries.txt"], "*", "queries")


def test_text_file_option_is_refused_for_other_modalities(folder: Path) -> None:
    with pytest.raises(InputError, match=r"`--text-file`: only for text inputs, but the modality is 'image'"):
        read_inputs("image", ["sub"], "*", "inputs", ["queries.txt"])

