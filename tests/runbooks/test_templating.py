import pytest

from runbooks.templating import TemplateError, lookup, render

CTX = {"params": {"node": "node-003", "gpu": 3}, "saved": {"ckpt": {"jobs": [{"name": "train-01"}]}}}


def test_a_whole_string_template_keeps_the_type_of_the_value():
    assert render("{{ params.gpu }}", CTX) == 3


def test_a_template_inside_text_is_substituted_as_text():
    assert render("gpu {{params.gpu}} on {{ params.node }}", CTX) == "gpu 3 on node-003"


def test_templates_render_inside_lists_and_dicts():
    assert render({"a": ["{{ params.node }}", 1]}, CTX) == {"a": ["node-003", 1]}


def test_numeric_path_parts_index_into_lists():
    assert lookup(CTX, "saved.ckpt.jobs.0.name") == "train-01"


def test_a_missing_path_is_a_readable_error():
    with pytest.raises(TemplateError, match=r"params\.missing"):
        render("{{ params.missing }}", CTX)


@pytest.mark.parametrize(
    "text",
    ["{{ __import__('os').system('x') }}", "{{ params.node | upper }}", "{{ params['node'] }}"],
)
def test_anything_but_a_dotted_path_is_left_as_plain_text(text):
    assert render(text, CTX) == text
