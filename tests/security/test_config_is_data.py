"""Config files are data: a model config naming `module:function` imports and calls nothing.

The payload modules below would create a marker file when imported or called; each test runs
`anybind.load` in a fresh interpreter and checks that the marker is absent and the payload
module never entered `sys.modules`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import anybind
from anybind import builders
from anybind.errors import ConfigError

PAYLOAD = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")
def run(*args, **kwargs):
    pathlib.Path({marker!r}).write_text("called")
    return "."
"""

PROBE = """
import json, sys
import anybind
from anybind.errors import ConfigError
outcomes = []
for path in sys.argv[1:]:
    try:
        anybind.load(path, device="cpu")
        outcomes.append("loaded")
    except ConfigError as error:
        outcomes.append("ConfigError: " + str(error))
print(json.dumps({"outcomes": outcomes, "hub": "hubconf" in sys.modules,
                  "imported": sorted(m for m in sys.modules if m.startswith("evil_payload"))}))
"""

HOSTILE_CONFIGS = [
    ("import-path.yaml", {"builder": "evil_payload:run", "args": {}}, "never imports"),
    ("import-path.json", {"builder": "evil_payload:run"}, "never imports"),
    ("dotted.yaml", {"builder": "evil_payload.run"}, "never imports"),
    ("module-name.yaml", {"builder": "evil_payload"}, "unknown builder 'evil_payload'"),
    ("torch-hub.yaml", {"builder": "torch.hub:load", "args": {"repo_or_dir": "<tmp>", "model": "run",
                                                              "source": "local"}}, "never imports"),
    ("list.yaml", {"builder": ["evil_payload", "run"]}, "`builder`: expected str"),
]


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    """A module `evil_payload` and a torch.hub `hubconf.py` that each write `marker` when run."""
    marker = tmp_path / "MARKER"
    (tmp_path / "evil_payload.py").write_text(PAYLOAD.format(marker=str(marker)))
    (tmp_path / "hubconf.py").write_text(PAYLOAD.format(marker=str(marker)))
    return marker


def _env(tmp_path: Path) -> dict[str, str]:
    """A fresh interpreter's environment whose import path holds the payload modules."""
    return {"PYTHONPATH": str(tmp_path), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}


def test_config_naming_code_is_refused_and_nothing_is_imported(tmp_path: Path, payload: Path) -> None:
    paths = []
    for name, config, _ in HOSTILE_CONFIGS:
        config = json.loads(json.dumps(config).replace("<tmp>", str(tmp_path)))
        path = tmp_path / name
        path.write_text(json.dumps(config) if name.endswith(".json") else yaml.safe_dump(config))
        paths.append(str(path))
    done = subprocess.run([sys.executable, "-c", PROBE, *paths], capture_output=True, text=True,
                          env=_env(tmp_path), cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for (name, _, words), outcome in zip(HOSTILE_CONFIGS, result["outcomes"]):
        assert outcome.startswith("ConfigError: ") and words in outcome, (name, outcome)
    assert result["imported"] == [] and not result["hub"]
    assert not payload.exists(), payload.read_text()


def test_cli_model_option_naming_code_exits_2_without_running_it(tmp_path: Path, payload: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from anybind.cli import main

    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "innocent.yaml"
    config.write_text("builder: evil_payload:run\n")
    assert main(["embed", "text", "hello", "--model", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "`builder` must be the name of a registered builder" in capsys.readouterr().err
    assert "evil_payload" not in sys.modules and not payload.exists()


def test_shipped_default_preset_names_a_registered_builder() -> None:
    data = yaml.safe_load((anybind.config.configs_dir() / "presets" / "default.yaml").read_text())
    assert data["builder"] == "default" and "default" in builders.list_builders()
    from anybind.demo import build_default_bundle

    assert builders.get_builder("default", "test") is build_default_bundle


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"builder": "os:system", "args": {"command": "true"}}, ["`builder` must be the name of a registered builder",
                                                                  "'os:system'", "anybind.builders"]),
        ({"builder": "defualt"}, ["unknown builder 'defualt'", "did you mean 'default'"]),
        ({"builder": "default", "args": {"home": "/tmp/x", "source": "github"}},
         ["builder 'default' takes no argument(s) 'source'", "recipe"]),
        ({"builder": "default", "args": {"rebuild": True}}, ["takes no argument(s) 'rebuild'"]),
        ({"builder": "default", "args": ["recipe"]}, ["`args`: expected a mapping"]),
        ({"builder": 3}, ["`builder`: expected str"]),
    ],
)
def test_builder_error_table(tmp_path: Path, config: dict, words: list[str]) -> None:
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as caught:
        anybind.load(path, device="cpu")
    for word in words:
        assert word in str(caught.value)


def test_builder_names_cannot_look_like_import_paths() -> None:
    for name in ("pkg.module:build", "pkg.build", "", "Default"):
        with pytest.raises(anybind.errors.DuplicateNameError, match="builder name must match"):
            builders.register_builder(name)


def test_entry_point_builders_are_registered_by_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class FakeEntryPoint:
        name = "third-party"

        def load(self):  # type: ignore[no-untyped-def]
            def build(rebuild: bool, folder: str) -> str:
                return folder
            return build

    monkeypatch.setattr(builders, "entry_points", lambda group: [FakeEntryPoint()] if group == "anybind.builders" else [])
    monkeypatch.setattr(builders, "_discovered", False)
    try:
        assert "third-party" in builders.list_builders()
        assert builders.run_builder("third-party", {"folder": str(tmp_path)}, False, "test") == tmp_path
    finally:
        builders._builders.pop("third-party", None)

