"""`govbus consent …` against a real `govbus consent serve` process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consent.sms import latest_code, read_outbox
from govbus.process import GovbusProcess
from tests.conftest import run_cli
from tests.consent_world import ALICE, BOB, CLIENT, PURPOSE, S_PERSON, World

pytestmark = pytest.mark.e2e


def test_consent_life_on_the_command_line(tmp_path: Path) -> None:
    world = World.create(tmp_path)
    files = world.write_files(tmp_path / "keys")
    state = tmp_path / "state"
    with GovbusProcess(
        "consent", "serve",
        "--state-dir", str(state),
        "--ca", str(files["ca"]),
        "--signing-key", str(files["consent.key"]),
        "--signing-cert", str(files["consent.cert"]),
        "--tls-key", str(files["tls.key"]),
        "--tls-cert", str(files["tls.cert"]),
        env={"GOVBUS_KEY_PASSPHRASE": "test-passphrase-123"},
    ) as service:  # fmt: skip
        outbox = Path(service.info["outbox"])
        env = {
            "GOVBUS_CONSENT_ADDRESS": f"127.0.0.1:{service.info['port']}",
            "GOVBUS_CA_CERT": str(files["ca"]),
        }
        operator = [
            "--address", f"127.0.0.1:{service.info['operator_port']}",
            "--operator-key", str(files["operator.key"]),
            "--operator-cert", str(files["operator.cert"]),
        ]  # fmt: skip
        run_cli("consent", "set-phone", ALICE, "+7 701 123 45 67", *operator, env=env)

        asked = json.loads(
            run_cli(
                "consent", "request", "--iin", ALICE, "--grantee", CLIENT,
                "--service", f"{S_PERSON}:name,birth_date", "--purpose", PURPOSE,
                "--purpose-text", "birth registration", "--days", "30", "--json",
                env=env,
            ).stdout
        )  # fmt: skip
        assert asked["otp_sent_to"] == "+7******4567"
        assert asked["terms"]["scopes"] == [{"service": S_PERSON, "fields": ["name", "birth_date"]}]
        code = read_outbox(outbox)[-1].code or ""
        artefact_file = tmp_path / "consent.bin"
        confirmed = json.loads(
            run_cli(
                "consent", "confirm", asked["request_id"], "--code", code,
                "--out", str(artefact_file), "--json", env=env,
            ).stdout
        )  # fmt: skip
        assert confirmed["state"] == "active" and confirmed["id"] == asked["consent_id"]

        shown = json.loads(
            run_cli("consent", "show", asked["consent_id"], "--json", env=env).stdout
        )
        assert shown["signature"].startswith("valid") and shown["state"] == "active"
        tampered = bytearray(artefact_file.read_bytes())
        tampered[40] ^= 0x01
        (tmp_path / "tampered.bin").write_bytes(bytes(tampered))
        bad = run_cli(
            "consent", "show", "--file", str(tmp_path / "tampered.bin"), env=env, check=False
        )
        assert bad.returncode == 1

        # the citizen logs in with a code, lists and revokes
        started = json.loads(run_cli("consent", "login", "--iin", ALICE, "--json", env=env).stdout)
        token = tmp_path / "token.bin"
        run_cli(
            "consent", "login", "--challenge", started["challenge_id"],
            "--code", latest_code(outbox, started["challenge_id"]),
            "--token-out", str(token), env=env,
        )  # fmt: skip
        listed = json.loads(
            run_cli("consent", "list", "--token", str(token), "--json", env=env).stdout
        )
        assert [c["id"] for c in listed] == [asked["consent_id"]]
        revoked = json.loads(
            run_cli(
                "consent", "revoke", asked["consent_id"], "--token", str(token), "--json", env=env
            ).stdout
        )  # fmt: skip
        assert revoked["state"] == "revoked" and revoked["revocation_seq"] == 1

        # EDS: the citizen signs the request with their own key
        eds = json.loads(
            run_cli(
                "consent", "request", "--iin", ALICE, "--grantee", CLIENT, "--service", S_PERSON,
                "--purpose", PURPOSE, "--purpose-text", "birth registration", "--method", "eds",
                "--json", env=env,
            ).stdout
        )  # fmt: skip
        run_cli(
            "consent", "confirm", eds["request_id"],
            "--eds-key", str(files[f"citizen-{ALICE}.key"]),
            "--eds-cert", str(files[f"citizen-{ALICE}.cert"]), env=env,
        )  # fmt: skip
        listed = json.loads(
            run_cli(
                "consent", "list", "--iin", ALICE, "--eds-key", str(files[f"citizen-{ALICE}.key"]),
                "--eds-cert", str(files[f"citizen-{ALICE}.cert"]), "--json", env=env,
            ).stdout
        )  # fmt: skip
        assert [(c["method"], c["state"]) for c in listed] == [
            ("otp", "revoked"),
            ("eds", "active"),
        ]

        # errors are one line with the code, never a traceback
        for args, code_name in (
            (["consent", "request", "--iin", "123", "--grantee", CLIENT, "--service", S_PERSON,
              "--purpose", PURPOSE, "--purpose-text", "x"], "INVALID_IDENTIFIER"),
            (["consent", "request", "--iin", BOB, "--grantee", CLIENT, "--service", S_PERSON,
              "--purpose", PURPOSE, "--purpose-text", "x"], "FAILED_PRECONDITION"),
            (["consent", "list"], "UNAUTHENTICATED"),
            (["consent", "confirm", "nope", "--code", "123456"], "NOT_FOUND"),
        ):  # fmt: skip
            failed = run_cli(*args, env=env, check=False)
            assert failed.returncode == 1
            assert f"error: {code_name}" in failed.stderr and "Traceback" not in failed.stderr
        assert service.stop() == 0  # SIGTERM: a graceful stop
