"""Load the VM catalog of shared/seeds/FACTS.md into a fresh database.

Families, restrictions and the CUDA table come from FACTS.md; sizes are real published
vCPU / memory / GPU figures. Prices are rough pay-as-you-go estimates in USD per hour
(low priority ≈ 20 % of dedicated); admins can correct them in the Django admin.
The data lives in this file, not imported from app code, so the migration never changes.
"""

from decimal import Decimal

from django.db import migrations

GENERAL, MEMORY, COMPUTE, HPC, GPU = "general", "memory", "compute", "hpc", "gpu"

# name, series on it, minimum CUDA, release order (newer is higher)
ARCHITECTURES = [
    ("Ampere", "NDA100_v4", "11.0", 6),
    ("Turing", "NCT4_v3", "10.0", 5),
    ("Volta", "NCv3, NDv2", "9.0", 4),
    ("Pascal", "NCv2, ND", "9.0", 3),
    ("Maxwell", "NV, NVv3", "9.0", 2),
    ("Kepler", "NC, NC Promo", "9.0", 1),
]

# family, category, restricted (needs approval), GPU architecture
FAMILIES = [
    ("DDSv4", GENERAL, False, None),
    ("Dv2", GENERAL, False, None),
    ("Dv3", GENERAL, False, None),
    ("DSv2", GENERAL, False, None),
    ("DSv3", GENERAL, False, None),
    ("EAv4", MEMORY, False, None),
    ("Ev3", MEMORY, False, None),
    ("FSv2", COMPUTE, False, None),
    ("H", HPC, False, None),
    ("HB", HPC, True, None),
    ("HBv2", HPC, True, None),
    ("HCS", HPC, True, None),
    ("M", MEMORY, True, None),
    ("NC", GPU, False, "Kepler"),
    ("NC Promo", GPU, False, "Kepler"),
    ("NCsv2", GPU, True, "Pascal"),
    ("NCsv3", GPU, True, "Volta"),
    ("NDs", GPU, True, "Pascal"),
    ("NDv2", GPU, True, "Volta"),
    ("NV", GPU, False, "Maxwell"),
    ("NVv3", GPU, True, "Maxwell"),
]

ISO, RDMA = "isolated", "rdma"

# family: [(size without "Standard_", vCPUs, memory GiB, GPUs, GPU model, GiB per GPU,
#           $/h dedicated, flags)]
SIZES = {
    "DDSv4": [
        ("D2ds_v4", 2, "8", 0, "", 0, "0.188", ()),
        ("D4ds_v4", 4, "16", 0, "", 0, "0.376", ()),
        ("D8ds_v4", 8, "32", 0, "", 0, "0.752", ()),
        ("D16ds_v4", 16, "64", 0, "", 0, "1.504", ()),
    ],
    "Dv2": [
        ("D1_v2", 1, "3.5", 0, "", 0, "0.057", ()),
        ("D2_v2", 2, "7", 0, "", 0, "0.114", ()),
        ("D3_v2", 4, "14", 0, "", 0, "0.229", ()),
        ("D4_v2", 8, "28", 0, "", 0, "0.458", ()),
        ("D5_v2", 16, "56", 0, "", 0, "0.916", ()),
    ],
    "Dv3": [
        ("D2_v3", 2, "8", 0, "", 0, "0.096", ()),
        ("D4_v3", 4, "16", 0, "", 0, "0.192", ()),
        ("D8_v3", 8, "32", 0, "", 0, "0.384", ()),
        ("D16_v3", 16, "64", 0, "", 0, "0.768", ()),
    ],
    "DSv2": [
        ("DS1_v2", 1, "3.5", 0, "", 0, "0.073", ()),
        ("DS2_v2", 2, "7", 0, "", 0, "0.146", ()),
        ("DS3_v2", 4, "14", 0, "", 0, "0.293", ()),
        ("DS4_v2", 8, "28", 0, "", 0, "0.585", ()),
        ("DS5_v2", 16, "56", 0, "", 0, "1.170", ()),
    ],
    "DSv3": [
        ("D2s_v3", 2, "8", 0, "", 0, "0.096", ()),
        ("D4s_v3", 4, "16", 0, "", 0, "0.192", ()),
        ("D8s_v3", 8, "32", 0, "", 0, "0.384", ()),
        ("D16s_v3", 16, "64", 0, "", 0, "0.768", ()),
    ],
    "EAv4": [
        ("E2a_v4", 2, "16", 0, "", 0, "0.126", ()),
        ("E4a_v4", 4, "32", 0, "", 0, "0.252", ()),
        ("E8a_v4", 8, "64", 0, "", 0, "0.504", ()),
        ("E16a_v4", 16, "128", 0, "", 0, "1.008", ()),
    ],
    "Ev3": [
        ("E2_v3", 2, "16", 0, "", 0, "0.126", ()),
        ("E4_v3", 4, "32", 0, "", 0, "0.252", ()),
        ("E8_v3", 8, "64", 0, "", 0, "0.504", ()),
        ("E16_v3", 16, "128", 0, "", 0, "1.008", ()),
    ],
    "FSv2": [
        ("F2s_v2", 2, "4", 0, "", 0, "0.085", ()),
        ("F4s_v2", 4, "8", 0, "", 0, "0.169", ()),
        ("F8s_v2", 8, "16", 0, "", 0, "0.338", ()),
        ("F16s_v2", 16, "32", 0, "", 0, "0.677", ()),
        ("F72s_v2", 72, "144", 0, "", 0, "3.045", (ISO,)),
    ],
    "H": [
        ("H8", 8, "56", 0, "", 0, "0.796", ()),
        ("H8m", 8, "112", 0, "", 0, "1.066", ()),
        ("H16", 16, "112", 0, "", 0, "1.591", ()),
        ("H16m", 16, "224", 0, "", 0, "2.132", ()),
        ("H16r", 16, "112", 0, "", 0, "1.750", (RDMA,)),
        ("H16mr", 16, "224", 0, "", 0, "2.345", (RDMA,)),
    ],
    "HB": [
        ("HB60rs", 60, "228", 0, "", 0, "2.280", (RDMA,)),
        ("HB60-45rs", 45, "228", 0, "", 0, "2.280", (RDMA,)),
        ("HB60-30rs", 30, "228", 0, "", 0, "2.280", (RDMA,)),
        ("HB60-15rs", 15, "228", 0, "", 0, "2.280", (RDMA,)),
    ],
    "HBv2": [
        ("HB120rs_v2", 120, "456", 0, "", 0, "3.600", (RDMA,)),
        ("HB120-96rs_v2", 96, "456", 0, "", 0, "3.600", (RDMA,)),
        ("HB120-64rs_v2", 64, "456", 0, "", 0, "3.600", (RDMA,)),
        ("HB120-32rs_v2", 32, "456", 0, "", 0, "3.600", (RDMA,)),
        ("HB120-16rs_v2", 16, "456", 0, "", 0, "3.600", (RDMA,)),
    ],
    "HCS": [
        ("HC44rs", 44, "352", 0, "", 0, "3.168", (RDMA,)),
        ("HC44-32rs", 32, "352", 0, "", 0, "3.168", (RDMA,)),
        ("HC44-16rs", 16, "352", 0, "", 0, "3.168", (RDMA,)),
    ],
    "M": [
        ("M64s", 64, "1024", 0, "", 0, "6.669", ()),
        ("M64ms", 64, "1792", 0, "", 0, "10.337", ()),
        ("M128s", 128, "2048", 0, "", 0, "13.338", ()),
        ("M128ms", 128, "3892", 0, "", 0, "26.688", (ISO,)),
    ],
    "NC": [
        ("NC6", 6, "56", 1, "Tesla K80", 12, "0.900", ()),
        ("NC12", 12, "112", 2, "Tesla K80", 12, "1.800", ()),
        ("NC24", 24, "224", 4, "Tesla K80", 12, "3.600", ()),
        ("NC24r", 24, "224", 4, "Tesla K80", 12, "3.960", (RDMA,)),
    ],
    "NC Promo": [
        ("NC6_Promo", 6, "56", 1, "Tesla K80", 12, "0.720", ()),
        ("NC12_Promo", 12, "112", 2, "Tesla K80", 12, "1.440", ()),
        ("NC24_Promo", 24, "224", 4, "Tesla K80", 12, "2.880", ()),
        ("NC24r_Promo", 24, "224", 4, "Tesla K80", 12, "3.168", (RDMA,)),
    ],
    "NCsv2": [
        ("NC6s_v2", 6, "112", 1, "Tesla P100", 16, "2.070", ()),
        ("NC12s_v2", 12, "224", 2, "Tesla P100", 16, "4.140", ()),
        ("NC24s_v2", 24, "448", 4, "Tesla P100", 16, "8.280", ()),
        ("NC24rs_v2", 24, "448", 4, "Tesla P100", 16, "9.108", (RDMA,)),
    ],
    "NCsv3": [
        ("NC6s_v3", 6, "112", 1, "Tesla V100", 16, "3.060", ()),
        ("NC12s_v3", 12, "224", 2, "Tesla V100", 16, "6.120", ()),
        ("NC24s_v3", 24, "448", 4, "Tesla V100", 16, "12.240", (ISO,)),
        ("NC24rs_v3", 24, "448", 4, "Tesla V100", 16, "13.464", (ISO, RDMA)),
    ],
    "NDs": [
        ("ND6s", 6, "112", 1, "Tesla P40", 24, "2.070", ()),
        ("ND12s", 12, "224", 2, "Tesla P40", 24, "4.140", ()),
        ("ND24s", 24, "448", 4, "Tesla P40", 24, "8.280", ()),
        ("ND24rs", 24, "448", 4, "Tesla P40", 24, "9.108", (RDMA,)),
    ],
    # The NDv2 family has exactly one size in the cloud; none is invented here.
    "NDv2": [
        ("ND40rs_v2", 40, "672", 8, "Tesla V100 32GB", 32, "22.032", (RDMA,)),
    ],
    "NV": [
        ("NV6", 6, "56", 1, "Tesla M60", 8, "1.140", ()),
        ("NV12", 12, "112", 2, "Tesla M60", 8, "2.280", ()),
        ("NV24", 24, "224", 4, "Tesla M60", 8, "4.560", ()),
    ],
    "NVv3": [
        ("NV12s_v3", 12, "112", 1, "Tesla M60", 8, "1.140", ()),
        ("NV24s_v3", 24, "224", 2, "Tesla M60", 8, "2.280", ()),
        ("NV48s_v3", 48, "448", 4, "Tesla M60", 8, "4.560", ()),
    ],
}

LOW_PRIORITY_DISCOUNT = Decimal("0.20")


def load_catalog(apps, schema_editor):
    GpuArchitecture = apps.get_model("compute", "GpuArchitecture")
    VmFamily = apps.get_model("compute", "VmFamily")
    VmSize = apps.get_model("compute", "VmSize")
    architectures = {}
    for name, series, min_cuda, order in ARCHITECTURES:
        architectures[name], _ = GpuArchitecture.objects.update_or_create(
            name=name, defaults={"series": series, "min_cuda": min_cuda, "release_order": order}
        )
    for name, category, restricted, architecture in FAMILIES:
        family, _ = VmFamily.objects.update_or_create(
            name=name,
            defaults={
                "category": category,
                "restricted": restricted,
                "serves_clusters": True,
                "serves_instances": True,
                "gpu_architecture": architectures.get(architecture),
            },
        )
        for short, vcpus, memory, gpus, model, gpu_memory, price, flags in SIZES[name]:
            dedicated = Decimal(price)
            VmSize.objects.update_or_create(
                name=f"Standard_{short}",
                defaults={
                    "family": family,
                    "vcpus": vcpus,
                    "memory_gib": Decimal(memory),
                    "gpus": gpus,
                    "gpu_model": model,
                    "gpu_memory_gib": gpu_memory,
                    "isolated": ISO in flags,
                    "rdma": RDMA in flags,
                    "price_dedicated": dedicated,
                    "price_low_priority": (dedicated * LOW_PRIORITY_DISCOUNT).quantize(
                        Decimal("0.001")
                    ),
                },
            )


def unload_catalog(apps, schema_editor):
    apps.get_model("compute", "VmSize").objects.all().delete()
    apps.get_model("compute", "VmFamily").objects.all().delete()
    apps.get_model("compute", "GpuArchitecture").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("compute", "0001_initial")]

    operations = [migrations.RunPython(load_catalog, unload_catalog)]
