"""What an operator meets at the edges of a service: a state directory already in use."""

from __future__ import annotations

from tests.conftest import free_port


def test_a_second_subscriber_on_the_same_state_is_refused(spawn, tmp_path):
    """Two subscribers on one state directory broke each other (an unfollow on the second
    gave the first sqlite3.IntegrityError): the second is refused, the first unharmed."""
    env = {"CATERVA_STATEDIR": str(tmp_path / "state")}  # the default, as without --statedir
    broker = f"mqtt://127.0.0.1:{free_port()}"  # none needed: they serve without one
    first = spawn("sub", "--broker", broker, "--http", "127.0.0.1:0", env=env)
    second = spawn("sub", "--broker", broker, "--http", "127.0.0.1:0", env=env, wait=False)
    assert second.proc.wait(timeout=15) == 1
    state = tmp_path / "state" / "subscriber"
    log = second.log_path.read_text()
    assert log == f"error: another subscriber is using the state directory {state}: give " \
        "this one its own --statedir\n", log
    assert first.proc.poll() is None
