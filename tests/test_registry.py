import pytest

from rdbench.errors import RdbenchError
from rdbench.registry import Registry


def test_register_get_and_list():
    reg: Registry[int] = Registry("thing")
    reg.register("b", 2)

    @reg.register("a-1.x")
    def f():
        return 1

    assert reg.get("b") == 2
    assert reg.get("a-1.x") is f
    assert reg.names() == ["a-1.x", "b"]
    assert "b" in reg and "c" not in reg
    assert len(reg) == 2 and list(reg) == ["a-1.x", "b"]


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "..", "A", "x\\y", " lead", 3])
def test_invalid_names_refused(bad):
    with pytest.raises(RdbenchError, match="invalid thing name"):
        Registry("thing").register(bad, 1)


def test_duplicate_refused_and_unknown_lists_available():
    reg: Registry[int] = Registry("thing")
    reg.register("x", 1)
    with pytest.raises(RdbenchError, match="already registered"):
        reg.register("x", 2)
    assert reg.get("x") == 1
    with pytest.raises(RdbenchError, match="unknown thing 'y'; available: x"):
        reg.get("y")
