from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("validation", "0012_detection_volumes")]

    operations = []
