"""STAND-IN checks (see conftest.py): a check fails when its target was told to fail it."""


def test_check(case, failing, request):
    spec, name, check = case
    # lab_host is set when the test is collected (conftest.py), as the real suite does
    request.node.user_properties += [("target", spec), ("check", check["id"]), ("scope", check["scope"])]
    assert check["id"] not in failing(spec), f"{name}: {check['id']} is not as expected (told to fail)"
