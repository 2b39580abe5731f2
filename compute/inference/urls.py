from django.urls import path

from compute.inference.views import batch, endpoints, models, replicas

app_name = "inference"

urlpatterns = [
    path("w/<slug:slug>/batch/", batch.batch_list, name="batches"),
    path("w/<slug:slug>/batch/new/", batch.batch_create, name="batch-create"),
    path("w/<slug:slug>/batch/<int:pk>/", batch.batch_detail, name="batch"),
    path("w/<slug:slug>/batch/<int:pk>/cancel/", batch.batch_cancel, name="batch-cancel"),
    path(
        "w/<slug:slug>/batch/<int:pk>/predictions.csv",
        batch.batch_predictions,
        name="batch-predictions",
    ),
    path("w/<slug:slug>/batch/<int:pk>/errors.csv", batch.batch_errors, name="batch-errors"),
    path("w/<slug:slug>/models/", models.model_list, name="models"),
    path("w/<slug:slug>/models/new/", models.model_create, name="model-create"),
    path("w/<slug:slug>/models/<int:pk>/", models.model_detail, name="model"),
    path("w/<slug:slug>/endpoints/", endpoints.endpoint_list, name="endpoints"),
    path("w/<slug:slug>/endpoints/new/", endpoints.endpoint_create, name="endpoint-create"),
    path("w/<slug:slug>/endpoints/<int:pk>/", endpoints.endpoint_detail, name="endpoint"),
    path(
        "w/<slug:slug>/endpoints/<int:pk>/deployments/new/",
        endpoints.deployment_create,
        name="deployment-create",
    ),
    path(
        "w/<slug:slug>/endpoints/<int:pk>/deployments/<int:deployment_id>/delete/",
        endpoints.deployment_delete,
        name="deployment-delete",
    ),
    path("w/<slug:slug>/endpoints/<int:pk>/keys/", endpoints.key_regenerate, name="key"),
    path("w/<slug:slug>/endpoints/<int:pk>/try/", endpoints.endpoint_try, name="try"),
    path(
        "w/<slug:slug>/endpoints/<int:pk>/replicas/<int:node_id>/log/",
        replicas.replica_log_page,
        name="replica-log",
    ),
    path("w/<slug:slug>/endpoints/<int:pk>/traffic/", endpoints.traffic_split, name="traffic"),
]
