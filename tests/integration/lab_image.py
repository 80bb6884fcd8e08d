"""The lab's only image, ``fleet/busybox:test``: a root holding busybox-static and a few applet links."""

from __future__ import annotations

import io
import shutil
import struct
import tarfile
from pathlib import Path

from tests.integration.lab_os import LabError

__all__ = ["BUSYBOX_IMAGE", "busybox_rootfs_tar"]

BUSYBOX_IMAGE = "fleet/busybox:test"


def _busybox_is_static(path: Path) -> bool:
    """True unless the ELF file asks for a program interpreter (PT_INTERP), i.e. is dynamic."""
    with path.open("rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # only 64-bit ELF is expected here
            return True
        (phoff,) = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def busybox_rootfs_tar() -> bytes:
    """A tar of a root with only busybox and a few applet links: the fleet/busybox:test image."""
    busybox = Path(shutil.which("busybox") or "/bin/busybox").resolve()
    if not _busybox_is_static(busybox):
        raise LabError(f"{busybox} is dynamically linked; install busybox-static")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for directory in ("bin", "tmp"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in ("sh", "sleep", "true", "false", "echo", "cat", "ls", "env", "ps", "kill", "hostname"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    return buf.getvalue()
