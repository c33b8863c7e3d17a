"""A fake V2G handler for transport tests: answers each message, records what happened."""

from __future__ import annotations

from dataclasses import dataclass, field

from secc.transport import Close, CloseReason, Connection, Reply
from secc.v2gtp import V2GTPMessage


@dataclass
class EchoLog:
    connections: list[Connection] = field(default_factory=list)
    messages: list[V2GTPMessage] = field(default_factory=list)
    closed: list[CloseReason] = field(default_factory=list)


class EchoHandler:
    """b'bye' -> reply and close; b'quiet-close' -> Close(); b'boom' -> raises; b'silent' -> no reply."""

    def __init__(self, log: EchoLog, connection: Connection) -> None:
        self.log = log
        log.connections.append(connection)

    async def on_message(self, message: V2GTPMessage) -> Reply | Close | None:
        self.log.messages.append(message)
        if message.payload == b"boom":
            raise RuntimeError("handler bug")
        if message.payload == b"quiet-close":
            return Close()
        if message.payload == b"silent":
            return None
        return Reply(message.payload_type, b"ack:" + message.payload, close=message.payload == b"bye")

    def on_closed(self, reason: CloseReason) -> None:
        self.log.closed.append(reason)
