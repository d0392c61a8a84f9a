# The virtual board's flash: a MicroPython user VFS over the host directory that flash.mjs serves.
# Mounted at '/', as an ESP32's littlefs is, so mpremote paths (':main.py', ':/lib/x.py') mean here
# what they mean on a real board. It raises the usual errno values (ENOENT is 2), which mpremote
# relies on; the port's own VfsPosix would raise Emscripten's (ENOENT is 44).
import io
import json
from binascii import unhexlify

from _board import flash
from uctypes import addressof

# An open file's calls, looked up on the flash proxy once (as machine.py's host functions are): a
# lookup allocates, and a MemoryError in the VM's JavaScript glue leaves it spinning, where littlefs
# reads and writes an open file on a full heap.
_flash_read_into = flash.read_into
_flash_write_from = flash.write_from
_flash_seek = flash.seek
_flash_close = flash.close

_MP_STREAM_FLUSH = 1
_MP_STREAM_CLOSE = 4
_MP_STREAM_GET_BUFFER_SIZE = 11


def _check(result):
    if isinstance(result, int) and result < 0:
        raise OSError(-result)
    return result


def _read(fd, size):
    return unhexlify(_check(flash.read(fd, size)))


class FlashFile(io.IOBase):
    def __init__(self, fd, text):
        self._fd = fd
        self._text = text

    def _out(self, data):
        return str(data, "utf-8") if self._text else data

    def readinto(self, buf):
        return _check(_flash_read_into(self._fd, addressof(buf), len(buf)))

    def read(self, size=-1):
        return self._out(_read(self._fd, size))

    def readline(self):
        line = b""
        while not line.endswith(b"\n"):
            c = _read(self._fd, 1)
            if not c:
                break
            line += c
        return self._out(line)

    def readlines(self):
        return list(self)

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def write(self, data):
        if isinstance(data, str):
            data = data.encode()
        return _check(_flash_write_from(self._fd, addressof(data), len(data)))  # as littlefs: no copy on the heap

    def seek(self, offset, whence=0):
        return _check(_flash_seek(self._fd, offset, whence))

    def tell(self):
        return self.seek(0, 1)

    def flush(self):
        pass  # writes reach the host file at once

    def close(self):
        if self._fd is not None:
            _flash_close(self._fd)
            self._fd = None

    def ioctl(self, request, arg):
        if request == _MP_STREAM_CLOSE:
            self.close()
            return 0
        if request == _MP_STREAM_FLUSH:
            return 0
        if request == _MP_STREAM_GET_BUFFER_SIZE:
            # The importer's reads: littlefs's C reads allocate nothing, each of ours a little, so the
            # fewer the better (extmod/vfs_reader.c takes at most 255; littlefs leaves it ~20).
            return 255
        return -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class HostFlash:
    """The VFS object: MicroPython hands it paths relative to its mount point and to its cwd."""

    def __init__(self):
        self._cwd = "/"

    def _path(self, path):
        if path.startswith("/") and "/." not in path and "//" not in path:
            return path  # already plain: what the importer passes, as often as it looks for a module
        parts = []
        for part in (path if path.startswith("/") else self._cwd + "/" + path).split("/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part and part != ".":
                parts.append(part)
        return "/" + "/".join(parts)

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def ilistdir(self, path):
        for name, kind, size in json.loads(_check(flash.listdir(self._path(path)))):
            yield (name, kind, 0, size)

    def stat(self, path):
        path = self._path(path)
        kind = _check(flash.stat(path, 0))
        size, mtime = flash.stat(path, 1), flash.stat(path, 2)
        return (kind, 0, 0, 0, 0, 0, size, mtime, mtime, mtime)

    def statvfs(self, path):
        # The 2 MiB littlefs partition of 4 KiB blocks that flash.mjs keeps count of, as VfsLfs2 reports it.
        free, total = json.loads(_check(flash.statvfs()))
        return (4096, 4096, total, free, free, 0, 0, 0, 0, 255)

    def open(self, path, mode):
        return FlashFile(_check(flash.open(self._path(path), mode)), "b" not in mode)

    def mkdir(self, path):
        _check(flash.mkdir(self._path(path)))

    def rmdir(self, path):
        _check(flash.rmdir(self._path(path)))

    def remove(self, path):
        _check(flash.remove(self._path(path)))

    def rename(self, old, new):
        _check(flash.rename(self._path(old), self._path(new)))

    def chdir(self, path):
        path = self._path(path)
        if self.stat(path)[0] != 0x4000:
            raise OSError(20)  # ENOTDIR
        self._cwd = path

    def getcwd(self):
        return self._cwd
