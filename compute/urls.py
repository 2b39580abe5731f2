from django.urls import path

from compute.views import catalog, computes, health

app_name = "compute"

urlpatterns = [
    path("catalog/", catalog.catalog, name="catalog"),
    path("health/workers/", health.worker_health, name="worker-health"),
    path("w/<slug:slug>/compute/", computes.compute_list, name="list"),
    path(
        "w/<slug:slug>/compute/new/<str:kind>/",
        computes.compute_create,
        name="create",
    ),
    path("w/<slug:slug>/compute/<int:pk>/", computes.compute_detail, name="detail"),
    path("w/<slug:slug>/compute/<int:pk>/resize/", computes.cluster_update, name="resize"),
    path(
        "w/<slug:slug>/compute/<int:pk>/<str:verb>/",
        computes.compute_action,
        name="action",
    ),
]
