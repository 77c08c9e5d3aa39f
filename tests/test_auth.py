import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from sage.roles import Role, has_role
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/", "/system/"])
def test_it_redirects_anonymous_users_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_the_login_page_and_health_check_are_public(client):
    assert client.get("/accounts/login/").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ok"


def test_it_logs_in_with_the_right_password_only(client, reviewer):
    assert not client.login(username="rita", password="wrong")
    response = client.post("/accounts/login/", {"username": "rita", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_the_role_groups_exist_after_migrate():
    from django.contrib.auth.models import Group

    assert set(Group.objects.values_list("name", flat=True)) >= {"reviewer", "analyst", "admin"}


@pytest.mark.django_db(transaction=True)
def test_the_role_groups_come_back_after_a_flush():
    """A flush (as every transactional test ends with) empties auth_group; migrate's signal refills it,
    so no test depends on which ran before it."""
    from django.contrib.auth.models import Group

    call_command("flush", interactive=False, verbosity=0)
    assert set(Group.objects.values_list("name", flat=True)) >= {"reviewer", "analyst", "admin"}


def test_admins_hold_every_role(admin_user, reviewer):
    assert has_role(admin_user, Role.REVIEWER)
    assert has_role(reviewer, Role.REVIEWER)
    assert not has_role(reviewer, Role.ANALYST)


def test_the_command_creates_a_user_with_roles(monkeypatch):
    monkeypatch.setenv("NEW_PASSWORD", "s3cret-enough-pass")
    call_command("sage_user", "alice", "--role", "reviewer", "--role", "analyst", "--password-env", "NEW_PASSWORD")
    alice = get_user_model().objects.get(username="alice")
    assert alice.check_password("s3cret-enough-pass")
    assert set(alice.groups.values_list("name", flat=True)) == {"reviewer", "analyst"}
    assert not alice.is_staff


def test_the_command_updates_roles_on_a_second_run(monkeypatch):
    monkeypatch.setenv("NEW_PASSWORD", "s3cret-enough-pass")
    call_command("sage_user", "bob", "--role", "reviewer", "--password-env", "NEW_PASSWORD")
    call_command("sage_user", "bob", "--role", "admin", "--no-password")
    bob = get_user_model().objects.get(username="bob")
    assert set(bob.groups.values_list("name", flat=True)) == {"admin"}
    assert bob.is_staff
    assert bob.check_password("s3cret-enough-pass")


def test_the_command_refuses_a_missing_password_variable():
    with pytest.raises(CommandError, match="UNSET_VARIABLE is empty or not set"):
        call_command("sage_user", "carol", "--role", "reviewer", "--password-env", "UNSET_VARIABLE")
    assert not get_user_model().objects.filter(username="carol").exists()


def test_the_command_needs_a_role():
    with pytest.raises(CommandError, match="at least one --role"):
        call_command("sage_user", "dave", "--no-password")


def test_admin_site_lists_every_model(client, make_user):
    from django.apps import apps
    from django.contrib import admin

    ours = {"sage", "policy", "precedent", "judges", "distill", "traffic", "review", "calibration"}
    for model in apps.get_models():
        if model._meta.app_label in ours:
            assert admin.site.is_registered(model), f"{model.__name__} is not in the admin"
    superuser = make_user(username="root", is_superuser=True, is_staff=True)
    client.force_login(superuser)
    assert client.get("/admin/").status_code == 200
