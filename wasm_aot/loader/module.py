"""wa.Module: a verified, mapped artifact; wa.load."""
from __future__ import annotations

import os
import shutil
from typing import Any

from ..errors import ArtifactError
from ..metadata import extern_from_json
from ..types import ExportType, ImportType
from .artifact import map_artifact, read_metadata
from .instance import Instance


class Module:
    """A compiled module. Instantiate it any number of times."""

    def __init__(self, path: str, meta: dict[str, Any]) -> None:
        self._path = path
        self._meta = meta
        self._mapped = None

    @classmethod
    def from_file(cls, path: str | os.PathLike, **options: Any) -> "Module":
        """A .wasm file, compiled through the cache, or an artifact (.so)."""
        path = os.fspath(path)
        with open(path, "rb") as f:
            data = f.read()
        if data[:4] == b"\x7fELF":
            return load(path, key=options.get("key"))
        from ..compiler import compile
        return compile(data, **options)

    @property
    def path(self) -> str:
        return self._path

    @property
    def metadata(self) -> dict[str, Any]:
        return self._meta

    @property
    def sha256(self) -> str:
        return self._meta.get("wasm_sha256", "")

    @property
    def imports(self) -> list[ImportType]:
        return [ImportType(i["module"], i["name"], extern_from_json(i["type"])) for i in self._meta["imports"]]

    @property
    def exports(self) -> list[ExportType]:
        return [ExportType(e["name"], extern_from_json(e["type"])) for e in self._meta["exports"]]

    def instantiate(self, imports: Any = None, data: Any = None) -> Instance:
        if self._mapped is None:
            self._mapped = map_artifact(self._path, self._meta)
        return Instance(self, self._mapped, imports, data)

    def save(self, path: str | os.PathLike) -> None:
        """Write the artifact to `path` (atomically)."""
        path = os.fspath(path)
        tmp = f"{path}.tmp{os.getpid()}"
        shutil.copyfile(self._path, tmp)
        os.replace(tmp, path)

    def __repr__(self) -> str:
        names = [e["name"] for e in self._meta["exports"]]
        return f"<wa.Module sha256={self.sha256[:12]} exports={names}>"


def load(path: str | os.PathLike, key: bytes | str | None = None) -> Module:
    """A precompiled artifact. Everything is checked before anything is mapped."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read: {e.strerror}") from None
    meta = read_metadata(data, path)
    return Module(path, meta)
