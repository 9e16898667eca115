"""Config reading: extra config folders (plugins, `add_config_dir`) and typed coercion of nested maps."""

from dataclasses import dataclass, field
from pathlib import Path

import pytest

import anybind
from anybind import config
from anybind.config import find_named_config, from_dict, load_templates
from anybind.errors import ConfigError, InputFileError, UnknownNameError


@pytest.fixture
def clean_config_dirs(monkeypatch):
    monkeypatch.setattr(config, "_added_config_dirs", [])


def write_templates(root: Path, name: str, templates: list[str]) -> None:
    (root / "templates").mkdir(parents=True, exist_ok=True)
    (root / "templates" / f"{name}.yaml").write_text("templates:\n" + "".join(f"  - '{t}'\n" for t in templates))


def test_added_folder_is_searched_after_the_shipped_configs(tmp_path, clean_config_dirs):
    write_templates(tmp_path, "thermal-scenes", ["a thermal photo of {}."])
    write_templates(tmp_path, "audio", ["shadowed {}"])  # a shipped name: the shipped file wins
    with pytest.raises(UnknownNameError, match="thermal-scenes"):
        load_templates("thermal-scenes")
    anybind.add_config_dir(tmp_path)
    anybind.add_config_dir(tmp_path)  # twice: no-op
    assert config.config_dirs()[1:] == [tmp_path.resolve()]
    assert load_templates("thermal-scenes") == ("a thermal photo of {}.",)
    assert "shadowed {}" not in load_templates("audio")
    assert find_named_config("templates", "audio", "template set").parent.parent == config.configs_dir()


def test_unknown_name_lists_names_of_every_folder(tmp_path, clean_config_dirs):
    write_templates(tmp_path, "thermal-scenes", ["a thermal photo of {}."])
    anybind.add_config_dir(tmp_path)
    with pytest.raises(UnknownNameError, match="thermal-scenes") as raised:
        load_templates("thermal-scene")
    assert "audio" in str(raised.value)


@pytest.mark.parametrize("path, words", [("missing-folder", "does not exist"), ("a-file.txt", "not a folder")])
def test_add_config_dir_errors(tmp_path, clean_config_dirs, path, words):
    (tmp_path / "a-file.txt").write_text("x")
    with pytest.raises(InputFileError, match=words):
        anybind.add_config_dir(tmp_path / path)


@dataclass(frozen=True)
class Nested:
    sizes: list[int] = field(default_factory=list)
    scales: dict[str, float] = field(default_factory=dict)


def test_coerce_list_and_dict_items():
    parsed = from_dict(Nested, {"sizes": [1, 2], "scales": {"audio": 20, "depth": 5.0}}, "nested")
    assert parsed.sizes == [1, 2] and parsed.scales == {"audio": 20.0, "depth": 5.0}
    assert isinstance(parsed.scales["audio"], float)


@pytest.mark.parametrize("data, words", [
    ({"sizes": [1, "two"]}, "`sizes`[1]: expected int"),
    ({"sizes": 3}, "`sizes`: expected a list"),
    ({"scales": {"audio": "loud"}}, "`scales`.audio: expected float"),
    ({"scales": {3: 1.0}}, "key 3: expected str"),
])
def test_coerce_errors_name_the_item(data, words):
    with pytest.raises(ConfigError) as raised:
        from_dict(Nested, data, "nested")
    assert words in str(raised.value)
