"""Writing ROS 2 bags with ``rosbags``, to a temporary path renamed into place only when complete (nothing
half-written is left). Messages are built by ``codecs.py`` with the typestore's classes (``bag.BAG``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer

from ..errors import SettingsError
from .bag import TYPESTORE

STORAGE = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagWriter:
    """Write a bag to ``path`` (a bag directory) atomically: it is built in a hidden sibling folder and
    moved into place by ``close()``; ``abort()`` (or an exception inside ``with``) removes it."""

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        if storage not in STORAGE:
            raise SettingsError(f"storage={storage!r}; expected one of {sorted(STORAGE)}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists already; not overwriting it")
        self.staging = self.path.parent / f".{self.path.name}.partial"
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        self.tmp = self.staging / self.path.name
        self.writer = Writer(self.tmp, version=9, storage_plugin=STORAGE[storage])
        self.writer.open()
        self.connections: dict[str, Any] = {}

    def connection(self, topic: str, msgtype: str, qos=()):
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msgtype, typestore=TYPESTORE,
                                                                 offered_qos_profiles=qos or ())
        return self.connections[topic]

    def write(self, topic: str, msg, t_ns: int) -> None:
        msgtype = msg.__msgtype__
        self.writer.write(self.connection(topic, msgtype), int(t_ns), TYPESTORE.serialize_cdr(msg, msgtype))

    def write_raw(self, topic: str, msgtype: str, raw: bytes, t_ns: int) -> None:
        self.writer.write(self.connection(topic, msgtype), int(t_ns), raw)

    def close(self) -> Path:
        self.writer.close()
        if self.path.exists():
            raise FileExistsError(f"{self.path} appeared while writing; the new bag is left at {self.tmp}")
        self.tmp.rename(self.path)
        self.staging.rmdir()
        return self.path

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

