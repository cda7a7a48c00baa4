"""The embedded broker hands a consumer whole messages only, even while a producer is writing.

kombu's own transport lost that race in a demo run (the worker read an empty file and
stopped); it is rare in one process, so besides the threaded check the test pins the
mechanism: the ``filesystem`` scheme resolves to ``radtrust.broker`` and a message being
written has a name no consumer picks up."""

from __future__ import annotations

import threading
from queue import Empty

import pytest
from kombu import Connection  # the settings import radtrust, whose celery app points the filesystem scheme here


def _channel(transport: str, folder):
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "store_processed": False}
    return Connection(transport=transport, transport_options=options).channel()


@pytest.mark.parametrize("transport", ["filesystem", "radtrust.broker:Transport"])
def test_the_filesystem_scheme_delivers_every_message_whole_while_a_consumer_polls(transport, tmp_path):
    producer, consumer = _channel(transport, tmp_path), _channel(transport, tmp_path)
    body = "x" * 200_000  # large enough that a write takes a while
    sent = 300
    received, errors = [], []

    def consume():
        while len(received) < sent and not errors:
            try:
                received.append(consumer._get("q"))
            except Empty:
                continue
            except Exception as exc:
                errors.append(exc)

    reader = threading.Thread(target=consume)
    reader.start()
    for i in range(sent):
        producer._put("q", {"i": i, "body": body})
    reader.join(timeout=60)
    assert not errors and not reader.is_alive()
    assert sorted(m["i"] for m in received) == list(range(sent)) and all(m["body"] == body for m in received)
    assert type(producer.connection).__module__ == "radtrust.broker"


def test_a_message_being_written_is_invisible_to_consumers(tmp_path):
    producer = _channel("filesystem", tmp_path)
    (tmp_path / ".1_abc.q.msg.partial").write_bytes(b"")  # what a producer interrupted mid-write leaves
    with pytest.raises(Empty):
        producer._get("q")
    producer._put("q", {"i": 1})
    assert producer._get("q") == {"i": 1}
    assert [p.name for p in tmp_path.iterdir()] == [".1_abc.q.msg.partial"]
