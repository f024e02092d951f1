"""Failed logins per account (accounts/throttles.py): a short exponential back-off per
(username, address) pair, and a cap per username over all addresses that cannot lock the user
out of an address they logged in from. Refusals are 429 ``rate_limited`` with ``retry_after``."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tests.conftest import PASSWORD


def attempt(user, password: str, address: str):
    return APIClient(REMOTE_ADDR=address).post(
        "/api/auth/token", {"username": user.username, "password": password}, format="json"
    )


def refused_for(response) -> int:
    """The retry time of a 429 (body and header agree), failing on anything else."""
    assert response.status_code == 429, response.content
    body = response.json()
    assert body["code"] == "rate_limited"
    assert int(response["Retry-After"]) == body["retry_after"] >= 1
    return body["retry_after"]


@pytest.mark.django_db
def test_failures_of_one_pair_back_off_exponentially_and_a_login_clears_them(make_user, settings, clock):
    """After LOGIN_BACKOFF_AFTER failures the pair waits 1, 2, 4, 8 s (capped) before its next
    guess -- even the right password is refused while it waits -- and a login resets it."""
    settings.LOGIN_BACKOFF_AFTER = 3
    settings.LOGIN_BACKOFF_MAX_SECONDS = 8
    settings.LOGIN_ACCOUNT_FAILURES = 1000
    user = make_user()
    address = "192.0.2.30"

    assert [attempt(user, "wrong-1", address).status_code for _ in range(3)] == [401] * 3
    waits = []
    for _ in range(5):
        waits.append(refused_for(attempt(user, PASSWORD, address)))
        clock.advance(waits[-1])
        assert attempt(user, "wrong-1", address).status_code == 401
    assert waits == [1, 2, 4, 8, 8]

    # Another address guessing the same account is not held by this pair's back-off.
    assert attempt(user, "wrong-1", "192.0.2.31").status_code == 401
    clock.advance(8)
    assert attempt(user, PASSWORD, address).status_code == 200
    assert [attempt(user, "wrong-1", address).status_code for _ in range(2)] == [401, 401]


@pytest.mark.django_db
def test_an_account_takes_a_bounded_number_of_guesses_from_all_addresses(make_user, settings, clock):
    """A new address per guess does not help: the username's cap refuses the rest of the window,
    for the right password too; the next window lets a login through again."""
    settings.LOGIN_BACKOFF_AFTER = 0
    settings.LOGIN_ACCOUNT_FAILURES = 5
    settings.LOGIN_ACCOUNT_WINDOW_SECONDS = 900
    user = make_user()
    codes = [attempt(user, f"wrong-{n}", f"198.51.100.{n}").status_code for n in range(5)]
    assert codes == [401] * 5
    wait = refused_for(attempt(user, PASSWORD, "198.51.100.77"))
    assert wait == 900  # the clock stands at the start of a window
    # Case does not make another account.
    refused_for(attempt(SimpleNamespace(username=user.username.upper()), PASSWORD, "198.51.100.78"))
    clock.advance(wait)
    assert attempt(user, PASSWORD, "198.51.100.77").status_code == 200


@pytest.mark.django_db
def test_the_cap_does_not_lock_the_user_out_of_an_address_they_logged_in_from(make_user, settings, clock):
    """Successful logins do not count, and an address that logged in before is held only by its
    own back-off, so an attacker elsewhere exhausting the cap leaves the user able to log in."""
    settings.LOGIN_BACKOFF_AFTER = 5
    settings.LOGIN_ACCOUNT_FAILURES = 3
    user = make_user()
    home = "192.0.2.40"
    assert [attempt(user, PASSWORD, home).status_code for _ in range(4)] == [200] * 4
    assert [attempt(user, "wrong", f"203.0.113.{n}").status_code for n in range(3)] == [401] * 3
    refused_for(attempt(user, PASSWORD, "203.0.113.50"))
    assert attempt(user, PASSWORD, home).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_parallel_guesses_cannot_exceed_the_cap(make_user, settings, clock):
    """The cap counts an attempt before its password is checked: 12 parallel wrong guesses from
    12 addresses against a cap of 5 give exactly 5 answers and 7 refusals."""
    settings.LOGIN_BACKOFF_AFTER = 0
    settings.LOGIN_ACCOUNT_FAILURES = 5
    user = make_user()
    n = 12
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    lock = threading.Lock()

    def guess(index: int):
        try:
            barrier.wait()
            status = attempt(user, f"wrong-{index}", f"198.51.100.{index}").status_code
            with lock:
                statuses.append(status)
        finally:
            connection.close()

    threads = [threading.Thread(target=guess, args=(index,)) for index in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [401] * 5 + [429] * 7


def _hour_of_guessing(user, addresses: list[str], clock, every: float = 5.0) -> tuple[int, int]:
    """Guesses answered (401) and refused (429) in one simulated hour, one attempt every ``every``
    seconds, cycling through ``addresses``."""
    answered = refused = 0
    for n in range(int(3600 / every)):
        status = attempt(user, f"guess-{n}", addresses[n % len(addresses)]).status_code
        answered += status == 401
        refused += status == 429
        clock.advance(every)
    return answered, refused


@pytest.mark.django_db
@pytest.mark.parametrize("spread", [1, 720], ids=["one-address", "new-address-each-guess"])
def test_an_hour_of_guessing_at_the_defaults(make_user, clock, spread):
    """The figures in docs/RELIABILITY.md: with the default settings an attacker guessing every
    5 s gets at most 80 answers per account per hour (20 per 15-minute window), however many
    addresses it uses; from one address the back-off holds it to about one per minute."""
    user = make_user()
    addresses = [f"198.51.{n // 250}.{n % 250 + 1}" for n in range(spread)]
    answered, refused = _hour_of_guessing(user, addresses, clock)
    print(f"[{spread} address(es)] answered {answered}, refused {refused} of {answered + refused} in 1 h")  # -s
    assert answered <= 80
    if spread == 1:
        assert answered <= 5 + 6 + 60  # the first five, the doubling waits, then one per minute
