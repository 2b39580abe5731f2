"""Attack: guessing a password at the login page by brute force (issue 12, point 5).

On main, 40 wrong passwords in a row were all answered and the right one then logged in.
Now django-axes locks a username for one client address after HANGAR_LOGIN_FAILURES
failures; site staff unlock it in the Django admin. The test settings switch axes off (its
documented test setup), so these tests switch it back on.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from tests.support.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

# Documentation addresses (RFC 5737): only ever a REMOTE_ADDR string, no traffic.
ATTACKER = "198.51.100.7"
ELSEWHERE = "203.0.113.9"
STAFF_DESK = "192.0.2.44"
LOCKED = "Too many failed sign-ins for this account from this address."


@pytest.fixture
def axes_on(settings) -> None:
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = settings.HANGAR_LOGIN_FAILURES = 10
    settings.HANGAR_LOGIN_COOLOFF_MINUTES = 15


def sign_in(client: Client, username: str, password: str, address: str):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address
    )


def signed_in(client: Client) -> bool:
    return SESSION_KEY in client.session


def test_ten_wrong_passwords_lock_the_account_for_that_address_until_an_admin_unlocks_it(
    axes_on,
):
    victim = UserFactory(username="victim")
    staff = UserFactory(username="site-admin", is_staff=True, is_superuser=True)
    attacker = Client()

    codes = [sign_in(attacker, "victim", f"guess-{n}", ATTACKER).status_code for n in range(10)]
    assert codes == [200] * 9 + [429]  # the tenth failure locks

    # The right password no longer helps from there: the login page says why.
    response = sign_in(attacker, "victim", PASSWORD, ATTACKER)
    assert response.status_code == 429
    assert response["Retry-After"] == str(15 * 60)
    page = response.content.decode()
    assert LOCKED in page and "Try again in 15 minutes or ask an admin to unlock it." in page
    assert 'name="password"' in page  # the login page itself, not a bare error page
    assert not signed_in(attacker)

    # The lock is for this username from this address (axes' username + IP combination):
    # the owner signs in from elsewhere, and that does not clear the attacker's lock.
    owner = Client()
    assert sign_in(owner, "victim", PASSWORD, ELSEWHERE).status_code == 302
    assert signed_in(owner)
    assert sign_in(Client(), "victim", PASSWORD, ATTACKER).status_code == 429

    # Site staff unlock it through the real admin pages: sign in, find the attempt, delete.
    admin = Client()
    response = admin.post(
        reverse("admin:login"),
        {"username": staff.username, "password": PASSWORD, "next": "/admin/"},
        REMOTE_ADDR=STAFF_DESK,
    )
    assert response.status_code == 302 and signed_in(admin)
    listing = admin.get(reverse("admin:axes_accessattempt_changelist"), REMOTE_ADDR=STAFF_DESK)
    assert listing.status_code == 200
    attempts = listing.context["cl"].queryset.filter(username="victim", ip_address=ATTACKER)
    # 10 guesses, then the right password twice while locked: every try counts.
    assert [attempt.failures_since_start for attempt in attempts] == [12]
    action = {"action": "delete_selected", "_selected_action": [attempts[0].pk]}
    confirm = admin.post(
        reverse("admin:axes_accessattempt_changelist"), action, REMOTE_ADDR=STAFF_DESK
    )
    assert confirm.status_code == 200 and b"Are you sure" in confirm.content
    done = admin.post(
        reverse("admin:axes_accessattempt_changelist"),
        {**action, "post": "yes"},
        REMOTE_ADDR=STAFF_DESK,
    )
    assert done.status_code == 302

    unlocked = Client()
    response = sign_in(unlocked, "victim", PASSWORD, ATTACKER)
    assert response.status_code == 302 and signed_in(unlocked)
    assert int(unlocked.session[SESSION_KEY]) == victim.pk


def test_the_admin_login_page_is_throttled_too(axes_on):
    UserFactory(username="root-guess", is_staff=True, is_superuser=True)
    attacker = Client()
    url = reverse("admin:login")
    codes = [
        attacker.post(
            url, {"username": "root-guess", "password": f"x{n}"}, REMOTE_ADDR=ATTACKER
        ).status_code
        for n in range(11)
    ]
    assert codes == [200] * 9 + [429, 429]
    response = attacker.post(
        url, {"username": "root-guess", "password": PASSWORD}, REMOTE_ADDR=ATTACKER
    )
    assert response.status_code == 429 and LOCKED in response.content.decode()
    assert not signed_in(attacker)


def test_failures_for_other_usernames_do_not_lock_an_account(axes_on):
    """The lock is per username + address: someone mistyping their own name is not a
    brute force on a colleague's account at the same office address."""
    UserFactory(username="carol")
    attacker = Client()
    for n in range(12):
        sign_in(attacker, f"someone-{n}", "wrong", ATTACKER)
    assert sign_in(attacker, "carol", PASSWORD, ATTACKER).status_code == 302
