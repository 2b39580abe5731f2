"""Deciding quota is a site power: the `decide_quotarequest` permission, and a "Quota
approvers" group that holds it (site admins add approvers to it)."""

from django.db import migrations

GROUP = "Quota approvers"


def make_group(apps, schema_editor) -> None:
    # The permission row is made here rather than left to post_migrate, so the group can
    # hold it in the same migration; post_migrate later finds it and leaves it.
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="compute", model="quotarequest")
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type,
        codename="decide_quotarequest",
        defaults={"name": "Can approve or reject quota requests"},
    )
    view, _ = Permission.objects.get_or_create(
        content_type=content_type,
        codename="view_quotarequest",
        defaults={"name": "Can view quota request"},
    )
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(permission, view)


def remove_group(apps, schema_editor) -> None:
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("compute", "0011_jobrun_token"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="quotarequest",
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [("decide_quotarequest", "Can approve or reject quota requests")],
            },
        ),
        migrations.RunPython(make_group, remove_group),
    ]
