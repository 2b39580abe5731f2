from compute.models.catalog import Category, GpuArchitecture, VmFamily, VmSize

__all__ = ["Category", "GpuArchitecture", "VmFamily", "VmSize"]
