from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("validation", "0011_foundation_evidence")]

    operations = []
