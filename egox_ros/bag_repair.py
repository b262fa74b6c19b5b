"""`egox bag repair`: rebuild an MCAP rosbag2 bag that a crash left without its index.

A recorder killed with SIGKILL (or a power cut) leaves the `.mcap` file without summary and
footer and the bag without `metadata.yaml`; rosbags' AnyReader, mcap's seeking reader and
`egox convert` refuse it. What `egox_recorder` flushed (every `flush_period_s`) is still a
sequence of complete MCAP records. `repair_bag` reads them front to back without seeking
(mcap's StreamReader) and stops at the first record that is truncated or unreadable, then
writes a new bag from what it recovered with rosbags' Writer (the role of
`ros2 bag reindex`): the same schemas (message definitions, byte for byte), one connection per
channel (topic, type, serialization format, offered QoS read back from the channel metadata,
else none recorded: readers then use their default QoS), every message with its log time and
its CDR bytes unchanged, chunk indexes, summary, footer, and a rosbag2 v9 `metadata.yaml`
(message counts per topic, starting time, duration).

The original file is kept, renamed `<name>.mcap.broken` next to the new `<name>.mcap` (and an
old `metadata.yaml` to `metadata.yaml.broken`): repair only keeps complete records, so the
original bytes stay available to other tools. The new bag is written completely in a
temporary folder inside the bag directory before anything is renamed, so an interrupted repair
leaves the original in place. A bag that rosbags already reads is reported valid and left
unchanged. No rclpy here: this runs without a ROS environment.
"""
from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from mcap.exceptions import EndOfFile
from mcap.records import Channel, Footer, Message, Schema
from mcap.stream_reader import StreamReader
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.rosbag2.metadata import parse_qos
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

from egox_model.errors import ConfigError
from egox_ros.errors import BagError

__all__ = ["RepairReport", "bag_is_valid", "find_mcap", "read_records", "repair_bag"]

BROKEN_SUFFIX = ".broken"
MCAP_MAGIC = b"\x89MCAP0\r\n"
_TMP_DIR = ".egox-repair"
_IDL_SEPARATOR = "=" * 80 + "\n"


@dataclass
class RepairReport:
    """What `repair_bag` did.

    `status` is "valid" (nothing changed) or "repaired"; `messages` counts the recovered
    messages per topic; `stopped` says why reading ended ("footer": the file was complete,
    else the error at the truncated or unreadable tail); `kept` is the original file's new
    name; `skipped` names channels that could not be rebuilt (no schema, unknown type) and
    why, and `orphans` counts messages of channels never declared in the readable part.
    """

    bag: Path
    status: str
    mcap: Path
    messages: dict[str, int] = field(default_factory=dict)
    stopped: str = ""
    kept: Path | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    orphans: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (paths as strings)."""
        return {"bag": str(self.bag), "status": self.status, "mcap": str(self.mcap),
                "messages": dict(self.messages), "stopped": self.stopped,
                "kept": str(self.kept) if self.kept else None, "skipped": dict(self.skipped),
                "orphans": self.orphans}


def find_mcap(bag: str | Path) -> Path:
    """The one `.mcap` file of the bag directory `bag`; ConfigError/BagError otherwise."""
    bag = Path(bag)
    if not bag.exists():
        raise ConfigError(f"bag {str(bag)!r} does not exist; give the bag directory (the one "
                          "holding the .mcap file)")
    if not bag.is_dir():
        raise ConfigError(f"bag {str(bag)!r} is a file; give the bag directory that holds it "
                          f"({bag.parent})")
    files = sorted(bag.glob("*.mcap"))
    if not files:
        broken = sorted(bag.glob(f"*.mcap{BROKEN_SUFFIX}"))
        hint = (f"; {broken[0].name} is the original kept by an interrupted repair: rename it "
                f"to {broken[0].name.removesuffix(BROKEN_SUFFIX)} and run the repair again"
                if broken else "")
        names = sorted(p.name for p in bag.iterdir())
        raise BagError(f"bag {bag} has no .mcap file (it has {names}){hint}; only MCAP bags "
                       "can be repaired")
    if len(files) > 1:
        raise BagError(f"bag {bag} has {len(files)} .mcap files ({[p.name for p in files]}); "
                       "repair handles single-file bags (as egox_recorder writes them): move "
                       "each file into a directory of its own")
    return files[0]


def bag_is_valid(bag: str | Path) -> bool:
    """True when rosbags opens the bag (metadata.yaml and the MCAP summary and footer)."""
    try:
        with Reader(bag):
            return True
    except (ReaderError, OSError, ValueError, KeyError, struct.error):
        return False


def read_records(path: str | Path) -> Iterator[Schema | Channel | Message | str]:
    """Schemas, channels and messages of the MCAP file `path`, read front to back without
    seeking; the last item is a string: why reading stopped ("footer" at a complete file,
    else the error at the first truncated or unreadable record, whose records are dropped;
    a chunk counts as one record). BagError when the file does not start as an MCAP file.
    """
    with open(path, "rb") as stream:
        start = stream.read(len(MCAP_MAGIC))
        if start != MCAP_MAGIC:
            what = "is empty" if not start else "does not start with the MCAP magic bytes"
            raise BagError(f"{path} {what}: not an MCAP file, nothing to repair from")
        stream.seek(0)
        size = os.fstat(stream.fileno()).st_size
        records = StreamReader(stream, validate_crcs=True).records
        while True:
            try:
                record = next(records)
            except StopIteration:
                yield "footer"
                return
            except Exception as err:  # noqa: BLE001 - see below
                # At the end of the file: EndOfFile, or struct.error for a length field cut
                # short. Before it: McapError (a record over the size limit), ValueError (CRC
                # mismatch, bad UTF-8), the decompressors' own errors. Either way the rest of
                # the file cannot be trusted.
                yield ("truncated: the file ends before its footer"
                       if isinstance(err, EndOfFile) or stream.tell() >= size
                       else f"unreadable record: {type(err).__name__}: {err}")
                return
            if isinstance(record, (Schema, Channel, Message)):
                yield record
            elif isinstance(record, Footer):
                yield "footer"
                return


def _type_hash(schema: Schema) -> str:
    """RIHS01 hash of `schema`'s type, computed from its own definition (as AnyReader checks
    it): the types are registered in an empty typestore."""
    data = schema.data.decode()
    if schema.encoding == "ros2msg":
        types = get_types_from_msg(data, schema.name)
    elif schema.encoding == "ros2idl":
        types = {}
        parts = data.split(_IDL_SEPARATOR)[1:] if data.startswith(_IDL_SEPARATOR) else [data]
        for part in parts:
            types.update(get_types_from_idl(part.split("\n", 1)[1] if part.startswith("IDL: ")
                                            else part))
    else:
        raise ValueError(f"schema encoding {schema.encoding!r} is not ros2msg or ros2idl")
    store = get_typestore(Stores.EMPTY)
    store.register(types)
    return store.hash_rihs01(schema.name)


def _offered_qos(channel: Channel) -> list:
    """Offered QoS profiles stored in the channel metadata; [] when absent or unreadable."""
    try:
        return parse_qos(channel.metadata.get("offered_qos_profiles", ""))
    except (ReaderError, TypeError, KeyError, ValueError, AttributeError):
        return []


def _rebuild(mcap: Path, out_dir: Path, report: RepairReport) -> None:
    """Write the records of `mcap` that can be read to the new bag directory `out_dir`."""
    schemas: dict[int, Schema] = {}
    connections: dict[int, Any] = {}
    refused: set[int] = set()
    with Writer(out_dir, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for record in read_records(mcap):
            if isinstance(record, str):
                report.stopped = record
            elif isinstance(record, Schema):
                schemas.setdefault(record.id, record)
            elif isinstance(record, Channel):
                if record.id in connections or record.id in refused:
                    continue                     # the summary section repeats the channels
                schema = schemas.get(record.schema_id)
                try:
                    if schema is None:
                        raise ValueError(f"schema id {record.schema_id} was not recovered")
                    connections[record.id] = writer.add_connection(
                        record.topic, schema.name, msgdef=schema.data.decode(),
                        rihs01=_type_hash(schema), serialization_format=record.message_encoding,
                        offered_qos_profiles=_offered_qos(record))
                    report.messages.setdefault(record.topic, 0)
                except Exception as err:  # noqa: BLE001 - rosbags' type parser raises many
                    refused.add(record.id)
                    report.skipped[record.topic] = f"{type(err).__name__}: {err}"
            elif record.channel_id in connections:
                connection = connections[record.channel_id]
                writer.write(connection, record.log_time, record.data)
                report.messages[connection.topic] += 1
            elif record.channel_id not in refused:       # those are named in `skipped`
                report.orphans += 1


def repair_bag(bag: str | Path) -> RepairReport:
    """Rebuild the MCAP bag directory `bag` from the complete records of its `.mcap` file.

    A bag rosbags already reads is left as it is (status "valid"). Otherwise the new
    `<name>.mcap` and `metadata.yaml` replace the old ones, which are kept as
    `<name>.mcap.broken` (and `metadata.yaml.broken`). ConfigError for a missing directory;
    BagError when it has no (or several) .mcap files, the file is not MCAP or holds no
    recoverable topic (schema and channel), or `<name>.mcap.broken` exists already.
    """
    bag = Path(bag)
    mcap = find_mcap(bag)
    if bag_is_valid(bag):
        return RepairReport(bag, "valid", mcap, stopped="footer", messages=_counts(bag))
    kept = mcap.with_name(mcap.name + BROKEN_SUFFIX)
    if kept.exists():
        raise BagError(f"{kept} exists already (an earlier repair?); move it away first")
    report = RepairReport(bag, "repaired", mcap, kept=kept)
    tmp = bag / _TMP_DIR
    shutil.rmtree(tmp, ignore_errors=True)               # left by an interrupted repair
    tmp.mkdir()
    try:
        # The Writer names the file after its directory: <tmp>/<stem>/<stem>.mcap.
        out_dir = tmp / mcap.stem
        _rebuild(mcap, out_dir, report)
        if not report.messages:
            raise BagError(f"{mcap} holds no recoverable topic (schema and channel records) "
                           f"({report.stopped}{_skipped_text(report)}); nothing to repair from")
        for name in (f"{mcap.stem}.mcap", "metadata.yaml"):
            with open(out_dir / name, "rb") as written:
                os.fsync(written.fileno())
        os.replace(mcap, kept)
        metadata = bag / "metadata.yaml"
        if metadata.exists():
            os.replace(metadata, metadata.with_name(metadata.name + BROKEN_SUFFIX))
        os.replace(out_dir / f"{mcap.stem}.mcap", mcap)
        os.replace(out_dir / "metadata.yaml", metadata)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _skipped_text(report: RepairReport) -> str:
    return "".join(f"; {topic} not recovered: {why}" for topic, why in report.skipped.items())


def _counts(bag: Path) -> dict[str, int]:
    """Messages per topic of a valid bag, from its metadata."""
    with Reader(bag) as reader:
        counts: dict[str, int] = {}
        for connection in reader.connections:
            counts[connection.topic] = counts.get(connection.topic, 0) + connection.msgcount
        return counts
