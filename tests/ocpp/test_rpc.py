"""OCPP-J framing (secc.ocpp.rpc) over an in-memory transport: answers to every frame type."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from secc.ocpp.rpc import CallError, OcppError, RpcEndpoint


class Pipe:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.inbox: asyncio.Queue[str | bytes] = asyncio.Queue()

    async def send(self, message: str) -> None:
        self.sent.append(json.loads(message))

    async def recv(self) -> str | bytes:
        return await self.inbox.get()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_callresult_failing_its_schema_fails_the_call_and_gets_callresulterror() -> None:
    async def main() -> None:
        pipe = Pipe()
        rpc = RpcEndpoint(pipe, "ocpp2.1", {}, response_timeout_s=5)
        call = asyncio.create_task(rpc.call("Heartbeat", {}))
        await _settle()
        message_id = pipe.sent[0][1]
        await rpc.receive(json.dumps([3, message_id, {"currentTime": 5}]))
        with pytest.raises(CallError) as e:
            await call
        assert e.value.code == "TypeConstraintViolation"
        await _settle()
        assert pipe.sent[1][:3] == [5, message_id, "TypeConstraintViolation"]

    run(main())


def test_callerror_answer_and_our_own_invalid_request() -> None:
    async def main() -> None:
        pipe = Pipe()
        rpc = RpcEndpoint(pipe, "ocpp2.1", {}, response_timeout_s=5)
        call = asyncio.create_task(rpc.call("Heartbeat", {}))
        await _settle()
        await rpc.receive(json.dumps([4, pipe.sent[0][1], "InternalError", "boom", {}]))
        with pytest.raises(CallError, match="InternalError: boom"):
            await call
        from ocpp.exceptions import OCPPError

        with pytest.raises(OCPPError):  # never sent: a station bug must not reach the CSMS
            await rpc.call("StatusNotification", {"evseId": 1})
        assert len(pipe.sent) == 1

    run(main())


def test_handlers_errors_and_deferred_follow_ups_in_order() -> None:
    async def main() -> None:
        pipe = Pipe()
        order: list[str] = []

        async def get_variables(p: dict[str, Any]) -> dict[str, Any]:
            async def later() -> None:
                order.append("follow-up")

            rpc.defer(later)
            order.append("handler")
            return {"getVariableResult": [{"attributeStatus": "UnknownComponent", "component": {"name": "X"},
                                           "variable": {"name": "Y"}}]}

        async def reset(p: dict[str, Any]) -> dict[str, Any]:
            raise OcppError("SecurityError", "not now")

        async def unlock(p: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError("bug")

        rpc = RpcEndpoint(pipe, "ocpp2.1", {"GetVariables": get_variables, "Reset": reset,
                                            "UnlockConnector": unlock})
        frames = [
            [2, "a", "GetVariables", {"getVariableData": [{"component": {"name": "X"}, "variable": {"name": "Y"}}]}],
            [2, "b", "Reset", {"type": "Immediate"}],
            [2, "c", "UnlockConnector", {"evseId": 1, "connectorId": 1}],
            [2, "d", "../../etc", {}],
            [2, "e", "Reset", {"type": "Sometimes"}],
        ]
        for frame in frames:
            await rpc.receive(json.dumps(frame))
        await rpc.receive(b"\x00binary")
        await rpc.receive("[2, 5]")
        await _settle()
        answers = {f[1]: f[2] if f[0] == 4 else "ok" for f in pipe.sent}
        assert answers == {"a": "ok", "b": "SecurityError", "c": "InternalError", "d": "NotImplemented",
                           "e": "FormatViolation", "-1": "RpcFrameworkError"}
        assert order == ["handler", "follow-up"]

    run(main())
