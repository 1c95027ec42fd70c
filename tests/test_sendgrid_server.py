"""The SendGrid test server answers the real sendgrid library the way SendGrid does."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.client import RemoteDisconnected
from pathlib import Path
from typing import Any

import pytest
import sendgrid
from python_http_client.exceptions import (
    BadRequestsError,
    ForbiddenError,
    HTTPError,
    InternalServerError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid.helpers.mail import Category, CustomArg, Header, Mail

from sendgrid_server import AUTH_ERROR, Fault, NetworkModel, SendGridTestServer

API_KEY = "SG.test"


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib (under python_http_client) honours *_proxy variables; a CI proxy must never
    # see these requests.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[SendGridTestServer]:
    with SendGridTestServer(api_key=API_KEY) as running:
        yield running


def client_for(
    server: SendGridTestServer, api_key: str = API_KEY, timeout: float | None = None
) -> sendgrid.SendGridAPIClient:
    client = sendgrid.SendGridAPIClient(api_key, host=server.url)
    # SendGridAPIClient has no timeout argument. python_http_client.Client copies its
    # `timeout` into each child it builds per URL segment, so setting it on the root client
    # covers every call, including client.send(); post(..., timeout=) also works per call.
    # A timeout surfaces as a bare TimeoutError, not a python_http_client HTTPError.
    client.client.timeout = timeout
    return client


def post(client: sendgrid.SendGridAPIClient, body: Any) -> Any:
    return client.client.mail.send.post(request_body=body)


def message(to: str = "reader@example.com", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "personalizations": [{"to": [{"email": to}]}],
        "from": {"email": "news@example.com", "name": "Example News"},
        "subject": "Today's digest",
        "content": [
            {"type": "text/plain", "value": "Top stories"},
            {"type": "text/html", "value": "<p>Top stories</p>"},
        ],
    }
    body.update(overrides)
    return body


def rejected(client: sendgrid.SendGridAPIClient, body: Any) -> dict[str, Any]:
    with pytest.raises(BadRequestsError) as info:
        post(client, body)
    assert info.value.status_code == 400
    return json.loads(info.value.body)


def fields(answer: dict[str, Any]) -> list[str | None]:
    return [error["field"] for error in answer["errors"]]


def test_valid_send_is_accepted_with_202_empty_body_and_unique_message_ids(
    server: SendGridTestServer,
) -> None:
    client = client_for(server)

    first = post(client, message("a@example.com"))
    second = post(client, message("b@example.com"))

    assert (first.status_code, first.body) == (202, b"")
    ids = [first.headers["X-Message-Id"], second.headers["X-Message-Id"]]
    assert all(ids) and ids[0] != ids[1]
    assert [r.message_id for r in server.requests] == ids
    assert server.recipients() == ["a@example.com", "b@example.com"]
    assert server.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_message_built_with_the_library_mail_helper_is_accepted(
    server: SendGridTestServer,
) -> None:
    mail = Mail(
        from_email="news@example.com",
        to_emails=["a@example.com", "b@example.com"],
        subject="Digest",
        plain_text_content="text",
        html_content="<p>html</p>",
        is_multiple=True,
    )
    # Message-level custom_args is an object here although the published schema says string.
    mail.custom_arg = CustomArg("run", "42")
    mail.category = Category("digest")
    mail.header = Header("List-Unsubscribe", "<mailto:unsubscribe@example.com>")

    assert client_for(server).send(mail).status_code == 202
    # The helper inserts each personalization at the front, so recipients come out reversed.
    assert server.recipients() == ["b@example.com", "a@example.com"]


def test_wrong_api_key_is_401_with_sendgrid_error_body(server: SendGridTestServer) -> None:
    with pytest.raises(UnauthorizedError) as info:
        post(client_for(server, api_key="SG.wrong"), message())

    assert info.value.status_code == 401
    assert json.loads(info.value.body) == {
        "errors": [{"message": AUTH_ERROR, "field": None, "help": None}]
    }
    assert server.accepted_bodies() == []
    assert server.requests[0].status == 401


def test_missing_authorization_is_401(server: SendGridTestServer) -> None:
    request = urllib.request.Request(
        f"{server.url}/v3/mail/send",
        data=json.dumps(message()).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)

    assert info.value.code == 401
    assert json.loads(info.value.read())["errors"][0]["message"] == AUTH_ERROR


def test_invalid_json_is_400(server: SendGridTestServer) -> None:
    client = client_for(server)
    # A str body is sent as-is when the Content-Type is not application/json.
    with pytest.raises(BadRequestsError) as info:
        client.client.mail.send.post(
            request_body="{not json", request_headers={"Content-Type": "text/plain"}
        )

    assert json.loads(info.value.body)["errors"][0]["message"] == "Bad Request"
    assert server.requests[0].body is None


def test_1001_personalizations_is_400(server: SendGridTestServer) -> None:
    body = message(personalizations=[{"to": [{"email": f"r{i}@example.com"}]} for i in range(1001)])

    assert "personalizations" in fields(rejected(client_for(server), body))


def test_1000_personalizations_are_accepted(server: SendGridTestServer) -> None:
    body = message(personalizations=[{"to": [{"email": f"r{i}@example.com"}]} for i in range(1000)])

    assert post(client_for(server), body).status_code == 202
    assert len(server.recipients()) == 1000


def test_1001_recipients_across_to_cc_bcc_is_400(server: SendGridTestServer) -> None:
    body = message(
        personalizations=[
            {
                "to": [{"email": f"to{i}@example.com"} for i in range(500)],
                "cc": [{"email": f"cc{i}@example.com"} for i in range(300)],
            },
            {
                "to": [{"email": f"to{i}@example.org"} for i in range(100)],
                "bcc": [{"email": f"bcc{i}@example.com"} for i in range(101)],
            },
        ]
    )

    assert fields(rejected(client_for(server), body)) == ["personalizations"]


def test_personalization_without_to_is_400(server: SendGridTestServer) -> None:
    body = message(personalizations=[{"cc": [{"email": "cc@example.com"}]}])

    assert fields(rejected(client_for(server), body)) == ["personalizations.0.to"]


def test_same_address_twice_in_one_personalization_is_400(server: SendGridTestServer) -> None:
    body = message(
        personalizations=[{"to": [{"email": "a@example.com"}], "bcc": [{"email": "A@example.com"}]}]
    )

    assert fields(rejected(client_for(server), body)) == ["personalizations.0.bcc"]


@pytest.mark.parametrize("name", ["Reply-To", "CONTENT-TYPE", "x-sg-id", "Dkim-Signature"])
def test_reserved_message_header_is_400(server: SendGridTestServer, name: str) -> None:
    body = message(headers={name: "x"})

    assert fields(rejected(client_for(server), body)) == ["headers"]


def test_reserved_personalization_header_is_400(server: SendGridTestServer) -> None:
    body = message(personalizations=[{"to": [{"email": "a@example.com"}], "headers": {"BCC": "x"}}])

    assert fields(rejected(client_for(server), body)) == ["personalizations.0.headers"]


def test_11_categories_is_400(server: SendGridTestServer) -> None:
    body = message(categories=[f"c{i}" for i in range(11)])

    assert "categories" in fields(rejected(client_for(server), body))


def test_category_over_255_chars_is_400(server: SendGridTestServer) -> None:
    body = message(categories=["ok", "x" * 256])

    assert "categories.1" in fields(rejected(client_for(server), body))


def one_personalization(**extra: Any) -> dict[str, Any]:
    return message(personalizations=[{"to": [{"email": "a@example.com"}], **extra}])


def test_substitutions_over_10000_bytes_is_400(server: SendGridTestServer) -> None:
    # 5 + 9,996 = 10,001 bytes of keys plus values.
    body = one_personalization(substitutions={"-key-": "v" * 9996})

    assert fields(rejected(client_for(server), body)) == ["personalizations.0.substitutions"]


def test_substitutions_of_exactly_10000_bytes_are_accepted(server: SendGridTestServer) -> None:
    # SendGrid documents the limit as "may not exceed 10,000 bytes".
    body = one_personalization(substitutions={"-key-": "v" * 9995})

    assert post(client_for(server), body).status_code == 202


def test_custom_args_over_10000_bytes_with_message_level_is_400(
    server: SendGridTestServer,
) -> None:
    body = message(
        custom_args={"run": "r" * 6000},
        personalizations=[{"to": [{"email": "a@x.com"}], "custom_args": {"id": "i" * 4000}}],
    )

    assert fields(rejected(client_for(server), body)) == ["personalizations.0.custom_args"]


def test_missing_from_email_is_400(server: SendGridTestServer) -> None:
    body = message(**{"from": {"name": "No address"}})

    assert "from.email" in fields(rejected(client_for(server), body))


def test_missing_subject_is_400(server: SendGridTestServer) -> None:
    body = message()
    del body["subject"]

    assert fields(rejected(client_for(server), body)) == ["subject"]


def test_subject_in_every_personalization_replaces_message_subject(
    server: SendGridTestServer,
) -> None:
    body = message(personalizations=[{"to": [{"email": "a@x.com"}], "subject": "Hi"}])
    del body["subject"]

    assert post(client_for(server), body).status_code == 202


def test_missing_content_is_400(server: SendGridTestServer) -> None:
    assert fields(rejected(client_for(server), message(content=[]))) == ["content"]


def test_html_before_plain_text_is_400(server: SendGridTestServer) -> None:
    body = message(
        content=[{"type": "text/html", "value": "<p>x</p>"}, {"type": "text/plain", "value": "x"}]
    )

    assert fields(rejected(client_for(server), body)) == ["content"]


def test_body_over_20_mb_is_413(server: SendGridTestServer) -> None:
    body = message(content=[{"type": "text/plain", "value": "x" * (20 * 1024 * 1024)}])

    with pytest.raises(PayloadTooLargeError) as info:
        post(client_for(server), body)

    assert info.value.status_code == 413
    assert server.requests[0].status == 413


def test_schema_violation_is_400_naming_the_path(server: SendGridTestServer) -> None:
    assert server.schema_checked
    body = message(
        send_at="tomorrow",
        attachments=[{"content": "aGk=", "filename": "a.txt", "disposition": "sideways"}],
    )

    answer = rejected(client_for(server), body)

    assert fields(answer) == ["attachments.0.disposition", "send_at"]


def test_a_missing_schema_file_is_an_error_not_a_skipped_check(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SendGridTestServer(api_key=API_KEY, schema_path=tmp_path / "absent.json")


def test_schema_none_turns_the_schema_check_off() -> None:
    with SendGridTestServer(api_key=API_KEY, schema_path=None) as server:
        assert server.schema_checked is False
        assert post(client_for(server), message(send_at="tomorrow")).status_code == 202


def test_scripted_faults_are_answered_in_order_then_normal_service_resumes(
    server: SendGridTestServer,
) -> None:
    client = client_for(server)
    server.script(
        500,
        503,
        Fault(429, headers={"Retry-After": "1", "X-RateLimit-Reset": "1700000000"}),
        400,
        401,
        403,
        413,
    )
    expected = [
        InternalServerError,
        ServiceUnavailableError,
        TooManyRequestsError,
        BadRequestsError,
        UnauthorizedError,
        ForbiddenError,
        PayloadTooLargeError,
    ]

    for error_class in expected:
        with pytest.raises(HTTPError) as info:
            post(client, message())
        assert type(info.value) is error_class
        assert set(json.loads(info.value.body)["errors"][0]) == {"message", "field", "help"}
        if error_class is TooManyRequestsError:
            assert info.value.headers["Retry-After"] == "1"
            assert info.value.headers["X-RateLimit-Reset"] == "1700000000"

    assert post(client, message()).status_code == 202
    assert [r.status for r in server.requests] == [500, 503, 429, 400, 401, 403, 413, 202]
    assert len(server.accepted_bodies()) == 1
    assert server.pending_script() == []


@pytest.mark.slow  # waits out a real timeout
def test_slow_answer_times_out_the_client_but_counts_as_accepted(
    server: SendGridTestServer,
) -> None:
    server.script(Fault("slow", delay=0.6))
    client = client_for(server, timeout=0.1)

    with pytest.raises(TimeoutError):
        post(client, message("slow@example.com"))

    assert server.recipients() == ["slow@example.com"]
    assert server.requests[0].message_id
    # Let the server write its late answer into the abandoned socket, then check it still serves.
    time.sleep(0.7)
    assert post(client, message("next@example.com")).status_code == 202
    assert server.recipients() == ["slow@example.com", "next@example.com"]


def test_dropped_connection_gets_no_answer_and_is_recorded(server: SendGridTestServer) -> None:
    server.script(Fault("drop"))
    client = client_for(server)

    with pytest.raises(RemoteDisconnected):
        post(client, message("dropped@example.com"))

    assert server.requests[0].status is None
    assert server.requests[0].body["personalizations"][0]["to"][0]["email"] == (
        "dropped@example.com"
    )
    assert server.accepted_bodies() == []
    assert post(client, message()).status_code == 202


def test_fail_when_answers_matching_bodies_with_the_status(server: SendGridTestServer) -> None:
    server.fail_when(lambda body: body["personalizations"][0]["to"][0]["email"] == "b@x.com", 500)
    client = client_for(server)

    post(client, message("a@x.com"))
    with pytest.raises(InternalServerError):
        post(client, message("b@x.com"))

    assert server.recipients() == ["a@x.com"]


def test_concurrent_sends_from_many_threads_are_all_recorded(
    server: SendGridTestServer,
) -> None:
    def send_batch(worker: int) -> None:
        client = client_for(server, timeout=10)
        for i in range(10):
            post(client, message(f"w{worker}-{i}@example.com"))

    threads = [threading.Thread(target=send_batch, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    expected = {f"w{w}-{i}@example.com" for w in range(8) for i in range(10)}
    assert sorted(server.recipients()) == sorted(expected)
    assert len({r.message_id for r in server.requests}) == 80


@pytest.mark.slow
def test_concurrent_sends_from_two_processes_are_all_recorded(
    server: SendGridTestServer,
) -> None:
    script = textwrap.dedent(
        """
        import sys, sendgrid
        url, tag = sys.argv[1], sys.argv[2]
        client = sendgrid.SendGridAPIClient("SG.test", host=url)
        client.client.timeout = 10
        for i in range(20):
            client.client.mail.send.post(request_body={
                "personalizations": [{"to": [{"email": f"{tag}{i}@example.com"}]}],
                "from": {"email": "news@example.com"},
                "subject": "s",
                "content": [{"type": "text/plain", "value": "v"}],
            })
        """
    )
    env = {"no_proxy": "127.0.0.1,localhost", "PATH": "/usr/bin:/bin"}
    processes = [
        subprocess.Popen([sys.executable, "-c", script, server.url, tag], env=env)
        for tag in ("p", "q")
    ]

    assert [process.wait(timeout=60) for process in processes] == [0, 0]
    assert len(server.accepted_bodies()) == 40
    assert sorted(server.recipients()) == sorted(
        f"{tag}{i}@example.com" for tag in "pq" for i in range(20)
    )


@pytest.mark.slow  # waits out a real timeout
def test_server_writes_nothing_to_stderr(
    server: SendGridTestServer, capfd: pytest.CaptureFixture[str]
) -> None:
    client = client_for(server, timeout=0.1)
    server.script(500, Fault("drop"), Fault("slow", delay=0.3))
    for _ in range(3):
        with pytest.raises((HTTPError, OSError)):
            post(client, message())
    time.sleep(0.4)
    post(client, message())

    assert capfd.readouterr().err == ""


def test_the_network_model_charges_handshakes_and_slow_start_to_a_connections_first_request():
    far = NetworkModel(rtt=0.1, server=0.1)
    # 300 KB: 14.6 -> 29.2 -> 58.4 -> 116.8 -> 233.6 -> 467.2 KB, five doublings.
    assert far.cost(300_000, first_on_connection=True) == pytest.approx(8 * 0.1 + 0.1)
    assert far.cost(10_000, first_on_connection=True) == pytest.approx(3 * 0.1 + 0.1)
    assert far.cost(300_000, first_on_connection=False) == pytest.approx(0.1 + 0.1)


def test_a_far_server_delays_answers_and_counts_connections_apart_from_requests():
    far = NetworkModel(rtt=0.05, server=0.05)
    with SendGridTestServer(api_key=API_KEY, network=far) as running:
        started = time.perf_counter()
        assert post(client_for(running), message()).status_code == 202
        # python_http_client opens a connection per request: every request is a first one.
        assert time.perf_counter() - started >= far.cost(1000, first_on_connection=True)
        post(client_for(running), message())
        with urllib.request.urlopen(f"{running.url}/_stats") as answer:
            stats = json.load(answer)
    assert (stats["requests"], stats["connections"]) == (2, 2)
