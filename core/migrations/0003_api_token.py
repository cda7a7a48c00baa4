"""API tokens hashed at rest, with expiry; the REST framework's plaintext tokens converted and erased.

A database that used ``rest_framework.authtoken`` keeps its clients working: each old token
becomes an ``ApiToken`` with the sha256 of the same key, named "converted DRF token", expiring
``RADTRUST_API_TOKEN_MAX_DAYS`` after this migration (they never expired before); the old table's
rows, which held the keys in clear, are deleted. The conversion cannot be undone (the keys are gone).
"""

import datetime
import hashlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

OLD_TABLE = "authtoken_token"


def convert_drf_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if OLD_TABLE not in connection.introspection.table_names():
        return
    api_token = apps.get_model("core", "ApiToken")
    now = timezone.now()
    expires = now + datetime.timedelta(days=settings.RADTRUST_API_TOKEN_MAX_DAYS)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id FROM {OLD_TABLE}")
        rows = cursor.fetchall()
        api_token.objects.bulk_create(
            api_token(
                user_id=user_id,
                name="converted DRF token",
                key_hash=hashlib.sha256(key.encode()).hexdigest(),
                prefix=key[:8],
                created_at=now,
                expires_at=expires,
            )
            for key, user_id in rows
        )
        cursor.execute(f"DELETE FROM {OLD_TABLE}")


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0002_audit_keyed_append_only'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ApiToken',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(help_text='What the token is for (a script, a site agent).', max_length=100)),
                ('key_hash', models.CharField(help_text='sha256 of the key, hex.', max_length=64, unique=True)),
                ('prefix', models.CharField(help_text="The key's first characters, to recognise it in a list.", max_length=8)),
                ('created_at', models.DateTimeField()),
                ('expires_at', models.DateTimeField()),
                ('last_used_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_reason', models.CharField(blank=True, choices=[('revoked', 'Revoked by its owner or an officer'), ('signed_out', 'Signed out with the token'), ('password_changed', "Its user's password changed")], max_length=20)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at', '-pk'],
                'indexes': [models.Index(fields=['user', 'revoked_at'], name='core_apitoken_user_idx')],
            },
        ),
        migrations.RunPython(convert_drf_tokens, migrations.RunPython.noop),
    ]
