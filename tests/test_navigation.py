import pytest

pytestmark = pytest.mark.django_db


def test_every_navigation_link_opens_a_working_page(client, admin_user):
    client.force_login(admin_user)
    home = client.get("/")
    assert home.status_code == 200
    for item in home.context["nav_items"]:
        assert client.get(item["url"]).status_code == 200, item


def test_the_page_loads_htmx_and_css_from_our_own_static_files(client, reviewer):
    client.force_login(reviewer)
    html = client.get("/").content.decode()
    assert "/static/django_htmx/htmx-2.min.js" in html
    assert "/static/sage/vendor/pico/pico.min.css" in html
    assert "://unpkg" not in html and "cdn." not in html


def test_flash_messages_are_shown(client, reviewer):
    from django.contrib.messages import constants
    from django.contrib.messages.storage.cookie import CookieStorage

    client.force_login(reviewer)
    response = client.get("/")
    storage = CookieStorage(response.wsgi_request)
    storage.add(constants.SUCCESS, "Saved <b>it</b>")
    storage.update(response)
    client.cookies.update(response.cookies)
    html = client.get("/").content.decode()
    assert "Saved &lt;b&gt;it&lt;/b&gt;" in html


def test_the_system_page_shows_database_and_broker(client, reviewer):
    client.force_login(reviewer)
    response = client.get("/system/")
    assert response.status_code == 200
    assert response.context["status"].database_vendor in {"postgresql", "sqlite"}


def test_the_ping_fragment_is_returned_alone_to_htmx(client, reviewer, django_capture_on_commit_callbacks):
    client.force_login(reviewer)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/system/pings/", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert 'id="ping-status"' in html and "Waiting for a worker" in html
    assert "<html" not in html
