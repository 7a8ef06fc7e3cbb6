"""A tiny target for core tests: they exercise the writer and CLI without depending on real targets."""

from compiler.render import banner, dump_yaml

NAME = "fake"
FAIL = {"on": None}  # set to a region name to make emission fail there (atomicity tests)


def emit_region(plan, region):
    if FAIL["on"] == region.name:
        raise RuntimeError("injected failure while emitting")
    files = {f"fake/{region.name}/region.yaml": dump_yaml({"region": region.name, "share": region.traffic_share},
                                                           header=banner("#"))}
    for svc in region.services:
        files[f"fake/{region.name}/services/{svc.name}.yaml"] = dump_yaml({"replicas": svc.replicas_max})
    return files


def emit_global(plan):
    return {"fake/regions.txt": "\n".join(plan.region_names) + "\n"}


def docs_region(plan, region):
    return f"## Fake\n\n{len(region.services)} services.\n"
