"""The federated part of ``manage.py demo`` (issue 8): three hospitals validate the nodule model on
their own generated radiographs with their own site agents, and the server pools what they send.

Each piece is a separate process on loopback, as at a real site: the server
(``manage.py runserver`` on the demo's database) and one ``python -m radtrust_agent --once``
per hospital, with its own data root (its own detector and prevalence) and its own token. The
agents send aggregates only; the demo then pools them (``study_pool``) and writes the AUROC
forest plot under ``VAR_DIR/federated/``.

Running the demo again: a study of the version that every site reported is shown again and
nothing is run; an unfinished one (an interrupted demo) is finished by the agents, which resume
where they stopped; otherwise a new study is opened. The site data are generated once.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from core.audit import audit_context
from radtrust_demo.data import PREVALENCE, Population, generate_dataset
from radtrust_demo.runs import LABEL
from registry.models import Institution, ModelVersion, User
from validation.choices import FederatedJobStatus, StudyStatus
from validation.federated import META_METRICS, study_chart, study_close, study_create, study_pool
from validation.models import FederatedStudy

STUDY_NAME = "Nodule detection at three hospitals (federated demo)"
SPEC = {
    "labels": [LABEL],
    "attributes": ["sex", "age_band", "scanner_manufacturer"],
    "intersections": [["sex", "age_band"]],
    "n_resamples": 1000,
    "seed": 0,
}
FOREST = f"study-forest-auroc-{LABEL}"
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class SiteData:
    """A hospital's generated data: which detectors (``Population`` site weights), its prevalence, its size."""

    population: Population
    prevalence: float
    images: int
    seed: int


SITES = {
    "st-anna": SiteData(Population(site_weights=(1.0, 0.0, 0.0), old_fraction=0.2), prevalence=0.30, images=500, seed=31),
    "city-general": SiteData(Population(site_weights=(0.0, 1.0, 0.0), old_fraction=0.3), prevalence=0.15, images=600, seed=32),
    "north-clinic": SiteData(Population(site_weights=(0.0, 0.2, 0.8), old_fraction=0.5), prevalence=0.45, images=450, seed=33),
}


def _folder() -> Path:
    return Path(settings.VAR_DIR) / "federated"


def _thin_to_prevalence(root: Path, prevalence: float, seed: int) -> None:
    """Keep a random share of the positive or negative patients (all their images) so that about
    ``prevalence`` of them are positive; the generator draws every site at ``PREVALENCE``."""
    manifest = root / "manifest.csv"
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    if prevalence < PREVALENCE:
        keep = {"1": prevalence * (1 - PREVALENCE) / (PREVALENCE * (1 - prevalence)), "0": 1.0}
    else:
        keep = {"1": 1.0, "0": PREVALENCE * (1 - prevalence) / ((1 - PREVALENCE) * prevalence)}
    rng = np.random.default_rng(seed)
    patients = {row["patient_id"]: row[LABEL] for row in rows}  # the label is per patient
    kept = {patient: rng.random() < keep[label] for patient, label in patients.items()}
    for row in rows:
        if not kept[row["patient_id"]]:
            (root / row["image_path"]).unlink()
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(row for row in rows if kept[row["patient_id"]])


def site_data_root(code: str, *, out=print) -> Path:
    """The hospital's data root (manifest and DICOM files), generated once; written aside and moved
    into place, so an interrupted demo leaves no half-written site."""
    root = _folder() / "sites" / code
    if (root / "manifest.csv").exists():
        return root
    site = SITES[code]
    partial = root.with_name(f".{code}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    out(f"Generating {site.images} DICOM radiographs for {code}'s own data root (prevalence about {site.prevalence:.0%}) ...")
    generate_dataset(partial, n_images=site.images, seed=site.seed, label=LABEL, population=site.population)
    _thin_to_prevalence(partial, site.prevalence, site.seed)
    os.replace(partial, root)
    return root


def _study(version: ModelVersion, hospitals: list[Institution], engineer: User) -> tuple[FederatedStudy, bool]:
    """The demo's study of ``version`` to work on, and whether every site reported it already.

    The newest demo study is reused when it is complete, or open and still able to finish (an
    interrupted demo); one that cannot finish (a site failed, the deadline is near) is closed
    and a new study opened.
    """
    latest = FederatedStudy.objects.filter(version=version, name=STUDY_NAME).order_by("-created_at", "-pk").first()
    with audit_context(user=engineer):
        if latest is not None:
            statuses = set(latest.jobs.values_list("status", flat=True))
            if statuses == {FederatedJobStatus.REPORTED}:
                return latest, True
            if latest.status == StudyStatus.OPEN:
                if FederatedJobStatus.FAILED not in statuses and latest.deadline > timezone.now() + timedelta(hours=1):
                    return latest, False
                study_close(actor=engineer, study=latest)
        study = study_create(
            actor=engineer, version=version, name=STUDY_NAME, spec=SPEC, deadline=timezone.now() + timedelta(days=7), institutions=hospitals
        )
    return study, False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _token(code: str) -> str:
    out = io.StringIO()
    call_command("agent_token", institution=code, stdout=out)
    return out.getvalue().strip()


def _answers(url: str, token: str) -> bool:
    request = urllib.request.Request(f"{url}/api/federated/jobs/", headers={"Authorization": f"Token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def _server(token: str, log: Path) -> Iterator[str]:
    """``manage.py runserver`` on a free loopback port with the demo's environment (so its database
    and media); yields its URL once it answers the agents' API, and stops it afterwards."""
    url = f"http://127.0.0.1:{_free_port()}"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", url.removeprefix("http://"), "--noreload"],
            cwd=settings.BASE_DIR,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not _answers(url, token):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"The server did not start on {url}; see {log}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _agents(url: str, study: FederatedStudy, roots: dict[str, Path], tokens: dict[str, str], timeout: float) -> dict[str, int | None]:
    """One ``python -m radtrust_agent --once`` per hospital, all at once; each one's exit status (None: stopped at the timeout).

    The agents' state is kept per study (not in the data root), so a demo database made afresh
    never meets an agent that remembers the job ids of an earlier one.
    """
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}  # an agent has no Django
    env.update(PYTHONPATH=str(settings.BASE_DIR), PYTHONUNBUFFERED="1")
    processes = {}
    for code, root in roots.items():
        state = _folder() / "agents" / code / f"study-{study.pk}-{study.created_at:%Y%m%dT%H%M%S}"
        command = [
            sys.executable,
            "-m",
            "radtrust_agent",
            "--server",
            url,
            "--token",
            tokens[code],
            "--data-root",
            str(root),
            "--state-dir",
            str(state),
            "--once",
            "--auto-approve",
            f"{code} data owner",
            "--retry-for",
            "60",
        ]
        with open(_folder() / f"agent-{code}.log", "wb") as log:
            processes[code] = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    codes: dict[str, int | None] = {}
    for code, process in processes.items():
        try:
            codes[code] = process.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=30)
            codes[code] = None
    return codes


def federated_demo(*, version: ModelVersion, engineer: User, hospitals: list[Institution], out=print, timeout: float = 600.0) -> dict[str, Any]:
    """Run (or reuse) the demo's federated study of ``version`` at ``hospitals``; what ``federated_lines`` prints."""
    started = time.monotonic()
    _folder().mkdir(parents=True, exist_ok=True)
    roots = {h.code: site_data_root(h.code, out=out) for h in hospitals}
    study, complete = _study(version, hospitals, engineer)
    agents: dict[str, int | None] = {}
    if complete:
        out(f"Federated study {study.pk} was reported by every site in an earlier demo; showing it again.")
    else:
        tokens = {code: _token(code) for code in roots}
        with _server(next(iter(tokens.values())), _folder() / "server.log") as url:
            out(
                f"Server on {url} (log {_folder() / 'server.log'}); {len(roots)} site agents evaluate study {study.pk} "
                f"on their own data (logs {_folder()}/agent-<site>.log) ..."
            )
            agents = _agents(url, study, roots, tokens, timeout)
    pool = study_pool(study)
    forest = None
    if svg := study_chart(study, FOREST):  # the plot as the pooling stored it
        forest = _folder() / f"forest-auroc-{LABEL}.svg"
        forest.write_text(svg, encoding="utf-8")
    return {"study": study, "pool": pool, "agents": agents, "roots": roots, "forest": forest, "seconds": time.monotonic() - started}


def _estimate(e: dict | None) -> str:
    if not e or e.get("value") is None:
        return "n/a"
    ci = f" [{e['ci_low']:.3f}, {e['ci_high']:.3f}]" if e.get("ci_low") is not None else ""
    return f"{e['value']:.3f}{ci}"


def federated_lines(result: dict[str, Any]) -> list[str]:
    """The pooled table (histogram pooling and random-effects meta-analysis per metric), each site's
    AUROC, the sites that did not report, and where the forest plot is."""
    pool, study = result["pool"], result["study"]
    lines = [
        f"  Study        {study.pk} '{study.name}': {study.version}, {pool['completeness']['reported']} of "
        f"{pool['completeness']['invited']} sites reported"
        + (f" ({result['seconds']:.0f} s, server and agents as separate processes)" if result["agents"] else " (in an earlier demo)")
    ]
    for code, root in result["roots"].items():
        status = result["agents"].get(code, "not run")
        lines.append(f"  Agent        {code:<13} data root {root}, exit status {'timed out' if status is None else status}")
    overall = (pool["pooled"] or {"strata": [{}]})["strata"][0].get("labels", {}).get(LABEL, {})
    lines.append(f"  {'metric':<12} {'pooled histograms [95% CI]':<27} {'random effects [95% CI]':<25} {'I²':>5} {'tau²':>8}  prediction interval")
    for metric in META_METRICS:
        meta = pool["meta_analysis"].get(LABEL, {}).get(metric, {})
        if meta.get("estimate") is None:
            effects = f"refused: {meta.get('refused_reason') or 'no report'}"
        else:
            prediction = "n/a" if meta.get("prediction_low") is None else f"[{meta['prediction_low']:.3f}, {meta['prediction_high']:.3f}]"
            effects = (
                f"{_estimate({'value': meta['estimate'], 'ci_low': meta['ci_low'], 'ci_high': meta['ci_high']}):<25} "
                f"{meta['i2']:>5.0%} {meta['tau2']:>8.3g}  {prediction}"
            )
        lines.append(f"  {metric:<12} {_estimate(overall.get(metric)):<27} {effects}")
    for row in pool["site_results"]:
        if row["suppressed"]:
            lines.append(f"  Site         {row['site']:<13} suppressed: {row['reason']}")
        else:
            lines.append(
                f"  Site         {row['site']:<13} AUROC {_estimate(row['auroc'])}, prevalence {row['prevalence']['value']:.2f}, "
                f"{row['n_patients']} patients, {row['n_cases']} images"
            )
    missing = ", ".join(f"{s['code']} ({s['outcome']}{', ' + s['error'] if s['error'] else ''})" for s in pool["sites"] if s["outcome"] != "reported")
    lines.append(f"  Not reported {missing or 'none'}")
    lines.append(f"  Forest plot  {result['forest'] or 'none (no site reported)'}")
    lines.append(f"  API          GET /api/federated-studies/{study.pk}/pooled/ and /api/federated-studies/{study.pk}/charts/{FOREST}.svg/")
    return lines
