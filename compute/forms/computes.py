from __future__ import annotations

from typing import cast

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db.models import QuerySet

from compute.forms.fields import parse_variables, secret_variables_field
from compute.models import Category, Environment, Tier, VmSize
from compute.models.compute import COMPUTE_NAME_RULE
from compute.selectors import default_environment_of, environments_for, live_computes_of
from workspace.forms import QuickSelect, StyledForm
from workspace.models import Workspace

ANY_YES_NO = [("", "Any"), ("yes", "Yes"), ("no", "No")]
SORTS = {
    "family": ("family__name", "vcpus", "name"),
    "vcpus": ("vcpus", "memory_gib", "name"),
    "memory": ("memory_gib", "vcpus", "name"),
    "price": ("price_dedicated", "name"),
    "gpus": ("-gpus", "name"),
}


class CatalogFilterForm(StyledForm, forms.Form):
    """Filters of the catalog page; every field optional, every value checked."""

    q = forms.CharField(label="Size name", required=False, max_length=48)
    category = forms.ChoiceField(
        choices=[("", "All categories"), *Category.choices], required=False
    )
    gpu = forms.ChoiceField(label="GPU", choices=ANY_YES_NO, required=False)
    restricted = forms.ChoiceField(label="Needs approval", choices=ANY_YES_NO, required=False)
    isolated = forms.ChoiceField(choices=ANY_YES_NO, required=False)
    min_vcpus = forms.IntegerField(label="Min vCPUs", required=False, min_value=0, max_value=1000)
    min_memory = forms.DecimalField(
        label="Min memory (GiB)", required=False, min_value=0, max_value=100000, decimal_places=1
    )
    sort = forms.ChoiceField(
        choices=[
            ("family", "Family"),
            ("vcpus", "vCPUs"),
            ("memory", "Memory"),
            ("price", "Price"),
            ("gpus", "GPUs"),
        ],
        required=False,
    )

    def filter(self, sizes: QuerySet[VmSize]) -> QuerySet[VmSize]:
        data = self.cleaned_data
        if data.get("q"):
            sizes = sizes.filter(name__icontains=data["q"].strip())
        if data.get("category"):
            sizes = sizes.filter(family__category=data["category"])
        for field, lookup in (
            ("gpu", {"gpus__gt": 0}),
            ("restricted", {"family__restricted": True}),
            ("isolated", {"isolated": True}),
        ):
            if data.get(field) == "yes":
                sizes = sizes.filter(**lookup)
            elif data.get(field) == "no":
                sizes = sizes.exclude(**lookup)
        if data.get("min_vcpus") is not None:
            sizes = sizes.filter(vcpus__gte=data["min_vcpus"])
        if data.get("min_memory") is not None:
            sizes = sizes.filter(memory_gib__gte=data["min_memory"])
        return sizes.order_by(*SORTS[data.get("sort") or "family"])


def size_label(size: VmSize) -> str:
    gpu = f", {size.gpus} × {size.gpu_model}" if size.gpus else ""
    approval = " · needs approval" if size.family.restricted else ""
    return (
        f"{size.name} — {size.vcpus} vCPU, {size.memory_gib:g} GiB{gpu}, "
        f"~${size.price_dedicated}/h{approval}"
    )


def size_choices() -> list:
    """The VM size picker: sizes grouped by family, as in the catalog."""
    groups: dict[str, list] = {}
    for size in VmSize.objects.select_related("family").order_by("family__name", "vcpus", "name"):
        title = f"{size.family.name} · {size.family.get_category_display()}"
        groups.setdefault(title, []).append((str(size.pk), size_label(size)))
    return [("", "Choose a VM size…"), *groups.items()]


def environment_label(environment: Environment) -> str:
    where = "curated" if environment.is_curated else "this workspace"
    state = environment.image.get_state_display().lower()
    return f"{environment.name} v{environment.version} ({where}, {state})"


class ComputeForm(StyledForm, forms.Form):
    name = forms.CharField(
        max_length=24,
        validators=[COMPUTE_NAME_RULE],
        help_text="3–24 letters, digits and hyphens, starting with a letter; unique here.",
    )
    vm_size = forms.ChoiceField(label="VM size", widget=QuickSelect)
    environment = forms.ChoiceField(
        required=False,
        help_text="The packages its nodes run with; built here before its first node starts.",
    )

    def __init__(self, *args, workspace: Workspace, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.workspace = workspace
        cast(forms.ChoiceField, self.fields["vm_size"]).choices = size_choices()
        cast(forms.ChoiceField, self.fields["environment"]).choices = [
            ("", "None: the site's node image (Debian 12, Python 3)"),
            *(
                (str(environment.pk), environment_label(environment))
                for environment in environments_for(workspace)
            ),
        ]
        default = default_environment_of(workspace)
        if default is not None:
            self.fields["environment"].initial = str(default.pk)
            self.fields["environment"].help_text += " Preselected: the workspace's default."
        self.fields["name"].widget.attrs.update(autofocus=True, autocomplete="off")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        taken = live_computes_of(self.workspace).filter(name__iexact=name).exists()
        if taken:
            raise forms.ValidationError(
                f"{self.workspace.name} already has a compute named {name}."
            )
        return name

    def clean_environment(self) -> Environment | None:
        chosen = self.cleaned_data["environment"]
        if not chosen:
            return None
        found = environments_for(self.workspace).filter(pk=chosen).first()
        if found is None:
            raise forms.ValidationError("Choose an environment from the list.")
        return found

    def clean_vm_size(self) -> VmSize:
        size = (
            VmSize.objects.select_related("family").filter(pk=self.cleaned_data["vm_size"]).first()
        )
        if size is None:
            raise forms.ValidationError("Choose a VM size from the list.")
        return size


class InstanceForm(ComputeForm):
    assigned_to = forms.ChoiceField(
        label="Assigned to",
        required=False,
        help_text="Admins may create an instance on behalf of a member.",
    )
    idle_shutdown_minutes = forms.IntegerField(
        label="Idle shutdown (minutes)",
        required=False,
        min_value=1,
        help_text="Stop it after this long without activity. Empty: never.",  # see __init__
    )
    setup_script = forms.CharField(
        required=False,
        max_length=20000,
        widget=forms.Textarea(attrs={"rows": 4, "class": "font-monospace", "spellcheck": "false"}),
        help_text="Runs in the node's working folder each time its node starts; "
        "the output goes to setup.log there.",
    )
    secret_environment = secret_variables_field(
        "One KEY=value per line, for the setup script and every job on this instance. "
        "Stored encrypted and never shown again, to anyone: pages show the names only."
    )

    def __init__(
        self, *args, members: list | None = None, can_assign: bool = False, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.members = {str(user.pk): user for user in members or []}
        self._prefill_idle()
        if can_assign:
            cast(forms.ChoiceField, self.fields["assigned_to"]).choices = [
                ("", "Me"),
                *((pk, str(u)) for pk, u in self.members.items()),
            ]
        else:
            del self.fields["assigned_to"]

    def _prefill_idle(self) -> None:
        """The workspace's default for new instances fills the field; its policy says what
        the field may hold."""
        workspace, field = self.workspace, self.fields["idle_shutdown_minutes"]
        low, high = workspace.idle_min_minutes, workspace.idle_max_minutes
        default = workspace.idle_default_minutes
        field.initial = default
        field.widget.attrs.update(min=low, max=high, placeholder="never")
        said = f"{default} min" if default else "never"
        if workspace.idle_required:
            field.help_text = (
                f"Stop it after this long without activity: {low} to {high} minutes. "
                f"{workspace.name} requires idle shutdown (default {said})."
            )
        else:
            field.help_text = (
                f"Stop it after this long without activity, {low} to {high} minutes; "
                f"empty: never. {workspace.name}'s default: {said}."
            )

    def clean_idle_shutdown_minutes(self) -> int | None:
        """A number is the creator's choice; a field sent empty is "never", chosen on
        purpose (the page fills it with the default), and passes only if the policy allows
        it; a field not sent at all leaves it to the workspace's default (None)."""
        from compute.actions.idle import IDLE_OFF

        value = self.cleaned_data.get("idle_shutdown_minutes")
        if value is None and self.add_prefix("idle_shutdown_minutes") not in self.data:
            return None  # the action applies the default, and checks it
        return IDLE_OFF if within_idle_policy(self.workspace, value) is None else value

    def clean_secret_environment(self) -> dict[str, str]:
        return parse_variables(self.cleaned_data["secret_environment"], secret=True)

    def clean_assigned_to(self):
        value = self.cleaned_data.get("assigned_to")
        return self.members.get(value) if value else None


class IdleSettingsForm(StyledForm, forms.Form):
    idle_shutdown_minutes = forms.IntegerField(
        label="Idle shutdown (minutes)", required=False, min_value=1
    )

    def __init__(self, *args, workspace: Workspace, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.workspace = workspace

    def clean_idle_shutdown_minutes(self) -> int | None:
        """Empty: off (None), if the policy allows it."""
        return within_idle_policy(self.workspace, self.cleaned_data.get("idle_shutdown_minutes"))


def within_idle_policy(workspace: Workspace, value: int | None) -> int | None:
    """The value, if the workspace's idle policy allows it (None: off); else the field's
    error, in the policy's words."""
    from compute.actions.idle import check_idle_minutes

    try:
        check_idle_minutes(workspace, value)
    except ValidationError as error:
        raise forms.ValidationError(error.message_dict["idle_shutdown_minutes"]) from None
    return value


class ScheduleForm(StyledForm, forms.Form):
    action = forms.ChoiceField(choices=[("stop", "Stop"), ("start", "Start")])
    mode = forms.ChoiceField(
        choices=[("weekly", "Weekly"), ("cron", "Cron expression")], initial="weekly"
    )
    days = forms.MultipleChoiceField(
        choices=[], required=False, widget=forms.CheckboxSelectMultiple
    )
    at = forms.TimeField(
        label="Time",
        required=False,
        initial="19:00",
        widget=forms.TimeInput(attrs={"type": "time"}),
    )
    cron = forms.CharField(
        required=False, max_length=100, help_text="minute hour day month weekday"
    )
    timezone = forms.CharField(max_length=64, initial="UTC", help_text="e.g. Europe/Berlin")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        from compute.rules.idle import DAYS

        cast(forms.ChoiceField, self.fields["days"]).choices = DAYS
        self.fields["days"].widget.attrs.pop("class", None)

    def clean(self) -> dict:
        from compute.rules import idle

        cleaned = super().clean()
        try:
            if cleaned.get("timezone"):
                idle.zone(cleaned["timezone"].strip())
            if cleaned.get("mode") == "cron":
                cleaned["expression"] = idle.check_cron(cleaned.get("cron") or "")
            elif cleaned.get("mode") == "weekly":
                if not cleaned.get("at"):
                    raise idle.ScheduleError("Pick a time.")
                cleaned["expression"] = idle.weekly_cron(
                    cleaned.get("days") or [], cleaned["at"].strftime("%H:%M")
                )
        except idle.ScheduleError as exc:
            raise forms.ValidationError(str(exc)) from None
        return cleaned


class ClusterBoundsForm(StyledForm, forms.Form):
    min_nodes = forms.IntegerField(
        label="Min nodes", min_value=0, initial=0, help_text="0 lets it cost nothing when idle."
    )
    max_nodes = forms.IntegerField(label="Max nodes", min_value=1, initial=1)
    idle_seconds_before_scaledown = forms.IntegerField(
        label="Idle seconds before scale-down", min_value=0, max_value=7 * 24 * 3600, initial=120
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        limit = settings.HANGAR_MAX_NODES_LIMIT
        for name in ("min_nodes", "max_nodes"):
            self.fields[name].validators.append(MaxValueValidator(limit))
            self.fields[name].widget.attrs["max"] = limit
        self.fields["max_nodes"].help_text = f"Up to {limit} on this Hangar."

    def clean(self) -> dict:
        cleaned = super().clean()
        low, high = cleaned.get("min_nodes"), cleaned.get("max_nodes")
        if low is not None and high is not None and low > high:
            self.add_error("min_nodes", f"Min nodes ({low}) cannot exceed max nodes ({high}).")
        return cleaned


class ClusterForm(ComputeForm, ClusterBoundsForm):
    tier = forms.ChoiceField(
        choices=Tier.choices,
        initial=Tier.DEDICATED,
        help_text="Low-priority nodes cost less but can be preempted.",
    )

    field_order = [
        "name",
        "vm_size",
        "tier",
        "min_nodes",
        "max_nodes",
        "idle_seconds_before_scaledown",
    ]
