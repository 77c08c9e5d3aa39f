import pytest
from django.core.exceptions import ImproperlyConfigured

from sage.env import Env


def test_it_reads_typed_values():
    env = Env({"FLAG": "yes", "N": " 7 ", "HOSTS": "a.example, b.example,", "NAME": "x"})
    assert env.bool("FLAG", False) is True
    assert env.int("N", 0) == 7
    assert env.list("HOSTS", []) == ["a.example", "b.example"]
    assert env.str("NAME") == "x"


def test_it_uses_defaults_when_unset():
    env = Env({})
    assert env.bool("FLAG", True) is True
    assert env.int("N", 3) == 3
    assert env.list("HOSTS", ["localhost"]) == ["localhost"]


@pytest.mark.parametrize(
    ("method", "args", "value", "message"),
    [
        ("bool", (False,), "maybe", "DEBUG='maybe' is not a boolean"),
        ("int", (1,), "ten", "DEBUG='ten' is not an integer"),
        ("list", ([],), " , ", "DEBUG is set but lists no values"),
        ("choice", ("a", ("a", "b")), "c", "DEBUG='c' must be one of: a, b"),
    ],
)
def test_it_fails_loudly_on_bad_values(method, args, value, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        getattr(Env({"DEBUG": value}), method)("DEBUG", *args)


def test_it_requires_values_without_default():
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY is required"):
        Env({}).str("SECRET_KEY")


def test_it_rejects_an_int_below_minimum():
    with pytest.raises(ImproperlyConfigured, match="must be at least 0"):
        Env({"N": "-1"}).int("N", 1, minimum=0)


def test_it_parses_database_urls():
    config = Env({"DATABASE_URL": "postgres://u:p@db:5432/sage"}).database("DATABASE_URL", "sqlite:///x")
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["HOST"], config["PORT"], config["NAME"]) == ("db", 5432, "sage")


def test_it_rejects_an_unsupported_database():
    with pytest.raises(ImproperlyConfigured, match="unsupported scheme 'mysql'"):
        Env({"DATABASE_URL": "mysql://u@h/db"}).database("DATABASE_URL", "sqlite:///x")
