"""wa.Module: a verified, mapped artifact; wa.load."""
from __future__ import annotations

import os
from typing import Any

from .. import trailer
from ..metadata import extern_from_json
from ..types import ExportType, ImportType
from .artifact import Verified, map_artifact, verify, verify_file
from .instance import Instance


class Module:
    """A compiled module. Instantiate it any number of times."""

    def __init__(self, path: str, verified: Verified) -> None:
        self._path = path
        self._verified = verified  # the checked copy: exactly this is linked, run and saved
        self._mapped = None

    @classmethod
    def from_file(cls, path: str | os.PathLike, **options: Any) -> "Module":
        """A .wasm file, compiled through the cache, or an artifact (.so)."""
        path = os.fspath(path)
        with open(path, "rb") as f:
            data = f.read()
        if data[:4] == b"\x7fELF" or data.endswith(trailer.END):
            return Module(path, verify(data, path, trailer.resolve_key(options.get("key"))))
        from ..compiler import compile
        return compile(data, **options)

    @property
    def path(self) -> str:
        return self._path

    @property
    def _meta(self) -> dict[str, Any]:
        return self._verified.meta

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the artifact's checked metadata (the loader shares one per content)."""
        import copy
        meta = copy.deepcopy({k: v for k, v in self._meta.items() if k != "func_types"})
        meta["func_types"] = list(self._meta["func_types"])
        return meta

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
            self._mapped = map_artifact(self._path, self._verified)
        return Instance(self, self._mapped, imports, data)

    @property
    def signed(self) -> bool:
        """Whether the artifact carries a signature (checked against the key in force when loaded)."""
        return self._verified.signed

    def save(self, path: str | os.PathLike) -> None:
        """Write the artifact (the verified bytes, not whatever its file holds now) to `path`, atomically."""
        import tempfile

        path = os.fspath(path)
        fd, tmp = tempfile.mkstemp(prefix=".wa-", suffix=".so", dir=os.path.dirname(os.path.abspath(path)))
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self._verified.read())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def serialize(self) -> bytes:
        """The artifact's bytes (as checked when loaded), e.g. to store elsewhere; see deserialize."""
        return self._verified.read()

    @classmethod
    def deserialize(cls, data: bytes, key: bytes | str | None = None) -> "Module":
        """A module from artifact bytes, checked exactly as wa.load checks a file."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"artifact bytes expected, not {type(data).__name__}")
        return cls("<bytes>", verify(bytes(data), "<bytes>", trailer.resolve_key(key)))

    def __repr__(self) -> str:
        names = [e["name"] for e in self._meta["exports"]]
        return f"<wa.Module sha256={self.sha256[:12]} exports={names}>"


def load(path: str | os.PathLike, key: bytes | str | None = None) -> Module:
    """A precompiled artifact. The file is read once and everything is checked (digest, signature
    when `key` or $WASM_AOT_SIGNING_KEY is set, format, versions, architecture, CPU features)
    before anything is mapped; a refused file raises wa.ArtifactError."""
    path = os.fspath(path)
    return Module(path, verify_file(path, trailer.resolve_key(key)))
