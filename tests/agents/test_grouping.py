"""The pure grouping rules, from NVIDIA's catalog: which fault may explain a hang, what is node-wide,
which Xids of one job are one incident."""

from agents.grouping import explains_stall, joins_job_incident, node_wide


def test_only_a_hardware_fault_explains_a_stall():
    # 43 IGNORE, 31/13 RESTART_APP, 63 IGNORE: none stalls a healthy job's collective.
    assert not explains_stall("xid", [43], [])
    assert not explains_stall("xid", [31, 13], [])
    assert not explains_stall("xid", [63], ["remap_pending"])
    assert not explains_stall("ecc", [], ["sbe_rate", "remap_pending"])
    assert not explains_stall("hang", [], [])
    # 79 RESTART_BM, 95 RESET_GPU, a DBE, an NVSwitch SXid, a node-wide fault do.
    assert explains_stall("xid", [79], [])
    assert explains_stall("xid", [43, 95], [])
    assert explains_stall("ecc", [], ["dbe"])
    assert explains_stall("sxid", [12028], [])
    assert explains_stall("node", [74], [])


def test_most_gpus_of_a_node_at_once_is_node_wide():
    assert node_wide(8, 8) and node_wide(5, 8)
    assert not node_wide(4, 8)  # half is not most
    assert not node_wide(2, 2)  # two GPUs can fail on their own
    assert not node_wide(0, 0)


def test_a_jobs_application_errors_are_one_incident_but_hardware_faults_are_not():
    assert joins_job_incident([45], [79])  # cleanup after the job's fault
    assert joins_job_incident([31], [31])  # another rank's page fault
    assert joins_job_incident([43], [13])
    assert not joins_job_incident([79], [31])  # a hardware fault is its own incident
    assert not joins_job_incident([31], [79])  # an application error after a hardware fault: its own
    assert not joins_job_incident([], [31])
