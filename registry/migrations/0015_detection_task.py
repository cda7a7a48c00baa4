"""Lesion detection as a task of the registry.

Before, a detector was registered as a segmentation model whose versions said ``"task": "detection"``
in their output schema; now the model's task decides. A segmentation model whose every version
says so becomes a detection model (the schema's ``task`` may stay: it agrees); backwards, the reverse.
"""

from django.db import migrations, models


def _declares_detection(version) -> bool:
    return (version.output_schema or {}).get("task") == "detection"


def detectors_forward(apps, schema_editor):
    FoundationModel = apps.get_model("registry", "FoundationModel")
    for model in FoundationModel.objects.filter(task="segmentation").prefetch_related("versions"):
        versions = list(model.versions.all())
        if versions and all(_declares_detection(v) for v in versions):
            FoundationModel.objects.filter(pk=model.pk).update(task="detection")


def detectors_backward(apps, schema_editor):
    FoundationModel = apps.get_model("registry", "FoundationModel")
    ModelVersion = apps.get_model("registry", "ModelVersion")
    for version in ModelVersion.objects.filter(foundation_model__task="detection"):
        ModelVersion.objects.filter(pk=version.pk).update(output_schema={**(version.output_schema or {}), "task": "detection"})
    FoundationModel.objects.filter(task="detection").update(task="segmentation")


class Migration(migrations.Migration):
    dependencies = [("registry", "0014_dicomweb_sources")]

    operations = [
        migrations.AlterField(
            model_name="foundationmodel",
            name="task",
            field=models.CharField(
                choices=[
                    ("binary", "Binary classification"),
                    ("multilabel", "Multi-label classification"),
                    ("segmentation", "Segmentation"),
                    ("detection", "Lesion detection"),
                ],
                max_length=20,
            ),
        ),
        migrations.RunPython(detectors_forward, detectors_backward),
    ]
