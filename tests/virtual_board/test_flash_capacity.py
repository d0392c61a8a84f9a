"""The virtual board's flash is as small as an ESP32's: MicroPython's 2 MiB littlefs partition.

`os.statvfs` reports what is free; a write that needs a block the partition no longer has fails
with ENOSPC, as littlefs's LFS_ERR_NOSPC reaches Python on the board, and whatever was written
before it stays readable."""

from __future__ import annotations

import errno
from pathlib import Path

from simulator.virtual_board import VirtualBoard

BLOCK = 4096
BLOCKS = 512  # ports/esp32/partitions-4MiB.csv: vfs, 0x200000 bytes


def free_blocks(board: VirtualBoard) -> int:
    return int(board.exec("import os; print(os.statvfs('/')[3])").strip())


def fill(flash: Path, leave_blocks: int, board: VirtualBoard) -> None:
    """Drop a file into the board's flash from outside so that `leave_blocks` blocks stay free."""
    free = free_blocks(board)
    (flash / "filler.bin").write_bytes(bytes((free - leave_blocks) * BLOCK))


def test_statvfs_counts_the_partitions_blocks_and_what_files_take(board: VirtualBoard) -> None:
    fields = board.exec("import os; print(os.statvfs('/'))").strip()
    assert fields.startswith(f"({BLOCK}, {BLOCK}, {BLOCKS}, ")
    before = free_blocks(board)
    board.exec("f = open('/data.bin', 'wb'); f.write(bytes(3 * 4096 + 1)); f.close()")
    assert free_blocks(board) == before - 4  # littlefs rounds a file up to whole blocks


def test_a_write_past_the_last_free_block_fails_with_enospc_and_keeps_what_was_written(
    board: VirtualBoard,
) -> None:
    fill(board.flash, leave_blocks=2, board=board)
    printed = board.exec(
        "import os\n"
        "f = open('/journal.bin', 'ab')\n"
        "f.write(bytes(4096))\n"  # the file's first block
        "f.write(bytes(4096))\n"  # the last free one
        "try:\n"
        "    f.write(bytes(1))\n"
        "except OSError as e:\n"
        "    print('refused', e.errno)\n"
        "f.close()\n"
        "print('size', os.stat('/journal.bin')[6], 'free', os.statvfs('/')[3])\n"
    )
    assert f"refused {errno.ENOSPC}" in printed
    assert "size 8192 free 0" in printed


def test_a_new_file_on_a_full_flash_is_refused_and_freeing_space_lets_it_in(board: VirtualBoard) -> None:
    fill(board.flash, leave_blocks=0, board=board)
    code = (
        "try:\n"
        "    open('/new.txt', 'w').close()\n"
        "    print('created')\n"
        "except OSError as e:\n"
        "    print('refused', e.errno)\n"
    )
    assert f"refused {errno.ENOSPC}" in board.exec(code)
    (board.flash / "filler.bin").unlink()
    assert "created" in board.exec(code)


def test_a_flash_that_refuses_writes_fails_each_with_eio_keeps_its_files_readable_and_survives_a_reset(
    board: VirtualBoard,
) -> None:
    board.exec("f = open('/kept.txt', 'w'); f.write('kept'); f.close()")
    board.refuse_flash_writes()
    code = (
        "import os\n"
        "def attempt(name, change):\n"
        "    try:\n"
        "        change()\n"
        "        print(name, 'done')\n"
        "    except OSError as e:\n"
        "        print(name, 'refused', e.errno)\n"
        "def append():\n"
        "    with open('/kept.txt', 'a') as f:\n"
        "        f.write('more')\n"
        "attempt('append', append)\n"
        "attempt('create', lambda: open('/new.txt', 'w'))\n"
        "attempt('rename', lambda: os.rename('/kept.txt', '/moved.txt'))\n"
        "attempt('remove', lambda: os.remove('/kept.txt'))\n"
        "attempt('mkdir', lambda: os.mkdir('/logs'))\n"
        "print('read', open('/kept.txt').read())\n"
    )
    refused = [f"{change} refused {errno.EIO}" for change in ("append", "create", "rename", "remove", "mkdir")]
    assert board.exec(code).split("\n")[:6] == [*refused, "read kept"]
    board.reset()  # a worn flash stays worn
    assert board.exec(code).split("\n")[:6] == [*refused, "read kept"]
    board.refuse_flash_writes(False)
    assert board.exec("attempt('append', append)\nprint(open('/kept.txt').read())") == "append done\nkeptmore\n"
