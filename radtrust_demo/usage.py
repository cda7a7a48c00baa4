"""The usage logs of ``manage.py demo``: each deployment's installation gets its logger account and
sends twelve weeks of inference events, a batch a week, through what the API calls
(the token's account, ``logged_deployment``, then ``usage_batch_ingest``), so that the monitoring
page and the usage-logs page show real weekly figures. At City General the clinicians override the
model more often from the week its disagreement rises, as the feedback stream has it. Reuses what an
earlier demo sent."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.utils import timezone

from compliance.models import UsageBatch
from compliance.usage_logs import UsageSummary, logged_deployment, usage_batch_ingest, usage_logger_issue, usage_summary
from core.tokens import api_token_check
from registry.models import Deployment

WEEKS = 12
EVENTS_A_WEEK = 150
# site code -> (override rate in the first eight weeks, in the last four)
OVERRIDES = {"st-anna": (0.06, 0.06), "city-general": (0.06, 0.2)}
FLAGS = (["out_of_envelope"], ["unsupported_device"], ["low_quality"], ["artefact"])


def _week_events(deployment: Deployment, week: int, override: float, rng: np.random.Generator) -> list[dict]:
    start = timezone.now() - timedelta(weeks=WEEKS - week)
    events = []
    for _ in range(EVENTS_A_WEEK):
        flagged = rng.random() < 0.04
        events.append(
            {
                "case_key": f"{rng.integers(16**12):012x}",
                "occurred_at": (start + timedelta(seconds=float(rng.uniform(0, 7 * 24 * 3600)))).isoformat(),
                "version": deployment.version_id,
                "outputs": {"nodule": round(float(rng.uniform(0.02, 0.98)), 3)},
                "uncertainty": round(float(rng.uniform(0.02, 0.2)), 3),
                "overridden": bool(rng.random() < override),
                "quality_flags": FLAGS[int(rng.integers(len(FLAGS)))] if flagged else [],
            }
        )
    return events


def usage_demo(*, deployments: dict[str, Deployment], out=print) -> dict[str, UsageSummary]:
    """Send each deployment's twelve weekly batches unless an earlier demo did; the summaries the pages show."""
    rng = np.random.default_rng(12)
    for code, deployment in deployments.items():
        if UsageBatch.objects.filter(deployment=deployment).exists():
            continue
        key = usage_logger_issue(deployment=deployment).key  # what the installation is configured with
        account = api_token_check(key=key).token.user  # as the API authenticates it ...
        logging = logged_deployment(account, named=deployment.pk)  # ... and resolves the deployment it logs
        before, after = OVERRIDES.get(code, (0.06, 0.06))
        out(f"Usage logs: the installation at {code} sends {WEEKS} weekly batches of {EVENTS_A_WEEK} inference events ...")
        for week in range(WEEKS):
            events = _week_events(deployment, week, before if week < WEEKS - 4 else after, rng)
            usage_batch_ingest(logging=logging, batch_id=f"demo-week-{week + 1}", events=events)
    return {code: usage_summary(deployment) for code, deployment in deployments.items()}


def usage_lines(summaries: dict[str, UsageSummary], deployments: dict[str, Deployment]) -> list[str]:
    """A line per deployment for the demo's summary: volume, override rate first and last four weeks, envelope."""
    lines = []
    for code, summary in summaries.items():
        weeks = summary.weeks
        n = sum(w.events for w in weeks)
        early, late = weeks[:-4], weeks[-4:]
        rate = [sum(w.overridden for w in part) / max(1, sum(w.events for w in part)) for part in (early, late)]
        outside = sum(w.out_of_envelope for w in weeks)
        lines.append(
            f"  {code:<13} {n:,} inferences logged over {len(weeks)} weeks; overridden {rate[0]:.0%} before, {rate[1]:.0%} in the last four weeks; "
            f"{outside} inputs outside the envelope; retention {summary.retention_days} days   /monitoring/{deployments[code].pk}/  /usage-logs/"
        )
    return lines
