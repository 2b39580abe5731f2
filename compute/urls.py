from django.urls import path

from compute.views import (
    attached,
    catalog,
    computes,
    environments,
    health,
    hosts,
    idle,
    job_outputs,
    jobs,
    quota,
)

app_name = "compute"

urlpatterns = [
    path("catalog/", catalog.catalog, name="catalog"),
    path("health/workers/", health.worker_health, name="worker-health"),
    path("hosts/", hosts.host_list, name="hosts"),
    path("w/<slug:slug>/compute/", computes.compute_list, name="list"),
    path(
        "w/<slug:slug>/compute/new/<str:kind>/",
        computes.compute_create,
        name="create",
    ),
    path("w/<slug:slug>/compute/attach/", attached.attach_pick, name="attach"),
    path("w/<slug:slug>/compute/attach/<str:kind>/", attached.attach_create, name="attach-kind"),
    path("w/<slug:slug>/compute/<int:pk>/", computes.compute_detail, name="detail"),
    path("w/<slug:slug>/compute/<int:pk>/connection/", attached.attach_edit, name="attach-edit"),
    path(
        "w/<slug:slug>/compute/<int:pk>/attached/<str:verb>/",
        attached.attached_action,
        name="attached-action",
    ),
    path("w/<slug:slug>/compute/<int:pk>/resize/", computes.cluster_update, name="resize"),
    path(
        "w/<slug:slug>/compute/<int:pk>/nodes/<int:node_id>/preempt/",
        jobs.node_preempt,
        name="node-preempt",
    ),
    path("w/<slug:slug>/compute/burning/", idle.burning, name="burning"),
    path("w/<slug:slug>/compute/<int:pk>/keep-running/", idle.keep_running, name="keep-running"),
    path("w/<slug:slug>/compute/<int:pk>/idle/", idle.idle_settings, name="idle"),
    path("w/<slug:slug>/compute/<int:pk>/schedules/", idle.schedule_add, name="schedule-add"),
    path(
        "w/<slug:slug>/compute/<int:pk>/schedules/<int:schedule_id>/delete/",
        idle.schedule_delete,
        name="schedule-delete",
    ),
    path("w/<slug:slug>/compute/<int:pk>/token/", idle.token_rotate, name="token"),
    path("api/instances/<int:pk>/activity/", idle.activity_endpoint, name="activity"),
    path("w/<slug:slug>/quota/", quota.quota_page, name="quota"),
    path("w/<slug:slug>/quota/request/", quota.quota_request, name="quota-request"),
    path("w/<slug:slug>/quota/what-if/", quota.what_if, name="what-if"),
    path("w/<slug:slug>/environments/", environments.environment_list, name="environments"),
    path(
        "w/<slug:slug>/environments/new/",
        environments.environment_create,
        name="environment-create",
    ),
    path(
        "w/<slug:slug>/environments/<int:pk>/",
        environments.environment_detail,
        name="environment",
    ),
    path(
        "w/<slug:slug>/environments/<int:pk>/build/",
        environments.environment_build,
        name="environment-build",
    ),
    path(
        "w/<slug:slug>/environments/<int:pk>/default/",
        environments.environment_default,
        name="environment-default",
    ),
    path("w/<slug:slug>/jobs/", jobs.job_list, name="jobs"),
    path("w/<slug:slug>/jobs/new/", jobs.job_submit, name="job-submit"),
    path("w/<slug:slug>/jobs/<int:pk>/", jobs.job_detail, name="job"),
    path("w/<slug:slug>/jobs/<int:pk>/cancel/", jobs.job_cancel, name="job-cancel"),
    path("w/<slug:slug>/jobs/<int:pk>/log/<int:rank>/", jobs.job_log, name="job-log"),
    path(
        "w/<slug:slug>/jobs/<int:pk>/outputs.zip",
        job_outputs.job_outputs_zip,
        name="job-outputs-zip",
    ),
    path(
        "w/<slug:slug>/jobs/<int:pk>/outputs/<path:path>",
        job_outputs.job_output_file,
        name="job-output-file",
    ),
    path(
        "w/<slug:slug>/compute/<int:pk>/<str:verb>/",
        computes.compute_action,
        name="action",
    ),
]
