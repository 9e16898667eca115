"""anybind's exceptions: every bad input raises one of these, naming the argument or file.

Each class also derives from the builtin exception a caller would expect (``ValueError``,
``LookupError``, ``FileNotFoundError``...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AnybindError(Exception):
    """Base class of every error anybind raises on purpose."""


class InputError(AnybindError, ValueError):
    """An argument has the wrong value, type, shape or content."""


class InputFileError(InputError):
    """A file named by an argument is missing, unreadable or of the wrong kind."""


class ConfigError(AnybindError, ValueError):
    """A config (preset, recipe, bundle) is malformed: unknown keys, wrong types, missing fields."""


class CheckpointError(AnybindError, ValueError):
    """A checkpoint does not match the architecture it is loaded into."""


class AnchorMismatchError(AnybindError, ValueError):
    """Vectors from two different anchor spaces were combined."""


class RegistryError(AnybindError, LookupError):
    """A registry lookup or registration failed (unknown or duplicate name)."""


class UnknownNameError(RegistryError):
    """A name (modality, encoder, anchor, preset) is not registered."""


class DuplicateNameError(RegistryError):
    """A name was registered twice."""


class MissingDependencyError(AnybindError, ImportError):
    """An optional dependency is not installed; the message names the pip package."""


def unknown_name_message(kind: str, name: str, known: Iterable[str], hint: str = "") -> str:
    """Build the message for an unknown `name` of `kind`, with close matches and what is known."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    message = f"unknown {kind} {name!r}"
    if close:
        message += f"; did you mean {', '.join(repr(c) for c in close)}?"
    message += f" Registered: {', '.join(known) if known else '(none)'}."
    if hint:
        message += f" {hint}"
    return message


def check_no_unknown_keys(where: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """Raise `ConfigError` naming every key of `given` that is not in `allowed`."""
    allowed = set(allowed)
    unknown = [k for k in given if k not in allowed]
    if unknown:
        suggestions = []
        for key in unknown:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            suggestions.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(suggestions)}; allowed: {', '.join(sorted(allowed))}"
        )
