from django.urls import path

from compute.views import catalog, health

app_name = "compute"

urlpatterns = [
    path("catalog/", catalog.catalog, name="catalog"),
    path("health/workers/", health.worker_health, name="worker-health"),
]
