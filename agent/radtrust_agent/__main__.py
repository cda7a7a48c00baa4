"""Command line of the site agent (see ``radtrust_agent``).

``run`` (the default) polls the server; ``approve`` is the data owner's release of a
payload waiting in the outbox; ``status`` lists the jobs this site's agent knows.
Exit status: 0 done, 1 refused (another agent holds the folder, nothing to approve),
2 bad arguments or the server refused the agent (its token), 75 the server stayed
unreachable (``--once``: try again later).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from radtrust_agent.client import Backoff, ServerClient, ServerRefused
from radtrust_agent.jobs import SiteAgent
from radtrust_agent.pacs import CREDENTIALS_ENV, PacsConfig
from radtrust_agent.state import AgentLocked, AgentState, JobStatus, job_key, payload_named

log = logging.getLogger("radtrust_agent")


def _folder(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is not a folder")
    return path.resolve()


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value} must be a positive number of seconds")
    return number


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=_folder, required=True, help="the site's data folder (manifests and images)")
    parser.add_argument("--state-dir", type=Path, help="where the agent keeps its state (default: DATA_ROOT/.radtrust-agent)")


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m radtrust_agent",
        description=(
            "Evaluate this site's federated validation jobs on local data and report only aggregates. "
            "Subcommands: 'approve' (release a payload waiting for review), 'status'."
        ),
    )
    _common(parser)
    parser.add_argument("--server", required=True, help="the RadTrust server's URL")
    parser.add_argument("--token", help="the site's API token (or RADTRUST_AGENT_TOKEN, or --token-file)")
    parser.add_argument("--token-file", type=Path, help="a file holding the site's API token")
    parser.add_argument("--once", action="store_true", help="process what is there now and exit (cron, tests)")
    parser.add_argument("--poll-seconds", type=_positive, default=30.0, help="seconds between polls (default 30)")
    parser.add_argument("--auto-approve", metavar="NAME", help="release payloads without review, recorded as approved by NAME")
    parser.add_argument("--retry-cap", type=_positive, default=30.0, help="longest wait between retries, seconds (default 30)")
    parser.add_argument(
        "--retry-for", type=_positive, default=300.0, help="seconds one call is retried before the cycle gives up until the next poll (default 300)"
    )
    parser.add_argument("--timeout", type=_positive, default=30.0, help="socket timeout per request to the server or the PACS, seconds (default 30)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when ONNX Runtime offers CUDA")
    parser.add_argument("--batch-size", type=int, default=32, help="images per inference batch (default 32)")
    pacs = parser.add_argument_group(
        "the site's PACS",
        f"for studies that name a DICOMweb query; credentials from {CREDENTIALS_ENV}_USER and "
        f"{CREDENTIALS_ENV}_PASSWORD (or {CREDENTIALS_ENV}_PASSWORD_FILE), never from the server",
    )
    pacs.add_argument("--pacs-url", default=os.environ.get(f"{CREDENTIALS_ENV}_URL", ""), help=f"the PACS's DICOMweb root (or {CREDENTIALS_ENV}_URL)")
    pacs.add_argument("--pacs-max-instances", type=int, default=400_000, help="refuse a query matching more instances (default 400000)")
    pacs.add_argument("--pacs-workers", type=int, default=4, help="instances retrieved at a time (default 4)")
    return parser


def _pacs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> PacsConfig | None:
    if not args.pacs_url:
        return None
    if args.pacs_max_instances < 1 or args.pacs_workers < 1:
        parser.error("--pacs-max-instances and --pacs-workers must be at least 1")
    try:
        return PacsConfig.from_environment(args.pacs_url, max_instances=args.pacs_max_instances, workers=args.pacs_workers, timeout=args.timeout)
    except ValueError as exc:
        parser.error(str(exc))


def _token(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    if args.token_file:
        token = args.token_file.read_text(encoding="utf-8").strip()
    else:
        token = args.token or os.environ.get("RADTRUST_AGENT_TOKEN", "")
    if not token:
        parser.error("give the site's token: --token, --token-file or RADTRUST_AGENT_TOKEN")
    return token


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the agent like Ctrl-C: every finished step is already saved


def run(argv: list[str]) -> int:
    parser = _run_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _stop)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    try:
        client = ServerClient(
            args.server, _token(args, parser), timeout=args.timeout, backoff=Backoff(cap=args.retry_cap, give_up_after=args.retry_for)
        )
    except ValueError as exc:
        parser.error(str(exc))
    pacs = _pacs(args, parser)
    state = AgentState.for_data_root(args.data_root, args.state_dir)
    try:
        state.lock()
    except AgentLocked as exc:
        log.error("%s", exc)
        return 1
    agent = SiteAgent(
        client=client,
        data_root=args.data_root,
        state=state,
        auto_approve=args.auto_approve,
        prefer_gpu=not args.cpu,
        batch_size=args.batch_size,
        pacs=pacs,
    )
    log.info(
        "agent started: server %s, data root %s, state %s%s%s",
        client.server,
        args.data_root,
        state.folder,
        f", PACS {pacs.url}" if pacs else "",
        f", auto-approval as {args.auto_approve}" if args.auto_approve else "",
    )
    try:
        return agent.run(once=args.once, poll_seconds=args.poll_seconds)
    except ServerRefused as exc:
        log.error("the server refused the agent (%s); check the token and that it belongs to this site", exc)
        return 2
    except KeyboardInterrupt:
        log.info("agent stopped; unfinished jobs resume at the next start")
        return 0


def approve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m radtrust_agent approve", description="Release the payload waiting in the outbox for a job, as its reviewer."
    )
    _common(parser)
    parser.add_argument("--job", required=True, help="the job's id")
    parser.add_argument("--by", required=True, help="who approves (the site's data owner)")
    args = parser.parse_args(argv)
    try:
        key = job_key(args.job)
    except ValueError as exc:
        parser.error(str(exc))
    state = AgentState.for_data_root(args.data_root, args.state_dir)
    record = state.jobs.get(key)
    if record is None or record.status != JobStatus.AWAITING_APPROVAL:
        where = f"it is {record.status}" if record else "the agent does not know it"
        print(f"job {key} has no payload waiting for approval: {where}", file=sys.stderr)
        return 1
    path = state.payload_path(key)
    data = path.read_bytes()
    if not payload_named(data, record.payload_sha256):
        print(f"{path} changed after the agent wrote it; it cannot be approved", file=sys.stderr)
        return 1
    if not args.by.strip():
        parser.error("--by must name who approves")
    payload = json.loads(data)
    strata = payload.get("strata", [])
    approval = state.approval_write(key, by=args.by.strip())
    print(
        f"job {key}: approved by {approval['approved_by']} at {approval['approved_at']}\n"
        f"  payload {path} ({len(data)} bytes, sha256 {approval['payload_sha256']})\n"
        f"  labels {', '.join(payload.get('labels', {}))}; {len(strata)} strata, "
        f"{sum(bool(s.get('suppressed')) for s in strata)} suppressed\n"
        "  the running agent sends it at its next poll"
    )
    return 0


def status(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m radtrust_agent status", description="The jobs this site's agent knows.")
    _common(parser)
    parser.add_argument("--json", action="store_true", help="print the job records as JSON")
    args = parser.parse_args(argv)
    state = AgentState.for_data_root(args.data_root, args.state_dir)
    if args.json:
        print(json.dumps({key: record.to_dict() for key, record in state.jobs.items()}, indent=1, sort_keys=True))
        return 0
    if not state.jobs:
        print("no jobs yet")
    for key, record in sorted(state.jobs.items()):
        line = f"job {key}  study {record.job.get('study')}  {record.status}  updated {record.updated_at}"
        if record.status == JobStatus.AWAITING_APPROVAL:
            line += f"  review {state.payload_path(key)}"
        elif record.status == JobStatus.REPORTED:
            line += f"  approved by {record.approved_by}; server answered {record.server_answer}"
        elif record.status == JobStatus.FAILED:
            line += f"  {record.error}" + ("  (server not told yet)" if record.fail_pending else "")
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"approve": approve, "status": status}
    if argv and argv[0] in commands:
        return commands[argv[0]](argv[1:])
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
