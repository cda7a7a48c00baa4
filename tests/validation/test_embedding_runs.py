"""Embedding evaluation through the server: a version whose output schema names its embedding
output, its run's data-efficiency section with a comparator version's run, its chart and its
place on the run page; the bad inputs answered with the field to fix."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from radtrust_demo.vit import EMBEDDING_OUTPUT, VIT_SMALL, export_vit
from validation import services
from validation.choices import RunFileKind

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore::FutureWarning")]
SCHEMA = {"class_names": ["pneumothorax"], "thresholds": {"pneumothorax": 0.5}, "activation": "sigmoid", "embedding_output": EMBEDDING_OUTPUT}
CONFIG = {"n_resamples": 20, "min_patients": 5, "analyses": ["data_efficiency", "drift"], "label_fractions": [0.25, 1.0], "label_repeats": 2}


@pytest.fixture(scope="module")
def vit_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("vit-runs")
    return {seed: export_vit(root / f"seed-{seed}", VIT_SMALL, seed=seed) for seed in (0, 1)}


def _register(run_setup, files, version: str, schema=SCHEMA):
    from registry.services import provenance_link, version_register

    handles = [open(p, "rb") for p in files]
    try:
        registered = version_register(
            actor=run_setup["engineer"],
            foundation_model=run_setup["model"],
            version=version,
            model_file=(files[0].name, handles[0]),
            data_files=[(p.name, h) for p, h in zip(files[1:], handles[1:])],
            output_schema=schema,
        )
    finally:
        for handle in handles:
            handle.close()
    provenance_link(actor=run_setup["engineer"], version=registered, dataset=run_setup["dataset"], role="external_validation")
    return registered


def _run(run_setup, version, **extra):
    run = services.run_create(actor=run_setup["engineer"], version=version, dataset=run_setup["dataset"], config=CONFIG, **extra)
    services.run_execute(run_id=run.pk, worker="w")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


def test_a_run_reports_data_efficiency_against_a_comparator_and_shows_it(run_setup, vit_files):
    encoder = _register(run_setup, vit_files[0], "2.0.0")
    other = _register(run_setup, vit_files[1], "2.1.0")
    first = _run(run_setup, other)
    run = _run(run_setup, encoder, comparator=first)
    section = run.results["data_efficiency"]
    assert section["embedding_output"] == EMBEDDING_OUTPUT and section["dimensions"] == VIT_SMALL.width
    assert section["comparator"]["run"] == first.pk and section["comparator"]["n_cases_paired"] == 60
    curve = section["labels"]["pneumothorax"]["logistic"]
    assert [p["fraction"] for p in curve["curve"]] == [0.25, 1.0] and len(curve["difference"]) == 2
    assert run.results["inference"]["forward_passes"] == 60  # scores and embeddings from one pass per image
    assert run.files.filter(kind=RunFileKind.CHART, name="charts/efficiency-pneumothorax.svg").exists()

    client = Client()
    client.force_login(run_setup["engineer"])
    page = client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert "Data efficiency of the embeddings" in page
    assert f"Comparator: run {first.pk}" in page
    section_html = page[page.index("Data efficiency of the embeddings") :]
    assert "AUROC, kNN probe" in section_html, section_html[:3000]
    assert "Data efficiency: pneumothorax" in section_html  # the chart's caption


def test_a_comparator_on_another_dataset_is_refused_with_the_field(run_setup, vit_files, write_dataset, api_client):
    from registry.models import Dataset
    from registry.services import record_create
    from tests.factories import DataUseGrantFactory

    encoder = _register(run_setup, vit_files[0], "2.0.0")
    elsewhere = record_create(
        model=Dataset,
        actor=run_setup["engineer"],
        fields={
            "name": "Other set",
            "institution": run_setup["dataset"].institution,
            "modality": "DX",
            "location": str(write_dataset("other", seed=4)),
        },
    )
    DataUseGrantFactory(dataset=elsewhere, grantee=run_setup["model"].provider)
    other_run = services.run_create(actor=run_setup["engineer"], version=encoder, dataset=elsewhere, config=CONFIG)
    body = {"version": encoder.pk, "dataset": run_setup["dataset"].pk, "config": CONFIG, "comparator": other_run.pk}
    response = api_client(run_setup["engineer"]).post("/api/validation-runs/", body, format="json")
    assert response.status_code == 400, response.content
    assert "evaluated another dataset" in json.dumps(response.json()["comparator"])


def test_an_embedding_output_that_is_not_a_name_is_refused(run_setup, vit_files):
    with pytest.raises(ValidationError, match="embedding_output"):
        _register(run_setup, vit_files[0], "2.0.0", schema={**SCHEMA, "embedding_output": 3})


def test_a_declared_embedding_output_the_graph_lacks_fails_the_run_with_the_reason(run_setup, vit_files):
    encoder = _register(run_setup, vit_files[0], "2.0.0", schema={**SCHEMA, "embedding_output": "features"})
    run = services.run_create(actor=run_setup["engineer"], version=encoder, dataset=run_setup["dataset"], config=CONFIG)
    services.run_execute(run_id=run.pk, worker="w")
    run.refresh_from_db()
    assert run.status == "failed" and run.error_reason == "output_schema_mismatch"
    assert "names embedding output 'features'" in run.error


@pytest.mark.slow
def test_the_demo_encoder_with_its_adaptations_shows_the_planted_learning_curve(personas, isolated_storage):
    from radtrust_demo.encoder_demo import EFFICIENCY_SUITE, efficiency_lines, encoder_setup
    from registry.choices import AdaptationMethod

    engineer = personas["engineer"]
    demo = encoder_setup(engineer=engineer, provider=engineer.institution, out=lambda message: None)
    assert demo.shape == VIT_SMALL and demo.base.parent_id is None
    assert (demo.probe.adaptation.method, demo.fine_tune.adaptation.method) == (AdaptationMethod.LINEAR_PROBE, AdaptationMethod.FULL_FINE_TUNE)
    assert demo.probe.parent_id == demo.fine_tune.parent_id == demo.base.pk
    assert len(demo.base.artifact_files) == 2  # the graph and its external data
    config = {**EFFICIENCY_SUITE, "n_resamples": 50, "label_repeats": 2}
    comparator = services.run_create(actor=engineer, version=demo.fine_tune, dataset=demo.dataset, config=config)
    services.run_execute(run_id=comparator.pk, worker="w")
    comparator.refresh_from_db()
    run = services.run_create(actor=engineer, version=demo.base, dataset=demo.dataset, config=config, comparator=comparator)
    services.run_execute(run_id=run.pk, worker="w")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    curve = run.results["data_efficiency"]["labels"]["opacity"]["logistic"]["curve"]
    aurocs = [p["auroc"] for p in curve]
    assert aurocs[-1] > 0.7 and aurocs[-1] > aurocs[0] + 0.15  # the planted opacity is learnt, more with more labels
    lines = efficiency_lines(run)
    assert any("logistic-probe AUROC by labelled share" in line for line in lines)
    assert any("against the comparator at 100%" in line for line in lines)
