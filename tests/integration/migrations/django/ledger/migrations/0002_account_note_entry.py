import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ledger', '0001_initial'),
    ]

    operations = [
        # Django adds the column with DEFAULT '' (a constant) to fill the
        # existing rows, then drops the default in the same migration.
        migrations.AddField(
            model_name='account',
            name='note',
            field=models.TextField(blank=True, default=''),
        ),
        migrations.CreateModel(
            name='Entry',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('amount', models.DecimalField(decimal_places=2, max_digits=12)),
                ('memo', models.CharField(blank=True, max_length=200)),
                ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                              related_name='entries', to='ledger.account')),
            ],
        ),
    ]
