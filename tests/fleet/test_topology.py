from __future__ import annotations

import re

from fleet import FleetSpec, FleetTwin, JobSpec

HGX_H100_BUS_IDS = [
    "0000:18:00.0",
    "0000:2a:00.0",
    "0000:3a:00.0",
    "0000:5d:00.0",
    "0000:9a:00.0",
    "0000:ab:00.0",
    "0000:ba:00.0",
    "0000:db:00.0",
]
UUID = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_the_small_fleet_has_sixteen_nodes_on_two_leaves_under_one_spine(twin: FleetTwin) -> None:
    cluster = twin.cluster
    assert list(twin.nodes) == [f"node-{i:03d}" for i in range(1, 17)]
    assert list(cluster.spines) == ["spine-01"]
    assert cluster.spines["spine-01"].leaves == ["leaf-01", "leaf-02"]
    assert cluster.leaves["leaf-01"].nodes == [f"node-{i:03d}" for i in range(1, 9)]
    assert cluster.leaves["leaf-02"].spines == ["spine-01"]
    assert all(leaf.fabric == "infiniband" for leaf in cluster.leaves.values())
    assert {name: rack.nodes[0] for name, rack in cluster.racks.items()} == {
        "rack-01": "node-001",
        "rack-02": "node-005",
        "rack-03": "node-009",
        "rack-04": "node-013",
    }
    assert twin.node("node-010").leaf == "leaf-02"
    assert twin.node("node-010").rack == "rack-03"
    assert twin.cluster_gpu_count == 128


def test_every_node_has_eight_gpus_on_the_real_hgx_h100_bus_ids(twin: FleetTwin) -> None:
    for node in twin.nodes.values():
        assert [gpu.index for gpu in node.gpus] == list(range(8))
        assert [gpu.pci_bus_id for gpu in node.gpus] == HGX_H100_BUS_IDS
    uuids = [gpu.uuid for node in twin.nodes.values() for gpu in node.gpus]
    assert all(UUID.match(uuid) for uuid in uuids)
    assert len(set(uuids)) == len(uuids)


def test_the_last_nodes_are_labelled_warm_spares_and_run_no_job(twin: FleetTwin) -> None:
    assert [node.name for node in twin.spare_nodes()] == ["node-015", "node-016"]
    assert twin.node("node-015").labels["aiops/pool"] == "spare"
    assert twin.node("node-001").labels["aiops/pool"] == "training"
    assert twin.node("node-001").labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert twin.jobs_on_node("node-015") == []
    assert twin.job_for_gpu("node-016", 0) is None


def test_jobs_are_packed_in_order_onto_non_spare_nodes(twin: FleetTwin) -> None:
    assert twin.job("train-01").nodes == [f"node-{i:03d}" for i in range(1, 9)]
    assert twin.job("train-02").nodes == ["node-009", "node-010", "node-011", "node-012"]
    assert twin.job("train-01").gpus == 64
    job = twin.job_for_gpu("node-010", 3)
    assert job is not None and job.name == "train-02"
    assert twin.job_for_gpu("node-013", 0) is None


def test_a_thousand_node_fleet_gets_four_digit_node_names() -> None:
    spec = FleetSpec(
        leaf_switches=32,
        nodes_per_leaf=32,
        spine_switches=8,
        nodes_per_rack=8,
        spare_nodes=4,
        jobs=[
            JobSpec(
                name="train-01", nodes=512, step_time_s=5, checkpoint_interval_s=900, checkpoint_write_s=10
            )
        ],
    )
    twin = FleetTwin(spec)
    assert len(twin.nodes) == 1024
    names = list(twin.nodes)
    assert (names[0], names[-1]) == ("node-0001", "node-1024")
    assert len(twin.cluster.racks) == 128
    assert twin.cluster.leaves["leaf-32"].spines == [f"spine-{i:02d}" for i in range(1, 9)]


def test_a_pci_id_in_any_spelling_maps_to_the_gpu_index(twin: FleetTwin) -> None:
    assert twin.gpu_index("node-001", "0000:5d:00.0") == 3
    assert twin.gpu_index("node-001", "PCI:0000:5D:00") == 3
    assert twin.gpu_index("node-001", "00000000:DB:00.0") == 7
    assert twin.gpu_index("node-001", "0000:01:00.0") is None
    assert twin.gpu_index("node-001", "garbage") is None
