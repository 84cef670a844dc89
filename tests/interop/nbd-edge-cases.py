#!/usr/bin/python3
# Edge cases of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md) driven through libnbd, the
# library behind nbdsh (Debian's python3-libnbd; run with /usr/bin/python3). Run by
# tests/interop/nbd-clients.test.ts against a fresh export of at least 8 MiB; prints "ok CASE" per
# case and exits 1 at the first failure, naming it. libnbd's client-side strictness is turned off
# where a case needs the request to reach the server as sent.
#
# Usage: nbd-edge-cases.py URI          (e.g. nbd://127.0.0.1:10809/edge)
import errno
import sys

import nbd

MIB = 1024 * 1024
URI = sys.argv[1]
failures = []


def case(name):
    def run(function):
        try:
            function()
            print(f"ok {name}", flush=True)
        except Exception as error:  # noqa: BLE001 - every failure is reported with its case
            print(f"FAIL {name}: {type(error).__name__}: {error}", flush=True)
            failures.append(name)
        return function
    return run


def connect(strict=True, structured=True):
    h = nbd.NBD()
    h.set_request_structured_replies(structured)
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    if not strict:
        h.set_strict_mode(0)
    h.connect_uri(URI)
    return h


def expect_error(function, errnos, what):
    try:
        function()
    except nbd.Error as error:
        if error.errnum not in errnos:
            raise AssertionError(f"{what}: errno {error.errnum} ({error.string}), expected one of {sorted(errnos)}")
        return error.errnum
    raise AssertionError(f"{what}: succeeded, expected an error {sorted(errnos)}")


def extents(h, count, offset):
    """base:allocation extents as (offset, length, flags), merged where the flags are equal."""
    found = []

    def collect(metacontext, extent_offset, entries, error):
        if metacontext == nbd.CONTEXT_BASE_ALLOCATION:
            position = extent_offset
            for index in range(0, len(entries), 2):
                length, flags = entries[index], entries[index + 1]
                if found and found[-1][2] == flags and found[-1][0] + found[-1][1] == position:
                    found[-1] = (found[-1][0], found[-1][1] + length, flags)
                else:
                    found.append((position, length, flags))
                position += length
        return 0

    position = offset
    while position < offset + count:
        before = len(found)
        h.block_status(offset + count - position, position, collect)
        if len(found) == before:
            raise AssertionError(f"block status at {position} returned no extent")
        position = found[-1][0] + found[-1][1]
    return found


def assert_equal(actual, expected, what):
    if actual != expected:
        raise AssertionError(f"{what}: got {actual!r}, expected {expected!r}")


h = connect()
size = h.get_size()
assert size >= 8 * MIB, f"the export must hold at least 8 MiB, has {size}"


@case("negotiation: structured replies, base:allocation, flags, block sizes")
def negotiation():
    assert_equal(h.get_structured_replies_negotiated(), True, "structured replies")
    assert_equal(h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION), True, "base:allocation")
    assert_equal(h.is_read_only(), False, "read-only")
    for name in ["can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_df", "can_multi_conn", "can_cache"]:
        assert_equal(getattr(h, name)(), True, name)
    assert_equal(h.get_block_size(nbd.SIZE_MINIMUM), 1, "minimum block size")
    assert_equal(h.get_block_size(nbd.SIZE_PREFERRED), 4096, "preferred block size")
    assert_equal(h.get_block_size(nbd.SIZE_MAXIMUM), 32 * MIB, "maximum block size")


@case("a fresh export is one hole that reads as zeros")
def fresh_export_is_a_hole():
    assert_equal(extents(h, size, 0), [(0, size, nbd.STATE_HOLE | nbd.STATE_ZERO)], "extents")
    assert_equal(h.pread(65536, 0), bytes(65536), "content")


@case("write beyond the end: ENOSPC; read beyond the end: EINVAL; the connection stays usable")
def beyond_the_end():
    loose = connect(strict=False)
    expect_error(lambda: loose.pwrite(b"\xee" * 4096, size - 512), {errno.ENOSPC}, "write across the end")
    expect_error(lambda: loose.pwrite(b"\xee" * 512, size), {errno.ENOSPC}, "write at the end")
    expect_error(lambda: loose.pread(4096, size - 512), {errno.EINVAL}, "read across the end")
    expect_error(lambda: loose.trim(4096, size), {errno.EINVAL}, "trim beyond the end")
    expect_error(lambda: loose.zero(4096, size - 512), {errno.ENOSPC, errno.EINVAL}, "write zeroes across the end")
    # Nothing of the refused write landed, and the connection still serves.
    assert_equal(loose.pread(512, size - 512), bytes(512), "last sector")
    loose.pwrite(b"\x11" * 512, size - 512)
    assert_equal(loose.pread(512, size - 512), b"\x11" * 512, "last sector after a valid write")
    loose.shutdown()


@case("zero-length requests are no-ops or EINVAL, never a disconnect")
def zero_length_requests():
    loose = connect(strict=False)
    loose.pwrite(b"\x22" * 4096, 2 * MIB)
    outcomes = []
    for what, request in [("read", lambda: loose.pread(0, 2 * MIB)),
                          ("write", lambda: loose.pwrite(b"", 2 * MIB)),
                          ("trim", lambda: loose.trim(0, 2 * MIB)),
                          ("write zeroes", lambda: loose.zero(0, 2 * MIB)),
                          ("cache", lambda: loose.cache(0, 2 * MIB))]:
        try:
            result = request()
            if what == "read":
                assert_equal(result, b"", "zero-length read")
            outcomes.append(f"{what}: ok")
        except nbd.Error as error:
            if error.errnum != errno.EINVAL:
                raise
            outcomes.append(f"{what}: EINVAL")
    print("  " + ", ".join(outcomes))
    assert_equal(loose.pread(4096, 2 * MIB), b"\x22" * 4096, "data next to the zero-length requests")
    loose.shutdown()


@case("oversized read: EINVAL or EOVERFLOW, and the connection stays usable")
def oversized_read():
    if size <= 32 * MIB:
        print("  (export not larger than 32 MiB: skipped)")
        return
    loose = connect(strict=False)
    expect_error(lambda: loose.pread(32 * MIB + 4096, 0), {errno.EINVAL, errno.EOVERFLOW, errno.ENOMEM}, "read of 32 MiB + 4 KiB")
    assert_equal(len(loose.pread(32 * MIB, 0)), 32 * MIB, "read of 32 MiB")
    loose.shutdown()


@case("trim, then block status reports a hole that reads as zeros")
def trim_then_block_status():
    base = 1 * MIB
    h.pwrite(b"\x33" * (256 * 1024), base)
    status = extents(h, 256 * 1024, base)
    assert_equal(status, [(base, 256 * 1024, 0)], "extents after the write")
    h.trim(128 * 1024, base + 64 * 1024)
    status = extents(h, 256 * 1024, base)
    trimmed_flags = status[1][2]
    assert_equal([(offset, length) for offset, length, _ in status],
                 [(base, 64 * 1024), (base + 64 * 1024, 128 * 1024), (base + 192 * 1024, 64 * 1024)], "extents after the trim")
    assert trimmed_flags & nbd.STATE_ZERO, f"trimmed range flags {trimmed_flags} do not say zero"
    assert_equal(h.pread(128 * 1024, base + 64 * 1024), bytes(128 * 1024), "trimmed content")
    assert_equal(h.pread(64 * 1024, base), b"\x33" * (64 * 1024), "content before the trim")
    # An unaligned trim zeroes the partial clusters at its edges.
    h.trim(1000, base + 192 * 1024 + 100)
    assert_equal(h.pread(1200, base + 192 * 1024), b"\x33" * 100 + bytes(1000) + b"\x33" * 100, "unaligned trim")


@case("write zeroes: punches a hole, or with NO_HOLE stays allocated; FAST_ZERO succeeds or is ENOTSUP")
def write_zeroes():
    base = 3 * MIB
    h.pwrite(b"\x44" * (128 * 1024), base)
    h.zero(64 * 1024, base)
    h.zero(64 * 1024, base + 64 * 1024, nbd.CMD_FLAG_NO_HOLE)
    assert_equal(h.pread(128 * 1024, base), bytes(128 * 1024), "zeroed content")
    status = extents(h, 128 * 1024, base)
    assert status[0][2] & nbd.STATE_ZERO, f"zeroed range {status[0]} does not say zero"
    assert_equal(status[-1][2] & nbd.STATE_HOLE, 0, "NO_HOLE range must stay allocated")
    try:
        h.zero(64 * 1024, base, nbd.CMD_FLAG_FAST_ZERO)
    except nbd.Error as error:
        if error.errnum != errno.ENOTSUP:
            raise


@case("FUA write and flush succeed and the data reads back")
def fua_and_flush():
    base = 4 * MIB
    h.pwrite(b"\x55" * 8192, base, nbd.CMD_FLAG_FUA)
    h.pwrite(b"\x56" * 1000, base + 8192 + 17)
    h.flush()
    assert_equal(h.pread(8192, base), b"\x55" * 8192, "FUA data")
    assert_equal(h.pread(1000, base + 8192 + 17), b"\x56" * 1000, "flushed unaligned data")


@case("structured reads: chunks cover the range exactly, holes as hole chunks or zeros; DF gives one chunk")
def structured_reads():
    base = 5 * MIB
    h.pwrite(b"\x66" * (64 * 1024), base + 128 * 1024)  # data in the middle of a 256 KiB range

    def read_chunks(flags):
        chunks = []

        def chunk(subbuf, offset, status, error):
            chunks.append((offset, len(subbuf), status, bytes(subbuf)))
            return 0
        h.pread_structured(256 * 1024, base, chunk, flags)
        return sorted(chunks)

    chunks = read_chunks(0)
    position = base
    content = bytearray()
    for offset, length, status, data in chunks:
        assert_equal(offset, position, "chunk offset (gap or overlap)")
        if status == nbd.READ_HOLE:
            assert_equal(data, bytes(length), "hole chunk content")
        content += data
        position += length
    assert_equal(position, base + 256 * 1024, "end of the chunks")
    assert_equal(bytes(content), bytes(128 * 1024) + b"\x66" * (64 * 1024) + bytes(64 * 1024), "content")
    kinds = sorted({"hole" if status == nbd.READ_HOLE else "data" for _, _, status, _ in chunks})
    print(f"  {len(chunks)} chunks ({', '.join(kinds)})")
    single = read_chunks(nbd.CMD_FLAG_DF)
    assert_equal(len(single), 1, "chunks with DF")
    assert_equal(single[0][2], nbd.READ_DATA, "DF chunk type for a range of data and hole")
    assert_equal(single[0][3], bytes(content), "DF content")


@case("pipelined requests complete, possibly out of order, with the right data")
def pipelined():
    base = 6 * MIB
    buffers = {}
    for index in range(64):
        buffer = nbd.Buffer.from_bytearray(bytearray([index]) * 4096)
        buffers[h.aio_pwrite(buffer, base + index * 4096)] = buffer
    while buffers:
        h.poll(-1)
        for cookie in [cookie for cookie in buffers if h.aio_command_completed(cookie)]:
            buffers.pop(cookie)
    data = h.pread(64 * 4096, base)
    for index in range(64):
        assert_equal(data[index * 4096: (index + 1) * 4096], bytes([index]) * 4096, f"block {index}")


@case("multi-conn: a write on one connection is seen by another, and a flush there covers it")
def multi_conn():
    base = 7 * MIB
    first = connect()
    second = connect()
    assert_equal(first.can_multi_conn() and second.can_multi_conn(), True, "multi-conn advertised")
    first.pwrite(b"\x77" * 4096, base)
    second.flush()
    assert_equal(second.pread(4096, base), b"\x77" * 4096, "data written on the first connection")
    second.pwrite(b"\x78" * 4096, base + 4096)
    first.flush()
    assert_equal(first.pread(8192, base), b"\x77" * 4096 + b"\x78" * 4096, "both writes")
    first.shutdown()
    second.shutdown()


@case("CACHE of a written range succeeds")
def cache():
    h.cache(64 * 1024, 0)


@case("an unknown export is refused at the handshake")
def unknown_export():
    other = nbd.NBD()
    base_uri = URI.rsplit("/", 1)[0]
    try:
        other.connect_uri(f"{base_uri}/no-such-vdisk")
    except nbd.Error:
        return
    raise AssertionError("connected to an export that does not exist")


h.shutdown()
if failures:
    print(f"{len(failures)} edge cases failed: {', '.join(failures)}", flush=True)
    sys.exit(1)
print("all edge cases passed", flush=True)
