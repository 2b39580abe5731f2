"""Creating workspaces is a site power: a "Workspace creators" group holding Django's own
`workspace.add_workspace` permission (site admins add staff to it; superusers always can)."""

from django.db import migrations

GROUP = "Workspace creators"


def make_group(apps, schema_editor) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="workspace", model="workspace")
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type,
        codename="add_workspace",
        defaults={"name": "Can add workspace"},
    )
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(permission)


def remove_group(apps, schema_editor) -> None:
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("workspace", "0002_idle"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(make_group, remove_group)]
