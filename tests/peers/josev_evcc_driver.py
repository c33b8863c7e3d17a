#!/usr/bin/env python3
"""Runs INSIDE the Josev venv (.peers/josev/venv): Josev's own EVCC (iso15118==0.31.2) as the EV under
our control, ending with one line `RESULT {json}` and an exit status. Started by tests/peers/josev_evcc.py.

Josev's protocol code is not changed. Around it this driver adds what a test needs (facts from reading
Josev 0.31.2 and the shared bench notes, peers.md section 3):
* an end: stock Josev waits forever after a failed session or unanswered SDP; we end on its
  StopNotification, on an SDP failure or at --timeout;
* the control mode: stock Josev takes the SECC's first parameter set; --control-mode picks one;
* reproducibility: the simulator answers ScheduleExchange with EVProcessing=Ongoing on a coin flip;
  --seed seeds it, --ev-processing finished disables it;
* --ev-voltage: EVPresent/TargetVoltage (stock: 20 kV junk);
* the SAP offer in the given order (stock Josev builds it from a set()).

Exit: 0 SessionStopRes after >= 1 ChargeLoop, 1 session failed, 2 no SECC (SDP/connect), 3 timeout,
4 setup error, 5 stopped without charging.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from typing import Any

CODES = {"ok": 0, "failed": 1, "no_secc": 2, "timeout": 3, "setup": 4, "no_charge": 5}
NAMESPACE_PROTOCOL = {"DC": "ISO_15118_20_DC", "DC_BPT": "ISO_15118_20_DC",
                      "AC": "ISO_15118_20_AC", "AC_BPT": "ISO_15118_20_AC"}
CHARGE_LOOP_REQUESTS = ("DC_ChargeLoopReq", "AC_ChargeLoopReq")
# Josev's names for the control-mode branch of an ACChargeLoopRes (iso15118_20/ac.py)
LOOP_RES_BRANCHES = ("scheduled_params", "dynamic_params", "bpt_scheduled_params", "bpt_dynamic_params")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iface", required=True)
    parser.add_argument("--service", choices=sorted(NAMESPACE_PROTOCOL), default="DC")
    parser.add_argument("--control-mode", choices=["auto", "scheduled", "dynamic"], default="auto")
    parser.add_argument("--tls", choices=["off", "on", "enforce"], default="off")
    parser.add_argument("--pki", default="", help="PKI_PATH with iso15118_2/ (TLS only)")
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--ev-processing", choices=["random", "finished", "ongoing-once"], default="finished",
                        help="Josev's coin flip after ScheduleExchange; ongoing-once: first PowerDelivery Ongoing")
    parser.add_argument("--ev-voltage", type=int, default=None)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args()


def main() -> int:
    args = arguments()
    os.environ.update(NETWORK_INTERFACE=args.iface, LOG_LEVEL=args.log_level, MESSAGE_LOG_JSON="true",
                      MESSAGE_LOG_EXI="false", ENABLE_TLS_1_3="true" if args.tls != "off" else "false")
    if args.pki:
        os.environ["PKI_PATH"] = args.pki.rstrip("/") + "/"
    if args.seed is not None:
        random.seed(args.seed)
    started = time.monotonic()
    report: dict[str, Any] = {"result": None, "reason": None, "service": args.service,
                              "control_mode_requested": args.control_mode, "tls": args.tls, "control_mode": None,
                              "parameter_set_id": None, "sent": [], "received": [], "charge_loops": 0,
                              "loop_res_modes": [], "target_active_power_w": []}

    def finish(result: str, reason: str) -> int:
        report.update(result=result, reason=reason, exit=CODES[result], seconds=round(time.monotonic() - started, 3))
        print("RESULT " + json.dumps(report), flush=True)
        return CODES[result]

    try:
        from iso15118.evcc import EVCCHandler  # noqa: F401  (sets up Josev's logging)
        from iso15118.evcc.comm_session_handler import CommunicationSessionHandler
        from iso15118.evcc.controller.simulator import SimEVController
        from iso15118.evcc.evcc_config import EVCCConfig
        from iso15118.shared.exceptions import SDPFailedError
        from iso15118.shared.exi_codec import EXI
        from iso15118.shared.exificient_exi_codec import ExificientEXICodec
        from iso15118.shared.messages.enums import ControlMode, ParameterName, Protocol
        from iso15118.shared.messages.iso15118_20.common_messages import SelectedEnergyService
        from iso15118.shared.messages.iso15118_20.common_types import RationalNumber
        from iso15118.shared.network import validate_nic
        from iso15118.shared.notifications import ReceiveTimeoutNotification, StopNotification, UDPPacketNotification
        from iso15118.shared.settings import load_shared_settings
        from iso15118.shared.utils import cancel_task
    except Exception as exc:
        return finish("setup", f"Josev import failed: {exc!r}")

    try:
        validate_nic(args.iface)
        load_shared_settings()
        protocol = NAMESPACE_PROTOCOL[args.service]
        config = EVCCConfig(supportedProtocols=[protocol], supportedEnergyServices=[args.service],
                            isCertInstallNeeded=False, useTls=args.tls != "off", enforceTls=args.tls == "enforce",
                            chargeLoopCycle=args.cycles, chargeLoopDelay=0, sdpRetryCycles=1)
        config.load_raw_values()
        config.supported_protocols = [Protocol[protocol]]
    except Exception as exc:
        return finish("setup", f"{type(exc).__name__}: {exc}")

    wanted_mode = {"scheduled": ControlMode.SCHEDULED, "dynamic": ControlMode.DYNAMIC}.get(args.control_mode)
    mode_names = {int(ControlMode.SCHEDULED): "scheduled", int(ControlMode.DYNAMIC): "dynamic"}

    class Ev(SimEVController):  # type: ignore[misc]
        async def get_present_voltage(self) -> Any:
            if args.ev_voltage is None:
                return await super().get_present_voltage()
            return RationalNumber(exponent=0, value=args.ev_voltage)

        async def get_target_voltage(self) -> Any:
            if args.ev_voltage is None:
                return await super().get_target_voltage()
            return RationalNumber(exponent=0, value=args.ev_voltage)

        async def select_energy_service_v20(self, services: Any) -> Any:
            selected = await super().select_energy_service_v20(services)
            if wanted_mode is not None:
                for parameter_set in services[0].parameter_sets:
                    if any(p.name == ParameterName.CONTROL_MODE and p.int_value == wanted_mode
                           for p in parameter_set.parameters):
                        selected = SelectedEnergyService(service=services[0].service, is_free=services[0].is_free,
                                                         parameter_set=parameter_set)
                        break
            report["parameter_set_id"] = selected.parameter_set.id
            for p in selected.parameter_set.parameters:
                if p.name == ParameterName.CONTROL_MODE:
                    report["control_mode"] = mode_names.get(int(p.int_value), p.int_value)
            return selected

        ongoing_sent = False

        def _forced_ongoing(self) -> bool:
            # Josev's own "not ready yet" answer, once, instead of on its coin flip: for the first PowerDelivery
            # (DC: the one after PreCharge, an earlier call after ScheduleExchange is consumed without a
            # message; AC: the one right after ScheduleExchange)
            first_power_delivery = "DCPreChargeRes" in report["received"] or args.service.startswith("AC")
            if args.ev_processing == "ongoing-once" and first_power_delivery and not Ev.ongoing_sent:
                Ev.ongoing_sent = True
                return True
            return False

        async def process_scheduled_se_params(self, params: Any, pause: bool) -> Any:
            if self._forced_ongoing():
                return None, (await super().process_scheduled_se_params(params, pause))[1]
            result = await super().process_scheduled_se_params(params, pause)
            while args.ev_processing != "random" and result[0] is None:
                result = await super().process_scheduled_se_params(params, pause)
            return result

        async def process_dynamic_se_params(self, params: Any, pause: bool) -> Any:
            if self._forced_ongoing():
                return None, (await super().process_dynamic_se_params(params, pause))[1]
            result = await super().process_dynamic_se_params(params, pause)
            while args.ev_processing != "random" and result[0] is None:
                result = await super().process_dynamic_se_params(params, pause)
            return result

    outcome: dict[str, str] = {}
    done = asyncio.Event()

    def end(result: str, reason: str) -> None:
        outcome.setdefault("result", result)
        outcome.setdefault("reason", reason)
        done.set()

    class Handler(CommunicationSessionHandler):  # type: ignore[misc]
        async def start_comm_session(self, host: Any, port: Any, is_tls: bool) -> None:
            await super().start_comm_session(host, port, is_tls)
            comm_session = self.comm_session[0]
            if comm_session is None:
                end("no_secc", f"could not connect to [{host}]:{port} ({'TLS' if is_tls else 'TCP'})")
                return
            report["tls_used"] = is_tls
            report["sent"].append("supportedAppProtocolReq")
            original_send = comm_session.send

            async def send(message: Any) -> None:
                name = str(comm_session.current_state.message)
                report["sent"].append(name)
                if name in CHARGE_LOOP_REQUESTS:
                    report["charge_loops"] += 1
                await original_send(message)

            comm_session.send = send

        async def process_incoming_udp_packet(self, message: Any) -> None:
            before = self.comm_session
            await super().process_incoming_udp_packet(message)
            if self.comm_session is before and self.comm_session[0] is None and not done.is_set():
                end("no_secc", "SDP response rejected")

        async def get_from_rcv_queue(self, queue: Any) -> None:
            while True:
                notification = await queue.get()
                try:
                    if isinstance(notification, UDPPacketNotification):
                        await self.process_incoming_udp_packet(notification)
                    elif isinstance(notification, ReceiveTimeoutNotification):
                        try:
                            await self.restart_sdp(False)
                        except SDPFailedError as exc:
                            end("no_secc", f"SDP failed: {exc}")
                            return
                    elif isinstance(notification, StopNotification):
                        if self.comm_session[0] is not None:
                            report["session_id"] = str(self.comm_session[0].session_id).lower()
                        if self.comm_session[1] is not None:
                            await cancel_task(self.comm_session[1])
                        if not notification.successful:
                            end("failed", str(notification.reason))
                        else:
                            end("ok" if report["charge_loops"] else "no_charge", str(notification.reason))
                        return
                finally:
                    queue.task_done()

    def note_charge_loop_res(message: Any) -> None:
        """What the SECC answered in the AC loop: the control-mode branch, and the EVSE's target active power
        (total over the phases, W) where it sent one."""
        if type(message).__name__ != "ACChargeLoopRes":
            return
        for branch in LOOP_RES_BRANCHES:
            params = getattr(message, branch, None)
            if params is None:
                continue
            if branch not in report["loop_res_modes"]:
                report["loop_res_modes"].append(branch)
            phases = [getattr(params, f"evse_target_active_power{suffix}", None) for suffix in ("", "_l2", "_l3")]
            if phases[0] is not None:
                report["target_active_power_w"].append(
                    sum(p.value * 10 ** p.exponent for p in phases if p is not None))

    async def run() -> None:
        exi = EXI()
        original_from_exi = exi.from_exi

        def from_exi(data: Any, namespace: Any) -> Any:
            message = original_from_exi(data, namespace)
            report["received"].append(type(message).__name__)
            note_charge_loop_res(message)
            return message

        exi.from_exi = from_exi
        handler = Handler(config, args.iface, ExificientEXICodec(), Ev(config))
        task = asyncio.create_task(handler.start_session_handler())
        try:
            await asyncio.wait_for(done.wait(), args.timeout)
        except TimeoutError:
            end("timeout", f"no outcome within {args.timeout} s")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        end("failed", "interrupted")
    return finish(outcome.get("result", "failed"), outcome.get("reason", "?"))


if __name__ == "__main__":
    sys.exit(main())
