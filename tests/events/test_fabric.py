from events.fabric import FabricMap, NodePlace


def test_placement_comes_from_twin_kubernetes_or_gpu_feature_discovery_labels():
    fabric = FabricMap.from_labels(
        {
            "node-001": {"aiops/leaf": "leaf-01", "aiops/rack": "rack-01"},
            "gb200-07": {"topology.kubernetes.io/rack": "r12", "nvidia.com/gpu.clique": "c0ffee.3"},
            "bare": {},
        }
    )
    assert fabric.parts("node-001") == [("switch", "leaf-01"), ("rack", "rack-01")]
    assert fabric.parts("gb200-07") == [("rack", "r12"), ("nvlink_domain", "c0ffee.3")]
    assert fabric.parts("bare") == [] and fabric.parts("unknown") == []


def test_members_and_leaves_follow_moves():
    fabric = FabricMap([NodePlace("a", leaf="l1"), NodePlace("b", leaf="l1"), NodePlace("c", leaf="l2")])
    assert fabric.members(("switch", "l1")) == {"a", "b"}
    assert fabric.leaves_of(["c", "a", "zzz"]) == ["l1", "l2"]
    fabric.add(NodePlace("b", leaf="l2"))
    assert fabric.members(("switch", "l1")) == {"a"} and fabric.members(("switch", "l2")) == {"b", "c"}
