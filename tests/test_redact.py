"""core/redact.py: secrets by name and by value, masked wherever they are written."""

from __future__ import annotations

import pytest

from auto_infer.core import redact

SECRET_NAMES = ["GITHUB_PAT", "GH_TOKEN", "HF_TOKEN", "HFTOKEN", "OPENAI_API_KEY", "X_API_KEY", "APIKEY",
                "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "MYSQLPASSWORD", "DB_PASS", "PGPASSWORD", "REDIS_PWD",
                "SENTRY_DSN", "SESSION_COOKIE", "AZURE_CREDENTIALS", "hf-token", "my.secret", "Basic_Auth"]
PLAIN_NAMES = ["PATH", "LD_LIBRARY_PATH", "TOKENIZERS_PARALLELISM", "MAX_TOKENS", "BYPASS", "COMPAT",
               "CUDA_VISIBLE_DEVICES", "HF_HUB_OFFLINE", "DB_URL", "api_key_env", "SSL_KEYFILE", "HF_TOKEN_PATH",
               "KEYBOARD", "NCCL_SOCKET_IFNAME"]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_token_like_names_are_secret(name: str) -> None:
    assert redact.is_secret_name(name)
    assert redact.redact_env({name: "v4lue-1234"}) == {name: "***"}


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_ordinary_names_are_not(name: str) -> None:
    assert not redact.is_secret_name(name)
    assert redact.redact_env({name: "plain"}) == {name: "plain"}


@pytest.mark.parametrize(("text", "leak"), [
    ("postgres://app:pw-1234@db:5432/x", "pw-1234"),
    ("https://ghp_0123456789abcdefghij0123@github.com/o/r.git", "ghp_0123456789abcdefghij0123"),
    ("http://u:p@ss-w0rd@proxy:3128", "ss-w0rd"),               # an '@' inside the password
    ("see http://a:hunter22@h/x and http://b:letmein9@h/y", "hunter22"),
    ("see http://a:hunter22@h/x and http://b:letmein9@h/y", "letmein9"),
    ("https://h/x?access_token=qq-7777&b=1", "qq-7777"),
    ("GITHUB_PAT=zz-secret-8 srv --port 1", "zz-secret-8"),
    ('{"HF_TOKEN": "hfv-9999"}', "hfv-9999"),
    ("Authorization: Bearer abcdefgh12345678", "abcdefgh12345678"),
    ("token hf_abcdefghijklmnopqrstuvwxyz in the text", "hf_abcdefghijklmnopqrstuvwxyz"),
    ("key sk-proj-abcdefghijklmnopqrstuvwx", "sk-proj-abcdefghijklmnopqrstuvwx"),
])
def test_credentials_are_masked_by_their_shape(text: str, leak: str) -> None:
    out = redact.scrub(text, [])
    assert leak not in out and "***" in out
    assert redact.has_credentials(text)


@pytest.mark.parametrize(
    "text",
    [
        "http://host:3128/path",
        "a plain log line: 12 tokens/s",
        "risk-assessment-framework-x",
        "ssh to user@host",
        "TOKENIZERS_PARALLELISM=false",
        "--max-total-tokens=4096",
    ],
)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert redact.scrub(text, []) == text
    assert not redact.has_credentials(text)


def test_argv_masks_secret_flags_broadly_and_credentials_in_values() -> None:
    argv = ["srv", "--hf-token", "hx-1", "--db-password=dp-2", "--enable-auth", "--port", "8000",
            "--tokenizer-path", "/m/tok", "--db", "mysql://root:rp-3333@h/db", "--max-total-tokens", "4096"]
    out = redact.redact_argv(argv)
    assert out == ["srv", "--hf-token", "***", "--db-password=***", "--enable-auth", "--port", "8000",
                   "--tokenizer-path", "/m/tok", "--db", "mysql://root:***@h/db", "--max-total-tokens", "4096"]


def test_secret_values_collects_names_and_url_passwords_for_the_log_filter() -> None:
    found = redact.secret_values("api-key-1", env={"GITHUB_PAT": "pat-1234", "DB_URL": "postgres://u:dbpw-5678@h/x",
                                                   "NOTE": "plain"})
    assert found == ["api-key-1", "pat-1234", "dbpw-5678"]


def test_proxy_urls_keep_host_and_user() -> None:
    assert redact.redact_env({"HTTPS_PROXY": "http://me:pw-0001@proxy:3128,http://h:1"}) == {
        "HTTPS_PROXY": "http://me:***@proxy:3128,http://h:1"}


def test_proxy_urls_without_a_scheme_are_masked_too() -> None:
    """requests and curl take ``user:pw@proxy:3128`` as a proxy: its password is as secret."""
    assert redact.redact_url("me:pw-0001@proxy:3128") == "me:***@proxy:3128"
    assert redact.redact_url("tok-0001@proxy:3128") == "***@proxy:3128"
    assert redact.redact_url("proxy:3128") == "proxy:3128"
    assert redact.redact_env({"https_proxy": "me:pw-0001@proxy:3128,h:1", "NO_PROXY": "localhost"}) == {
        "https_proxy": "me:***@proxy:3128,h:1", "NO_PROXY": "localhost"}
    assert redact.secret_values(env={"HTTP_PROXY": "me:pw-0001@proxy:3128", "ALL_PROXY": "tok-0002@p:1"}) == [
        "pw-0001", "tok-0002"]


def test_a_proxy_password_with_a_slash_or_a_hash_is_masked_whole() -> None:
    """A proxy has no path: all before its last ``@`` is user-info, even an unencoded ``/`` or ``#``
    (``urlsplit`` would end the host at the ``/`` and show the password as a path)."""
    for value in ("http://me:pw/0001@proxy:3128", "me:pw/0001@proxy:3128", "socks5h://me:pw#0001@proxy:1080"):
        shown = redact.redact_env({"HTTPS_PROXY": value})["HTTPS_PROXY"]
        assert "pw" not in shown and shown.endswith(":***@" + value.rsplit("@", 1)[1]), shown
        assert value.split(":")[-2].split("@")[0] in redact.secret_values(env={"HTTPS_PROXY": value})
    assert redact.redact_proxy("localhost,.corp") == "localhost,.corp"
