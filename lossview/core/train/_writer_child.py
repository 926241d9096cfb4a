"""The Recorder's writer process (run as ``python -I -S _writer_child.py``; standard
library only, so it starts in a few tens of milliseconds and costs the machine little).

It continues the native run folder its parent's ``RunWriter`` created (docs/format.md),
in the order the parent sends: metrics lines appended to ``metrics.jsonl`` (one write per
batch), checkpoints written to a temporary file, fsync'ed and renamed into place, so the
records before a snapshot are in the file before the snapshot appears and a killed run
is readable up to its last complete snapshot. ``run.json`` text comes encoded from the
parent and is written the same atomic way. The fsyncs and renames of a batch's
checkpoints come together at its end (or with the next batch's, when that one is
already waiting; at most 32 wait), and those of the last ones with the metrics' fsync
and ``run.json`` at the close: fsyncs in a row mostly share one journal commit, the
disk work (and the kernel's, on the training loop's cores) that a file at a time costs.

Frames on stdin: ``<QI`` (pickle length, number of out-of-band buffers), one ``<Q`` per
buffer (its length), the pickle (protocol 5), the buffers. Items:

- ``("open", folder, checkpoint_dir, format_name, sync_spec)``: ``sync_spec``: fsync
  ``run.json`` first (the parent wrote it without waiting for the disk);
- ``("batch", [("records", [(step, {key: value})]), ("snapshot", (step, epoch,
  [(name, safetensors dtype, shape, nbytes)], [buffer], buffer_names)), ...])``: the
  buffers hold the tensors' bytes in the order of their names (one buffer, or one per
  tensor);
- ``("spec", run_json_text)``; ``("close", run_json_text)``.

End of stdin without ``close`` (the parent died): what arrived is written, ``run.json``
is left as it was (``running``). An error is pickled to stdout and the process exits 1.
"""

import os
import struct
import sys

try:  # not pickle: it imports re (~4 ms of this process's start); the same C code
    from _pickle import dumps as _dumps
    from _pickle import loads as _loads
except ImportError:
    from pickle import dumps as _dumps
    from pickle import loads as _loads

_HEAD = struct.Struct("<QI")
_MOST_STARTED = 32  # checkpoints held open, written but not yet in place


def json_encoder(item_separator: str = ", ", key_separator: str = ": "):
    """``json.dumps`` (``separators=(item_separator, key_separator)``) as json's own C
    encoder does it, without importing ``json``: it imports ``re``, ``enum`` and more,
    ~7 ms of this process's start on a core the training loop may need. Falls back to
    ``json`` where the C encoder is missing or called otherwise."""
    try:
        from _json import encode_basestring_ascii, make_encoder

        def default(o):
            raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")

        def dumps(obj) -> str:
            return "".join(make_encoder({}, default, encode_basestring_ascii, None, key_separator,
                                        item_separator, False, False, True)(obj, 0))

        if dumps({"a": [1.5, float("nan"), None, True, "\u00e9"]}) == \
                '{"a": [1.5, NaN, null, true, "\\u00e9"]}'.replace(", ", item_separator) \
                .replace(": ", key_separator):
            return dumps
    except (ImportError, TypeError):
        pass
    import json

    return lambda obj: json.dumps(obj, separators=(item_separator, key_separator))


dumps = json_encoder()  # json.dumps(obj)
dumps_compact = json_encoder(",", ":")  # json.dumps(obj, separators=(",", ":"))


def _more(inp) -> bool:
    """Whether another frame is already waiting in the pipe."""
    if sys.platform == "win32":
        return False
    import select

    return bool(select.select([inp], [], [], 0)[0])


def _read_exact(inp, n: int):
    buf = bytearray(n)
    mv = memoryview(buf)
    got = 0
    while got < n:
        k = inp.readinto(mv[got:])
        if not k:
            return None
        got += k
    return buf


def read_frame(inp):
    head = _read_exact(inp, _HEAD.size)
    if head is None:
        return None
    n, k = _HEAD.unpack(head)
    sizes = _read_exact(inp, 8 * k) if k else b""
    data = _read_exact(inp, n) if sizes is not None else None
    if data is None:
        return None
    bufs = []
    for size in struct.unpack(f"<{k}Q", sizes):
        b = _read_exact(inp, size)
        if b is None:
            return None
        bufs.append(b)
    return _loads(data, buffers=bufs)


def atomic_write(path: str, chunks) -> None:
    """``chunks`` to a temporary file beside ``path``, fsync, rename into place."""
    finish([start(path, chunks)])


def start(path: str, chunks):
    """``chunks`` written to a temporary file beside ``path`` (not yet fsync'ed): what
    :func:`finish` needs."""
    folder, name = os.path.split(path)
    fd, tmp = _temp(folder, name)
    try:
        for c in chunks:
            mv = memoryview(c).cast("B")
            while mv.nbytes:
                mv = mv[os.write(fd, mv):]
    except BaseException:
        os.close(fd)
        _quiet(os.unlink, tmp)
        raise
    return fd, tmp, path


def finish(started) -> None:
    """fsync each started file, then rename each into place, in order: a file appears
    only complete and on disk. Several fsyncs in a row mostly share one journal commit."""
    try:
        for fd, _, _ in started:
            os.fsync(fd)
        for fd, tmp, path in started:
            os.close(fd)
            os.replace(tmp, path)
    except BaseException:
        for fd, tmp, _ in started:
            _quiet(os.close, fd)
            _quiet(os.unlink, tmp)
        raise


def _temp(folder: str, name: str):
    """A new file ``.<name>.<random>.tmp`` in ``folder``, as ``tempfile.mkstemp`` makes
    it (exclusive, mode 0600), without importing ``tempfile`` (random, shutil...: ~7 ms
    of this process's start, on a core the training loop may need)."""
    flags = (os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0))
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name for {name} in {folder}")


def _quiet(f, arg) -> None:
    try:  # noqa: SIM105 - contextlib is not imported here (start-up time)
        f(arg)
    except OSError:
        pass


def safetensors_chunks(tensors, data, metadata):
    """The pieces of a .safetensors file: 8-byte little-endian header length, the JSON
    header (padded with spaces to a multiple of 8), the tensors' bytes in order."""
    header = {"__metadata__": metadata}
    offset = 0
    for name, dtype, shape, n in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = dumps_compact(header).encode()
    text += b" " * (-len(text) % 8)
    return [struct.pack("<Q", len(text)), text, *data]


class Writer:
    def __init__(self, folder: str, checkpoint_dir: str, format_name: str,
                 sync_spec: bool = False) -> None:
        self.folder = folder
        if sync_spec:  # the parent wrote run.json without waiting for the disk
            fd = os.open(os.path.join(folder, "run.json"), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.checkpoints = os.path.join(folder, checkpoint_dir)
        self.format_name = format_name
        # appended to for the writer's whole life: closed when it closes
        self.metrics = open(os.path.join(folder, "metrics.jsonl"), "a", encoding="utf-8")  # noqa: SIM115

    def records(self, records) -> None:
        lines = []
        for step, metrics in records:
            rec = {"step": int(step)}
            rec.update((k, v) for k, v in metrics.items() if v is not None)
            lines.append(dumps(rec))
        if lines:
            self.metrics.write("\n".join(lines) + "\n")
            self.metrics.flush()

    def snapshot(self, step: int, epoch, tensors, data, buffer_names):
        """The checkpoint's temporary file, written (see :func:`start`)."""
        meta = {"step": str(int(step)), "epoch": "" if epoch is None else repr(float(epoch)),
                "buffers": dumps(sorted(buffer_names)), "format": self.format_name}
        path = os.path.join(self.checkpoints, f"step_{int(step):09d}.safetensors")
        return start(path, safetensors_chunks(tensors, data, meta))

    def run_json(self, text: str) -> None:
        atomic_write(os.path.join(self.folder, "run.json"), [text.encode("utf-8")])

    def close(self, text: str, started=()) -> None:
        """fsync the metrics, then the checkpoints ``started`` still to finish and
        ``run.json`` appear, in that order. ``run.json``'s temporary file is written
        before the first fsync, so the three fsyncs share one journal commit (written
        after the metrics' fsync, it took a second one: close 5.0 -> 2.5 ms on this VM's
        disk)."""
        last = start(os.path.join(self.folder, "run.json"), [text.encode("utf-8")])
        try:
            self.metrics.flush()
            os.fsync(self.metrics.fileno())
            self.metrics.close()
        except BaseException:
            _quiet(os.close, last[0])
            _quiet(os.unlink, last[1])
            raise
        finish([*started, last])


def main() -> int:
    import _signal  # not signal: it imports enum (~4 ms of this process's start)

    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)  # Ctrl-C is the training loop's to handle
    inp, out = sys.stdin.buffer.raw, sys.stdout.buffer
    writer = None
    started: list = []  # checkpoints written whose fsync and rename are still to do
    try:
        while True:
            item = read_frame(inp)
            if item is None:  # the parent is gone: what arrived is written
                finish(started)
                return 0
            kind = item[0]
            if kind == "batch":
                for what, payload in item[1]:
                    if what == "records":
                        writer.records(payload)
                    else:
                        started.append(writer.snapshot(*payload))
                # a batch's checkpoints appear together at its end, or with the next
                # batch's (or the close) when that one is already waiting
                if len(started) >= _MOST_STARTED or not _more(inp):
                    started, done = [], started
                    finish(done)
            elif kind == "close":
                started, done = [], started
                writer.close(item[1], done)
                out.write(b"\x00")  # done: the parent's close() returns now
                out.flush()
                return 0
            else:
                started, done = [], started
                finish(done)
                if kind == "open":
                    writer = Writer(*item[1:])
                elif kind == "spec":
                    writer.run_json(item[1])
    except BaseException as e:  # noqa: BLE001 - reported to the training thread
        try:  # noqa: SIM105 - contextlib is not imported here (start-up time)
            finish(started)  # the complete ones appear; the failed one is gone
        except BaseException:  # noqa: BLE001 - the first error is the one to report
            pass
        try:
            data = _dumps(e)
        except Exception:  # noqa: BLE001
            data = f"{type(e).__name__}: {e}".encode()
        out.write(data)
        out.flush()
        return 1
    finally:
        if writer is not None and not writer.metrics.closed:
            writer.metrics.flush()


if __name__ == "__main__":
    sys.exit(main())
