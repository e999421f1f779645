from django.db import migrations, models


def first_account(apps, schema_editor):
    # A row for 0002's new column to fill.
    Account = apps.get_model('ledger', 'Account')
    Account.objects.create(owner='alice')


class Migration(migrations.Migration):

    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name='Account',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('owner', models.CharField(max_length=100)),
                ('created', models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.RunPython(first_account, migrations.RunPython.noop),
    ]
