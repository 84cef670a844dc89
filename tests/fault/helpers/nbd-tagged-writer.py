#!/usr/bin/python3
# Child process of tests/fault/nbd-sigkill.test.ts: a libnbd client (Debian's python3-libnbd) that
# writes self-identifying 512-byte sectors to an NBD export at queue depth N with periodic flushes,
# until the server dies or the writer is killed. Every event is one line on stdout, printed *before*
# it can matter to the parent's check (stdout is unbuffered: run with python3 -u):
#   ready                      connected, writing starts
#   w <seq> <sector> <count>   write <seq> is about to be sent (printed before aio_pwrite)
#   a <seq>                    write <seq> was acknowledged (printed after its reply arrived)
#   F <id>                     flush <id> is about to be sent (printed before aio_flush)
#   f <id>                     flush <id> completed
#   x <message>                the connection failed (expected once the server is killed)
# Writes in flight never overlap, so two writes of the same sector are ordered: the later one was
# sent after the earlier one was acknowledged, and seq order is that order.
#
# Sector format (tests/fault/nbd-sigkill.test.ts decodes it): bytes 0-3 "OVSN", 4-7 seq (u32 LE),
# 8-15 sector number (u64 LE), 16-511 the first 496 bytes of SHA-512(bytes 0-15) repeated.
#
# Usage: nbd-tagged-writer.py URI SEQ_BASE SEED QUEUE_DEPTH SECTORS_MAX FLUSH_EVERY_WRITES
import hashlib
import random
import struct
import sys

import nbd

SECTOR_BYTES = 512


def sector_bytes(seq, sector):
    header = b"OVSN" + struct.pack("<IQ", seq, sector)
    digest = hashlib.sha512(header).digest()
    return header + (digest * 8)[: SECTOR_BYTES - len(header)]


def emit(line):
    sys.stdout.write(line + "\n")


def main():
    uri, seq_base, seed, queue_depth, sectors_max, flush_every = sys.argv[1:7]
    seq = int(seq_base)
    rng = random.Random(int(seed))
    queue_depth, sectors_max, flush_every = int(queue_depth), int(sectors_max), int(flush_every)

    h = nbd.NBD()
    h.connect_uri(uri)
    device_sectors = h.get_size() // SECTOR_BYTES
    emit("ready")

    writes = {}  # cookie -> (seq, first sector, count, buffer kept alive until the reply)
    flushes = {}  # cookie -> flush id
    flush_id = 0
    acked_since_flush = 0
    try:
        while True:
            while len(writes) < queue_depth:
                count = rng.randint(1, sectors_max)
                # Mostly cluster-aligned writes, some unaligned ones (read-modify-write in the engine).
                if rng.random() < 0.75 and count >= 8:
                    count -= count % 8
                    first = rng.randrange(0, (device_sectors - count) // 8 + 1) * 8
                else:
                    first = rng.randrange(0, device_sectors - count + 1)
                if any(first < f + c and f < first + count for (_, f, c, _) in writes.values()):
                    continue
                seq += 1
                data = bytearray()
                for sector in range(first, first + count):
                    data += sector_bytes(seq, sector)
                buffer = nbd.Buffer.from_bytearray(data)
                emit(f"w {seq} {first} {count}")
                cookie = h.aio_pwrite(buffer, first * SECTOR_BYTES)
                writes[cookie] = (seq, first, count, buffer)
            if acked_since_flush >= flush_every and not flushes:
                flush_id += 1
                emit(f"F {flush_id}")
                flushes[h.aio_flush()] = flush_id
                acked_since_flush = 0
            h.poll(-1)
            # aio_command_completed raises nbd.Error if the command failed: the server is gone.
            for cookie in [cookie for cookie in writes if h.aio_command_completed(cookie)]:
                emit(f"a {writes.pop(cookie)[0]}")
                acked_since_flush += 1
            for cookie in [cookie for cookie in flushes if h.aio_command_completed(cookie)]:
                emit(f"f {flushes.pop(cookie)}")
    except nbd.Error as error:
        emit(f"x {error}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
