"""The VM catalog page: sizes with filters that htmx applies without a full reload."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse

from compute.forms.computes import CatalogFilterForm
from compute.models import GpuArchitecture, VmFamily, VmSize
from workspace.access import AuthedRequest
from workspace.views.htmx import render_htmx

PAGE_SIZE = 30


@login_required
def catalog(request: AuthedRequest) -> HttpResponse:
    form = CatalogFilterForm(request.GET or None)
    sizes = VmSize.objects.select_related("family__gpu_architecture")
    if form.is_bound and form.is_valid():
        sizes = form.filter(sizes)
    elif form.is_bound:
        # Bad filter values show their errors and an empty list, never a silent guess.
        sizes = sizes.none()
    page = Paginator(sizes, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    show_gpu_guidance = any(size.has_gpu for size in page) or (
        form.is_bound and form.is_valid() and form.cleaned_data.get("gpu") == "yes"
    )
    context = {
        "nav": "catalog",
        "form": form,
        "page": page,
        "query": query.urlencode(),
        "architectures": GpuArchitecture.objects.all() if show_gpu_guidance else [],
        "family_count": VmFamily.objects.count(),
        "size_total": VmSize.objects.count(),
    }
    return render_htmx(request, "compute/catalog.html", context, partial="results")
