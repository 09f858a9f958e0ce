"""The registry from the command line, as an operator and an agency would use it."""

from __future__ import annotations

import re
from pathlib import Path

from govbus.crypto.pki import load_certificate
from govbus.globalconf import verify_global_conf
from govbus.process import GovbusProcess
from tests.conftest import PASSPHRASE, run_cli
from tests.test_registry_descriptors import PERSON_SERVICE, person_descriptor_set

GBDFL = "KZ/GOV/040340123459"
TSON = "KZ/GOV/990140000017"
SERVICE = f"{GBDFL}/gbdfl/person/v1"
CLIENT = f"{TSON}/con"


def test_operator_and_agency_flow_on_the_command_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    init = run_cli("registry", "init", "--state", str(state))
    assert "operator admin key" in init.stdout
    again = run_cli("registry", "init", "--state", str(state), check=False)
    assert again.returncode == 1 and "CONFIG_INVALID" in again.stderr

    with GovbusProcess(
        "registry",
        "serve",
        "--state",
        str(state),
        "--regen-interval",
        "0.1",
        env={"GOVBUS_KEY_PASSPHRASE": PASSPHRASE.decode()},
    ) as registry:
        ca = state / "pki" / "ca.cert.pem"
        env = {
            "GOVBUS_REGISTRY_ADMIN": registry.info["admin"],
            "GOVBUS_REGISTRY": registry.info["public"],
            "GOVBUS_CA": str(ca),
            "GOVBUS_ADMIN_CERT": str(state / "admin" / "operator.cert.pem"),
            "GOVBUS_ADMIN_KEY": str(state / "admin" / "operator.key.pem"),
        }

        def cli(*args: str, check: bool = True, **extra: str) -> str:
            """Output with whitespace collapsed: error lines wrap at the terminal width."""
            result = run_cli(*args, env={**env, **extra}, check=check)
            return " ".join((result.stdout + result.stderr).split())

        assert "operator (operator)" in cli("registry", "whoami")
        cli("member", "add", GBDFL, "--name", "ГБД ФЛ")
        cli("member", "add", TSON, "--name", "ЦОН")
        cli("subsystem", "add", f"{GBDFL}/gbdfl", "--name", "Person registry")
        cli("subsystem", "add", CLIENT, "--name", "Operator application")

        keys = tmp_path / "ss1"
        cli("server", "csr", f"{GBDFL}/ss1", "--out", str(keys))
        assert "BEGIN ENCRYPTED PRIVATE KEY" in (keys / "tls.key.pem").read_text()
        registered = cli(
            "server",
            "register",
            f"{GBDFL}/ss1",
            "--address",
            "127.0.0.1:7001",
            "--tls-csr",
            str(keys / "tls.csr.pem"),
            "--signing-csr",
            str(keys / "signing.csr.pem"),
        )
        assert "registered at 127.0.0.1:7001" in registered
        tls_serial = f"{load_certificate(keys / 'tls.cert.pem').serial_number:x}"

        descriptors = tmp_path / "persons.binpb"
        descriptors.write_bytes(person_descriptor_set(tmp_path / "proto"))
        refused = cli(
            "service",
            "publish",
            SERVICE,
            "--grpc-service",
            "kz.gov.testpersons.v1.Nope",
            "--descriptor-set",
            str(descriptors),
            "--server",
            f"{GBDFL}/ss1",
            check=False,
        )
        assert "error: INVALID_REQUEST" in refused
        assert "does not contain the service kz.gov.testpersons.v1.Nope" in refused
        published = cli(
            "service",
            "publish",
            SERVICE,
            "--grpc-service",
            PERSON_SERVICE,
            "--descriptor-set",
            str(descriptors),
            "--server",
            f"{GBDFL}/ss1",
            "--personal-data",
            "--consent-policy",
            "consent-or-legal-basis",
            "--idempotent",
            "GetPerson",
            "--fields",
            "GetPerson=full_name,address",
            "--deadline-ms",
            "3000",
            "--breaker-window",
            "20",
            "--breaker-failure-rate",
            "0.5",
        )
        assert f"/{PERSON_SERVICE}/WatchPerson" in published and "server-streaming" in published
        cli("access", "grant", "--service", SERVICE, "--client", CLIENT)
        cli("group", "add", "group:tson")
        cli("group", "add-member", "group:tson", CLIENT)
        cli("access", "grant", "--service", SERVICE, "--client", "group:tson")
        added = cli(
            "legal-basis",
            "add",
            "--client",
            CLIENT,
            "--service",
            SERVICE,
            "--law",
            "УПК РК, ст. 1",
            "--hidden-until",
            "2030-01-01",
        )
        assert re.search(r"legal basis lb-[0-9a-f]+ added", added)
        bad_date = cli(
            "legal-basis",
            "add",
            "--client",
            CLIENT,
            "--service",
            SERVICE,
            "--law",
            "x",
            "--valid-until",
            "next week",
            check=False,
        )
        assert "error: INVALID_REQUEST" in bad_date

        run_cli(
            "pki",
            "issue",
            "consent",
            "consent",
            "--out",
            str(tmp_path / "consent"),
            "--dir",
            str(state / "pki"),
        )
        cli(
            "registry",
            "set-consent-service",
            "--address",
            "127.0.0.1:7100",
            "--consent-cert",
            str(tmp_path / "consent.cert.pem"),
        )
        cli("cert", "revoke", tls_serial, "--reason", "key compromise")

        # A member administrator of TSON cannot touch GBDFL.
        cli("registry", "admin-cert", TSON, "--out", str(tmp_path / "tson-admin"))
        as_tson = {
            "GOVBUS_ADMIN_CERT": str(tmp_path / "tson-admin.cert.pem"),
            "GOVBUS_ADMIN_KEY": str(tmp_path / "tson-admin.key.pem"),
        }
        assert f"{TSON} (member-admin)" in cli("registry", "whoami", **as_tson)
        denied = cli("subsystem", "add", f"{GBDFL}/evil", "--name", "x", check=False, **as_tson)
        assert "error: ACCESS_DENIED (REGISTRY)" in denied
        denied = cli(
            "access", "revoke", "--service", SERVICE, "--client", CLIENT, check=False, **as_tson
        )
        assert "error: ACCESS_DENIED" in denied

        assert "covers every change" in cli("registry", "wait-published")
        exported = tmp_path / "conf.bin"
        assert "written to" in cli("conf", "export", "--out", str(exported))
        view = verify_global_conf(exported.read_bytes(), [load_certificate(ca)])
        assert view.may_call(CLIENT, SERVICE)
        assert view.conf.consent_service_address == "127.0.0.1:7100"
        assert int(tls_serial, 16) in view.anchor.revoked
        shown = cli("conf", "show", "--file", str(exported))
        for expected in (
            "signature verified",
            "ГБД ФЛ",
            SERVICE,
            "group:tson",
            "УПК РК, ст. 1",
            "2030-01-01",
            "consent-or-legal-basis",
            "127.0.0.1:7001",
        ):
            assert expected in shown, expected
        assert "ГБД ФЛ" in cli("conf", "show")  # straight from the registry

        tampered = tmp_path / "tampered.bin"
        data = bytearray(exported.read_bytes())
        data[data.index("ЦОН".encode())] ^= 0x01
        tampered.write_bytes(bytes(data))
        refused = cli("conf", "show", "--file", str(tampered), check=False)
        assert "error: GLOBAL_CONF_INVALID" in refused and "Traceback" not in refused

        assert "ЦОН" in cli("discover", "members")
        assert SERVICE in cli("discover", "services", "--provider", GBDFL)
        assert "server-streaming" in cli("discover", "methods", SERVICE)
        allowed = cli("discover", "allowed", CLIENT)
        assert f"/{PERSON_SERVICE}/GetPerson" in allowed and "group:tson" in allowed
        protoset = tmp_path / "protoset.binpb"
        cli("discover", "descriptor", SERVICE, "--out", str(protoset))
        assert protoset.read_bytes()[:2] == descriptors.read_bytes()[:2]
        unknown = cli("discover", "methods", f"{GBDFL}/gbdfl/none/v1", check=False)
        assert "error: UNKNOWN_SERVICE" in unknown

        trail = cli("registry", "audit-trail", "--limit", "100")
        for action in (
            "member.add",
            "server.register",
            "service.publish",
            "access.grant",
            "legal-basis.add",
            "certificate.revoke",
            "consent-service.set",
            "admin-certificate.issue",
        ):
            assert action in trail, action
        tson_trail = cli("registry", "audit-trail", **as_tson)
        assert "service.publish" not in tson_trail
        assert registry.stop() == 0  # SIGTERM: a graceful stop
