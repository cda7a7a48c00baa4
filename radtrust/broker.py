"""The embedded ``filesystem://`` broker, with messages that appear whole.

kombu's filesystem transport creates a message file and then writes into it; a worker
polling the folder in between moves the empty file away, fails to decode it and stops
("Unrecoverable error: JSONDecodeError"). Here a message is written under a name no
consumer matches and renamed into place, which is atomic on one filesystem: a consumer
sees no file or a complete one. ``radtrust.celery`` points the ``filesystem`` scheme here.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.partial")  # never ends in ".<queue>.msg"
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
