from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("registry", "0013_adaptations")]

    operations = []
