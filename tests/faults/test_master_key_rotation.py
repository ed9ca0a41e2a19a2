"""Rotating TWOAPI_MASTER_KEY, which encrypts tenants' own provider keys (BYOK).

The procedure (docs/billing.md, "Rotating the master key"): give every gateway the new
key as TWOAPI_MASTER_KEY and the old one as TWOAPI_MASTER_KEY_PREVIOUS; run
`twoapi provider-keys rotate`, which re-seals each stored key under the new master key
as a `ProviderCredential.Replaced` event; then drop the old key. Tenants' requests
are served with their own keys at every step, and no master key or provider key is
ever written in clear to an output, a log or the ledger.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from ledger.application import Ledger
from ledger.credentials import CredentialCipher, CredentialError, MasterKeyError, parse_master_keys
from ledger.events import ProviderCredential
from tests.faults.serve_process import TWOAPI, ServeProcess, clean_env, simulated
from tests.tenancy.conftest import ADMIN_TOKEN, Admin

OLD_MASTER_KEY = "6a" * 32  # hex
NEW_MASTER_KEY = base64.urlsafe_b64encode(bytes(range(100, 132))).decode()  # base64
OWN_KEY = "sk-acme-own-openai-key-8d02b7"
REFUSED_KEY = "invalid"  # the simulator answers this key with OpenAI's own 401
GAMMA_KEY = "sk-gamma-own-openai-key-5e91aa"
SECRETS = [OLD_MASTER_KEY, NEW_MASTER_KEY, OWN_KEY, GAMMA_KEY, ADMIN_TOKEN,
           base64.b64encode(bytes.fromhex(OLD_MASTER_KEY)).decode(), bytes(range(100, 132)).hex()]


class Deployment:
    """Gateway processes of one deployment (one ledger), started with the master key
    settings of each step, and the `twoapi` command beside them."""

    def __init__(self, tmp_path: Path, simulator_url: str, database_url: str | None) -> None:
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir()
        self.log = tmp_path / "everything.log"  # every process's output, appended
        self.database_url = database_url
        self.simulator_url = simulator_url
        self.running: list[ServeProcess] = []

    def env(self, master_key: str | None, previous: str | None = None) -> dict[str, str | None]:
        return {"TWOAPI_MASTER_KEY": master_key, "TWOAPI_MASTER_KEY_PREVIOUS": previous,
                "DATABASE_URL": self.database_url, "TWOAPI_ADMIN_TOKEN": ADMIN_TOKEN}

    def gateway(self, master_key: str, previous: str | None = None) -> ServeProcess:
        gateway = ServeProcess(self.data_dir, self.log, **simulated(self.simulator_url),
                               **self.env(master_key, previous))
        self.running.append(gateway)
        return gateway

    def rotate(self, master_key: str, previous: str | None, *extra: str) -> tuple[int, dict[str, str]]:
        """`twoapi provider-keys rotate`: its exit code and each key's outcome by tenant."""
        env = clean_env(TWOAPI_DATA_DIR=str(self.data_dir), **self.env(master_key, previous))
        done = subprocess.run([TWOAPI, "provider-keys", "rotate", *extra], env=env, capture_output=True,
                              text=True, timeout=60)
        with self.log.open("a") as log:
            log.write(done.stdout + done.stderr)
        lines = [orjson.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        return done.returncode, {line["tenant"]: line["outcome"] for line in lines}

    def credential_events(self, tenant: str) -> list[dict[str, Any]]:
        ledger = Ledger.open(self.database_url, self.data_dir)
        try:
            return ledger.event_dicts(ProviderCredential.create_id(tenant, "openai"))
        finally:
            ledger.close()

    def stop(self) -> None:
        for gateway in self.running:
            gateway.stop()


@pytest.fixture
def deployment(tmp_path: Path, simulator, store_url: str | None) -> Iterator[Deployment]:
    running = Deployment(tmp_path, simulator.url, store_url)
    yield running
    running.stop()


def ask(gateway: ServeProcess, key: str) -> tuple[int, str | None]:
    """A chat request with the official SDK: (status, error code)."""
    client = openai.OpenAI(base_url=gateway.api_url, api_key=key, max_retries=0, timeout=30)
    try:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    except openai.APIStatusError as error:
        return error.status_code, error.code
    return 200, None


def test_rotating_the_master_key_keeps_byok_requests_served_and_retires_the_old_key(deployment: Deployment):
    # Before: one master key; acme's own key works, beta's own key is refused by the
    # provider (which shows that the tenant's key, not the gateway's, reached it).
    before = deployment.gateway(OLD_MASTER_KEY)
    admin = Admin(before.url)
    acme, beta = admin.tenant("acme"), admin.tenant("beta")
    admin.ok("PUT", "/admin/tenants/acme/provider-keys/openai", json={"api_key": OWN_KEY})
    admin.ok("PUT", "/admin/tenants/beta/provider-keys/openai", json={"api_key": REFUSED_KEY})
    assert ask(before, acme.key) == (200, None)
    assert ask(before, beta.key) == (502, "upstream_auth_error")
    before.stop()

    # Step 1: the new key is current, the old one previous. Old ciphertexts still open;
    # a key stored now is sealed under the new one.
    during = deployment.gateway(NEW_MASTER_KEY, previous=OLD_MASTER_KEY)
    admin = Admin(during.url)
    gamma = admin.tenant("gamma")
    admin.ok("PUT", "/admin/tenants/gamma/provider-keys/openai", json={"api_key": GAMMA_KEY})
    assert ask(during, acme.key) == (200, None)
    assert ask(during, beta.key) == (502, "upstream_auth_error")
    assert ask(during, gamma.key) == (200, None)

    # An operator who forgot the previous key: nothing opens, nothing is touched.
    assert deployment.rotate(NEW_MASTER_KEY, None) == (
        1, {"acme": "unreadable", "beta": "unreadable", "gamma": "current"})
    # A dry run says what is due and writes nothing.
    assert deployment.rotate(NEW_MASTER_KEY, OLD_MASTER_KEY, "--dry-run") == (
        0, {"acme": "due", "beta": "due", "gamma": "current"})
    assert [e["event"] for e in deployment.credential_events("acme")] == ["Stored"]

    # Step 2: re-seal, one Replaced event per key still under the old master key, while
    # the gateway serves; running it again changes nothing.
    assert deployment.rotate(NEW_MASTER_KEY, OLD_MASTER_KEY) == (
        0, {"acme": "rotated", "beta": "rotated", "gamma": "current"})
    assert deployment.rotate(NEW_MASTER_KEY, OLD_MASTER_KEY) == (
        0, {"acme": "current", "beta": "current", "gamma": "current"})
    events = deployment.credential_events("acme")
    assert [e["event"] for e in events] == ["Stored", "Replaced"]
    assert [e["event"] for e in deployment.credential_events("gamma")] == ["Stored"]
    new_only, old_only = CredentialCipher.from_env(NEW_MASTER_KEY), CredentialCipher.from_env(OLD_MASTER_KEY)
    assert new_only.open("acme", "openai", events[-1]["ciphertext"]) == OWN_KEY
    with pytest.raises(CredentialError):
        old_only.open("acme", "openai", events[-1]["ciphertext"])
    assert ask(during, acme.key) == (200, None)
    during.stop()

    # Step 3: the old key is gone. Every tenant's own key still works.
    after = deployment.gateway(NEW_MASTER_KEY)
    assert ask(after, acme.key) == (200, None)
    assert ask(after, beta.key) == (502, "upstream_auth_error")
    assert ask(after, gamma.key) == (200, None)
    # A gateway still on the retired key opens none of them: it fails closed (503)
    # rather than serve acme with the gateway's own provider key.
    stale = deployment.gateway(OLD_MASTER_KEY)
    assert ask(stale, acme.key)[0] == 503
    assert ask(stale, gamma.key)[0] == 503

    # No secret in clear anywhere: every process's output (the gateways' logs and the
    # command's), the ledger's credential events, what the Admin API shows.
    shown = httpx.get(after.url + "/admin/tenants/acme", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text
    deployment.stop()
    logged = deployment.log.read_text(errors="replace")
    assert "provider_key_unusable" in logged  # the stale gateway said why it refused
    ledger_text = str([deployment.credential_events(t) for t in ("acme", "beta", "gamma")])
    for text in (logged, ledger_text, shown):
        for secret in SECRETS:
            assert secret not in text


def test_a_key_ring_seals_under_its_first_key_and_opens_under_any():
    old, new = CredentialCipher.from_env(OLD_MASTER_KEY), CredentialCipher.from_env(NEW_MASTER_KEY)
    ring = CredentialCipher.from_env(f"{NEW_MASTER_KEY},{OLD_MASTER_KEY}")
    sealed_old = old.seal("acme", "openai", OWN_KEY)
    assert ring.open_with_index("acme", "openai", sealed_old) == (OWN_KEY, 1)
    sealed_ring = ring.seal("acme", "openai", OWN_KEY)
    assert new.open_with_index("acme", "openai", sealed_ring) == (OWN_KEY, 0)
    with pytest.raises(CredentialError):
        old.open("acme", "openai", sealed_ring)
    with pytest.raises(CredentialError):
        ring.open("beta", "openai", sealed_old)  # still bound to its tenant
    assert ring.key_ids[0] == new.key_ids[0] and ring.key_ids[1] == old.key_ids[0]


@pytest.mark.parametrize("ring", [
    f",{OLD_MASTER_KEY}",  # TWOAPI_MASTER_KEY_PREVIOUS alone: nothing to seal with
    f"{NEW_MASTER_KEY},{OLD_MASTER_KEY[:-2]}",  # a previous key of the wrong length
    f"{OLD_MASTER_KEY[:-1]}z",  # not hex, not base64 of 32 bytes
])
def test_a_malformed_key_ring_is_refused_without_echoing_a_key(ring: str):
    with pytest.raises(MasterKeyError) as refused:
        parse_master_keys(ring)
    for part in ring.split(","):
        if part:
            assert part not in str(refused.value)
