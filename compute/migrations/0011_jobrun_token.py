from django.db import migrations, models

import compute.models.jobs


class Migration(migrations.Migration):
    dependencies = [("compute", "0010_attach_local_computer_permission")]

    operations = [
        # Existing runs keep an empty token, so their records stay where they are.
        migrations.AddField(
            model_name="jobrun",
            name="token",
            field=models.CharField(default="", editable=False, max_length=16),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="jobrun",
            name="token",
            field=models.CharField(
                default=compute.models.jobs.new_run_token, editable=False, max_length=16
            ),
        ),
    ]
