"""Short model names. ``diffret`` is the embedded default model shipped inside the package."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_MODEL = "diffret"
_PACKAGED = {DEFAULT_MODEL: "models/diffret"}


def packaged_model_dir(name: str) -> Path:
    return Path(str(resources.files("pyserini_diffret").joinpath(_PACKAGED[name])))


def registered_names() -> list[str]:
    return sorted(_PACKAGED)


def resolve_model(name_or_path: str | Path) -> Path:
    """A local folder, or the folder of a registered short name; clear error otherwise."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if name in _PACKAGED:
        folder = packaged_model_dir(name)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"the embedded model {name!r} is not installed in this copy of the package ({folder}); "
                "build it with `make default-model`"
            )
        return folder
    if path.exists():
        raise NotADirectoryError(f"{path}: a model must be a folder (Hugging Face or exported ONNX)")
    raise FileNotFoundError(
        f"{name_or_path!r} is neither a local model folder nor a registered name ({', '.join(registered_names())})"
    )
