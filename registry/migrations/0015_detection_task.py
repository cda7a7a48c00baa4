"""Lesion detection as a task of the registry.

Before, a detector was a model (segmentation, or any other task) whose versions said ``"task":
"detection"`` in their output schema; now the model's task decides. A model whose every version
says so becomes a detection model (the schema's ``task`` may stay: it agrees). A model with
detection versions beside others cannot be given one task: the migration stops and names it, for
its detection versions to be registered under a detection model first, rather than leave versions
the new rule cannot read. Backwards, detection models become segmentation models again with
``"task": "detection"`` in their versions' schemas.
"""

from django.db import migrations, models


def _declares_detection(version) -> bool:
    return (version.output_schema or {}).get("task") == "detection"


def detectors_forward(apps, schema_editor):
    FoundationModel = apps.get_model("registry", "FoundationModel")
    mixed = []
    for model in FoundationModel.objects.exclude(task="detection").prefetch_related("versions"):
        declares = [_declares_detection(v) for v in model.versions.all()]
        if declares and all(declares):
            FoundationModel.objects.filter(pk=model.pk).update(task="detection")
        elif any(declares):
            mixed.append(f"{model.name} (id {model.pk})")
    if mixed:
        raise RuntimeError(
            "These models hold detection versions beside versions of another task, and one model has one task: "
            f"{', '.join(mixed)}. Register their detection versions under a detection model, then migrate again."
        )


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
