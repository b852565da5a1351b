"""Reading a YAML file with errors that name the file and say what it was for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_yaml(path: str | Path, what: str, error: type[Exception]) -> Any:
    """The parsed content of ``path``; ``error(...)`` naming it when missing or not valid YAML."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except yaml.YAMLError as err:
        raise error(f"{what} {path} is not valid YAML: {err}") from None
