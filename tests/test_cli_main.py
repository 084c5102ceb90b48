from tvr.errors import TvrError, UnknownName
from tvr.registry import Registry


def test_unknown_command_is_exit_2(run_cli):
    r = run_cli("no-such-command")
    assert r.exit_code == 2
    assert "no-such-command" in r.stderr
    assert "Traceback" not in r.stderr


def test_version(run_cli):
    import tvr

    r = run_cli("version")
    assert r.exit_code == 0
    assert r.stdout.strip() == tvr.__version__


def test_registry_unknown_name_lists_known():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    reg.add("b", 2)
    assert reg.get("b") == 2
    try:
        reg.get("c")
    except UnknownName as exc:
        assert isinstance(exc, TvrError)
        assert "'c'" in str(exc) and "a, b" in str(exc)
    else:
        raise AssertionError("expected UnknownName")


def test_registry_rejects_double_registration():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    try:
        reg.add("a", 2)
    except ValueError:
        pass
    else:
        raise AssertionError("expected ValueError")
