// The board's flash, kept in a directory of the host so that it outlives the VM (a reset re-creates
// the VM, as an ESP32 reboot clears RAM but not flash). frozen/flashfs.py mounts it at '/'.
//
// Every function is synchronous and returns a negative errno on failure: an exception thrown by a
// JavaScript function called from MicroPython aborts the whole VM instead of reaching Python.
// File contents cross as hex strings for read(), and straight to and from the Python buffer's bytes
// in the VM's memory for readinto() and write(): they must not fill the ESP32's heap with garbage
// that littlefs would not make (a Python bytes object reaches JavaScript only as a proxy).
import fs from "node:fs";
import path from "node:path";

// MicroPython's errno numbers (Linux's), whatever the host's are.
const ERRNO = {
  EPERM: 1, ENOENT: 2, EIO: 5, EBADF: 9, EACCES: 13, EEXIST: 17, ENOTDIR: 20, EISDIR: 21,
  EINVAL: 22, ENOSPC: 28, ENOTEMPTY: 39,
};
// The filesystem partition of MicroPython's ESP32 images: "vfs, data, fat, 0x200000, 0x200000" in
// ports/esp32/partitions-4MiB.csv, a 2 MiB littlefs of 4 KiB blocks (an S3 image with 8 MiB of flash
// has more: the smaller one is the stricter). littlefs gives every file at least a block of its own
// and every directory a metadata pair (two blocks); inlining of tiny files is not counted, so the
// model fills up no later than the chip would.
const BLOCK = 4096;
const BLOCKS = 0x200000 / BLOCK;
const S_IFDIR = 0x4000;
const S_IFREG = 0x8000;
const OPEN_FLAGS = { r: "r", w: "w", a: "a", x: "wx", "r+": "r+", "w+": "w+", "a+": "a+", "x+": "wx+" };

function failure(error) {
  return -(ERRNO[error.code] ?? ERRNO.EIO);
}

function attempt(operation) {
  try {
    return operation();
  } catch (error) {
    return failure(error);
  }
}

function fileBlocks(size) {
  return Math.max(1, Math.ceil(size / BLOCK));
}

// Blocks in use under `directory` (the root's metadata pair included), from the host's files: a
// test that drops a big file into the board's flash fills it as a full partition would be.
function usedBlocks(directory) {
  let used = 2;
  for (const item of fs.readdirSync(directory, { withFileTypes: true })) {
    const where = path.join(directory, item.name);
    used += item.isDirectory() ? usedBlocks(where) : fileBlocks(fs.statSync(where).size);
  }
  return used;
}

// [type, size] as littlefs reports them: directories have size 0.
function entry(stats) {
  return stats.isDirectory() ? [S_IFDIR, 0] : [S_IFREG, stats.size];
}

// `memory()` gives the VM's linear memory, where read_into writes straight into a Python buffer.
// `fault.refuseWrites`: a worn or failing flash, whose every program fails: littlefs returns
// LFS_ERR_IO (lfs.h: -5, "Error during device operation"), which MicroPython raises as OSError(EIO)
// (extmod/vfs_lfsx_file.c: the errno is littlefs's error, negated). Every change refuses, creating or
// truncating a file at its open (the stricter case: littlefs may defer it to the close); reads work.
export function hostFlash(root, memory, fault = { refuseWrites: false }) {
  fs.mkdirSync(root, { recursive: true });
  // Board paths are absolute ('/lib/x.py'); normalising under '/' keeps '..' inside the root.
  const host = (boardPath) => path.join(root, path.posix.normalize("/" + boardPath));
  const files = new Map(); // fd -> {position, append}

  return {
    // One number of [type, size, mtime] (`field` 0, 1, 2) per call: numbers cost the Python heap
    // nothing, and the importer stats many paths.
    stat: (p, field) => attempt(() => {
      const s = fs.statSync(host(p));
      return [...entry(s), Math.floor(s.mtimeMs / 1000)][field];
    }),
    listdir: (p) => attempt(() => JSON.stringify(
      fs.readdirSync(host(p)).map((name) => [name, ...entry(fs.statSync(path.join(host(p), name)))]),
    )),
    // [free blocks, total blocks] for os.statvfs.
    statvfs: () => attempt(() => JSON.stringify([BLOCKS - usedBlocks(root), BLOCKS])),
    mkdir: (p) => attempt(() => {
      if (fault.refuseWrites) return -ERRNO.EIO;
      if (usedBlocks(root) + 2 > BLOCKS) return -ERRNO.ENOSPC;
      fs.mkdirSync(host(p));
      return 0;
    }),
    rmdir: (p) => attempt(() => (fault.refuseWrites ? -ERRNO.EIO : (fs.rmdirSync(host(p)), 0))),
    remove: (p) => attempt(() => {
      if (fault.refuseWrites) return -ERRNO.EIO;
      if (fs.statSync(host(p)).isDirectory()) return -ERRNO.EISDIR;
      fs.unlinkSync(host(p));
      return 0;
    }),
    rename: (from, to) => attempt(() => (fault.refuseWrites ? -ERRNO.EIO : (fs.renameSync(host(from), host(to)), 0))),
    open: (p, mode) => attempt(() => {
      const flags = OPEN_FLAGS[mode.replace(/[bt]/g, "")];
      if (flags === undefined) return -ERRNO.EINVAL;
      const exists = fs.existsSync(host(p));
      if (exists && fs.statSync(host(p)).isDirectory()) return -ERRNO.EISDIR;
      if (fault.refuseWrites && flags !== "r" && flags !== "r+" && (!exists || flags.startsWith("w"))) return -ERRNO.EIO;
      if (!exists && flags !== "r" && flags !== "r+" && usedBlocks(root) + 1 > BLOCKS) return -ERRNO.ENOSPC;
      const fd = fs.openSync(host(p), flags);
      files.set(fd, { position: 0, append: flags.startsWith("a") });
      return fd;
    }),
    // count < 0 reads to the end of the file.
    read: (fd, count) => attempt(() => {
      const file = files.get(fd);
      if (file === undefined) return -ERRNO.EBADF;
      const size = count < 0 ? Math.max(fs.fstatSync(fd).size - file.position, 0) : count;
      const buffer = new Uint8Array(size);
      const got = fs.readSync(fd, buffer, 0, size, file.position);
      file.position += got;
      return Buffer.from(buffer.buffer, 0, got).toString("hex");
    }),
    // Into the buffer at `address` in the VM's memory: an ESP32's littlefs reads into the caller's
    // buffer, allocating nothing on the Python heap, and importing a .mpy must not either.
    read_into: (fd, address, count) => attempt(() => {
      const file = files.get(fd);
      if (file === undefined) return -ERRNO.EBADF;
      const got = fs.readSync(fd, new Uint8Array(memory().buffer, address, count), 0, count, file.position);
      file.position += got;
      return got;
    }),
    // From the buffer at `address` in the VM's memory, like read_into.
    write_from: (fd, address, count) => attempt(() => {
      const file = files.get(fd);
      if (file === undefined) return -ERRNO.EBADF;
      if (fault.refuseWrites) return -ERRNO.EIO;
      const size = fs.fstatSync(fd).size;
      const position = file.append ? size : file.position;
      const more = fileBlocks(Math.max(size, position + count)) - fileBlocks(size);
      if (more > 0 && usedBlocks(root) + more > BLOCKS) return -ERRNO.ENOSPC; // littlefs: LFS_ERR_NOSPC
      const written = fs.writeSync(fd, new Uint8Array(memory().buffer, address, count), 0, count, position);
      file.position = position + written;
      return written;
    }),
    seek: (fd, offset, whence) => attempt(() => {
      const file = files.get(fd);
      if (file === undefined) return -ERRNO.EBADF;
      const base = [0, file.position, fs.fstatSync(fd).size][whence];
      if (base === undefined || base + offset < 0) return -ERRNO.EINVAL;
      file.position = base + offset;
      return file.position;
    }),
    close: (fd) => attempt(() => {
      if (files.delete(fd)) fs.closeSync(fd);
      return 0;
    }),
  };
}
