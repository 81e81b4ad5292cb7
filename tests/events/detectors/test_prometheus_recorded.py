"""The recorded-rule round of the changes source: first the GPUs ``gpu:dcgm_attention`` marked, then
only their nodes' DCGM fields (node names escaped for a PromQL regex), filtered to those GPUs."""

from __future__ import annotations

from events.detectors.exposition import Sample
from events.detectors.prometheus_changes import RECORDED, PrometheusChangesSource, Round


class Scripted(PrometheusChangesSource):
    def __init__(
        self, answers: dict[str, list[Sample]], *, recorded: bool = True, loaded: bool = False
    ) -> None:
        super().__init__("http://prometheus.invalid:9090", recorded=recorded, prefer_recorded=True)
        self.answers = answers
        self.asked: list[str] = []
        self.loaded = loaded

    def rule_loaded(self) -> bool:
        return self.loaded

    def ask(self, query: str, kind: str = "changes") -> tuple[list[Sample], Round]:
        self.asked.append(query)
        found = self.answers[RECORDED] if query == RECORDED else self.answers.get("fields", [])
        return found, Round(kind, len(found), 100, 0.01, 0.005)


def field(node: str, gpu: str, value: float = 0.0) -> Sample:
    return Sample("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", {"Hostname": node, "gpu": gpu}, value)


def test_only_the_marked_gpus_of_the_marked_nodes_are_read() -> None:
    source = Scripted(
        {
            RECORDED: [Sample(RECORDED, {"Hostname": "gpu17.dc1-a", "gpu": "5"}, 1.0)],
            "fields": [field("gpu17.dc1-a", "5", 1.0), field("gpu17.dc1-a", "6")],
        }
    )
    samples, done = source.ask_recorded()
    assert [(s.labels["gpu"], s.value) for s in samples] == [("5", 1.0)]
    assert source.asked[1].endswith(', Hostname=~"gpu17\\\\.dc1-a", gpu=~"5"}')
    assert (done.kind, done.series, done.bytes) == ("recorded", 1, 200)


def test_nothing_marked_is_one_small_question() -> None:
    source = Scripted({RECORDED: [], "fields": []})
    samples, done = source.ask_recorded()
    assert samples == [] and source.asked == [RECORDED] and done.bytes == 100


async def test_a_prometheus_with_the_rule_loaded_is_asked_for_its_answer_after_the_full_read() -> None:
    source = Scripted({RECORDED: []}, recorded=False, loaded=True)
    await source.scrape()  # the full read, which also finds the rule loaded
    await source.scrape()
    assert source.recorded and source.asked[-1] == RECORDED
    assert source.last is not None and source.last.kind == "recorded"
