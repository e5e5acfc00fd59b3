"""``tools/mutate.py --carry OLD``: after mutmut made the mutants again, the verdicts of functions whose code
did not change come back from the earlier run's records; mutants of changed or new functions stay unjudged."""

from __future__ import annotations

import importlib.util
import json

from .conftest import REPO


def _tool(root):
    spec = importlib.util.spec_from_file_location("mutate_tool", REPO / "tools" / "mutate.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.ROOT = root
    return tool


def _meta(folder, module, codes, hashes):
    (folder / "homelab").mkdir(parents=True, exist_ok=True)
    (folder / "homelab" / f"{module}.py.meta").write_text(json.dumps(
        {"exit_code_by_key": codes, "hash_by_function_name": hashes, "type_check_error_by_key": {},
         "durations_by_key": {}, "estimated_durations_by_key": {}}))


def test_only_unchanged_functions_keep_their_verdicts(tmp_path, capsys):
    old, new = tmp_path / "old", tmp_path / "repo" / "mutants"
    m = "homelab.files"
    _meta(old, "files", {f"{m}.x_plan__mutmut_1": 1, f"{m}.x_plan__mutmut_2": 0, f"{m}.x_plan__mutmut_3": None,
                         f"{m}.x_write__mutmut_1": 0, f"{m}.xǁPlanǁsize__mutmut_1": 1},
          {"x_plan": "aaa", "x_write": "bbb", "xǁPlanǁsize": "ccc"})
    (old / "budget.json").write_text(json.dumps({f"{m}.x_plan__mutmut_2": [3, 9], f"{m}.x_write__mutmut_1": [1, 1]}))
    (old / "killers.json").write_text(json.dumps({f"{m}.x_plan__mutmut_1": "tests/test_a.py::t",
                                                  f"{m}.x_write__mutmut_9": "tests/test_b.py::u"}))
    # x_write changed (another hash), x_new is new, x_plan and Plan.size are the same code
    _meta(new, "files", {f"{m}.x_plan__mutmut_1": None, f"{m}.x_plan__mutmut_2": None,
                         f"{m}.x_plan__mutmut_3": None, f"{m}.x_write__mutmut_1": None,
                         f"{m}.x_new__mutmut_1": None, f"{m}.xǁPlanǁsize__mutmut_1": None},
          {"x_plan": "aaa", "x_write": "bbb2", "x_new": "ddd", "xǁPlanǁsize": "ccc"})

    assert _tool(tmp_path / "repo").carry(old) == 0

    codes = json.loads((new / "homelab" / "files.py.meta").read_text())["exit_code_by_key"]
    assert codes == {f"{m}.x_plan__mutmut_1": 1, f"{m}.x_plan__mutmut_2": 0, f"{m}.x_plan__mutmut_3": None,
                     f"{m}.x_write__mutmut_1": None, f"{m}.x_new__mutmut_1": None, f"{m}.xǁPlanǁsize__mutmut_1": 1}
    assert json.loads((new / "budget.json").read_text()) == {f"{m}.x_plan__mutmut_2": [3, 9]}
    assert json.loads((new / "killers.json").read_text()) == {f"{m}.x_plan__mutmut_1": "tests/test_a.py::t",
                                                              f"{m}.x_write__mutmut_9": "tests/test_b.py::u"}
    assert capsys.readouterr().out == f"carried 3 verdicts of unchanged functions from {old}; 3 mutants to judge\n"
