"""Evidence integrity: the tamper matrix (each change caught by verify-pack, with the recorded
pack hash and the team's allowed signers), signing with ssh-keygen, and the PDF fitting its
pages (rendered to PNG with pdftoppm: no drawn pixel in the right margin)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from drillkit import cli
from drillkit.reporting.evidence import (
    MANIFEST,
    MANIFEST_HASH,
    build_pack,
    find_chromium,
    pack_hash,
    sha256_file,
    verify_pack,
)
from drillkit.reporting.evidence.sign import NAMESPACE, SIGNATURE, sign_manifest

sys.path.insert(0, str(Path(__file__).parent))
from test_reporting import decode_png, make_error_result, make_result

needs_ssh_keygen = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None, reason="needs ssh-keygen (openssh-client)"
)


def keypair(folder: Path, name: str) -> tuple[Path, Path]:
    """A fresh ed25519 key (no passphrase) and an allowed-signers file naming it."""
    key = folder / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    pub = (folder / f"{name}.pub").read_text().strip()
    signers = folder / f"{name}.allowed_signers"
    signers.write_text(f'{name}@example.org namespaces="{NAMESPACE}" {pub}\n')
    return key, signers


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen")
    folder = tmp_path_factory.mktemp("keys")
    return {"team": keypair(folder, "team"), "mallory": keypair(folder, "mallory")}


@pytest.fixture(scope="module")
def signed_pack(
    tmp_path_factory: pytest.TempPathFactory, keys: dict[str, tuple[Path, Path]]
) -> Path:
    out = tmp_path_factory.mktemp("signed") / "pack"
    return build_pack(
        [make_result(lost=0), make_result(scenario_id="disk-full", lost=2, rpo_objective=0)],
        out,
        operator="ops",
        run_id="run-1",
        environment={"postgres_version": "15.20"},
        pdf=False,
        signing_key=keys["team"][0],
    )


@pytest.fixture
def pack(signed_pack: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "pack"
    shutil.copytree(signed_pack, copy)
    return copy


def regenerate_manifest(pack: Path) -> None:
    """What a forger does after editing: new SHA-256s in manifest.json, a new manifest.sha256."""
    manifest = json.loads((pack / MANIFEST).read_text())
    for rel in list(manifest["artifacts"]):
        path = pack / rel
        manifest["artifacts"][rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    data = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    (pack / MANIFEST).write_bytes(data)
    (pack / MANIFEST_HASH).write_text(f"{hashlib.sha256(data).hexdigest()}  {MANIFEST}\n")


def edit_file(pack: Path, keys: dict) -> None:
    (pack / "index.html").write_text((pack / "index.html").read_text().replace("FAILED", "PASSED"))


def delete_file(pack: Path, keys: dict) -> None:
    (pack / "timeline-disk-full.png").unlink()


def add_file(pack: Path, keys: dict) -> None:
    (pack / "addendum.html").write_text("<p>all drills passed</p>")


def edit_and_regenerate(pack: Path, keys: dict) -> None:
    edit_file(pack, keys)
    regenerate_manifest(pack)


def swap_signature(pack: Path, keys: dict) -> None:
    """The team's own signature, but of another manifest (another pack's)."""
    other = pack.parent / "other-manifest.json"
    other.write_text('{"format": "drillkit-evidence-pack/1", "artifacts": {}}\n')
    sig = sign_manifest(other, keys["team"][0])
    shutil.copy(sig, pack / SIGNATURE)


def replace_key(pack: Path, keys: dict) -> None:
    """Edit, regenerate the manifest and re-sign it with a key of the forger's own."""
    edit_and_regenerate(pack, keys)
    (pack / SIGNATURE).unlink()
    sign_manifest(pack / MANIFEST, keys["mallory"][0])


def drop_signature(pack: Path, keys: dict) -> None:
    (pack / SIGNATURE).unlink()


TAMPERING: dict[str, tuple[Callable[[Path, dict], None], str]] = {
    "edit a file": (edit_file, "tampered: index.html (sha256 differs)"),
    "delete a file": (delete_file, "missing: timeline-disk-full.png"),
    "add a file": (add_file, "unlisted: addendum.html"),
    "regenerate the manifest": (edit_and_regenerate, "pack hash differs from the recorded one"),
    "swap the signature": (swap_signature, "signature: manifest.json.sig does not match"),
    "replace the key": (replace_key, "was not made by any key in"),
    "drop the signature": (drop_signature, "unsigned: no manifest.json.sig"),
}


@needs_ssh_keygen
def test_the_untouched_signed_pack_verifies(
    pack: Path, keys: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (pack / SIGNATURE).is_file()
    assert SIGNATURE not in json.loads((pack / MANIFEST).read_text())["artifacts"]
    digest = pack_hash(pack)
    assert (
        verify_pack(pack, expected_hash=f"sha256:{digest}", allowed_signers=keys["team"][1]) == []
    )
    args = ["verify-pack", str(pack), "--expected-hash", digest]
    assert cli.main([*args, "--allowed-signers", str(keys["team"][1])]) == 0
    assert "INTACT (checked: hashes, recorded pack hash, signature)" in capsys.readouterr().out
    # a bare public key works as well as an allowed-signers file
    pub = Path(str(keys["team"][0]) + ".pub")
    assert verify_pack(pack, allowed_signers=pub) == []


@needs_ssh_keygen
@pytest.mark.parametrize("change", list(TAMPERING), ids=lambda c: c.replace(" ", "-"))
def test_tamper_matrix(
    change: str, signed_pack: Path, pack: Path, keys: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded = pack_hash(signed_pack)
    tamper, expected = TAMPERING[change]
    tamper(pack, keys)
    problems = verify_pack(pack, expected_hash=recorded, allowed_signers=keys["team"][1])
    assert any(expected in line for line in problems), problems
    code = cli.main(
        [
            "verify-pack",
            str(pack),
            "--expected-hash",
            f"sha256:{recorded}",
            "--allowed-signers",
            str(keys["team"][1]),
        ]
    )
    assert code == 1
    assert expected in capsys.readouterr().out


@needs_ssh_keygen
def test_a_regenerated_manifest_fools_hashes_alone_but_not_the_signature(
    pack: Path, keys: dict
) -> None:
    edit_and_regenerate(pack, keys)
    assert verify_pack(pack) == []  # what the issue saw: INTACT without the recorded hash
    problems = verify_pack(pack, allowed_signers=keys["team"][1])
    assert problems == [
        "signature: manifest.json.sig does not match manifest.json (signed by team@example.org)"
    ]


def test_verify_pack_of_a_missing_folder_is_bad_input(tmp_path: Path) -> None:
    assert cli.main(["verify-pack", str(tmp_path / "nope")]) == 4


def test_signing_with_a_missing_key_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"signing key .* not found"):
        build_pack(
            [make_result()],
            tmp_path / "p",
            operator="ops",
            run_id="r",
            environment={},
            pdf=False,
            signing_key=tmp_path / "no-such-key",
        )
    assert not (tmp_path / "p").exists()  # no half-built pack


# --- the PDF fits its pages -----------------------------------------------------------------


def drawn_columns(png: bytes) -> np.ndarray:
    """Per pixel column of a page image: True where anything differs from white."""
    pixels = decode_png(png)[..., :3]
    return (pixels < 0.94).any(axis=2).any(axis=0)


@pytest.mark.skipif(
    find_chromium() is None or shutil.which("pdftoppm") is None,
    reason="needs chromium and pdftoppm (poppler-utils; make engine installs them)",
)
def test_pdf_pages_leave_the_right_margin_blank(tmp_path: Path) -> None:
    # what cut the Verdict column: long objectives ("3600 s (1.0 h)"), long ids, digests
    long_id = "partition-failover-with-a-very-long-scenario-identifier"
    env = {
        "image_primary": "drillkit/postgres@sha256:" + "ab12" * 16,
        "kernel": "6.1.0-28-cloud-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 x86_64",
    }
    results = [
        make_result(lost=0, rto_objective=3600, rpo_objective=900),
        make_result(
            scenario_id=long_id, lost=4, rpo_objective=0, rto_objective=1800, failed_checks=("db",)
        ),
        make_error_result(),
    ]
    for result in results:
        result.environment.update(env)
    pack = build_pack(
        results, tmp_path / "pack", operator="ops", run_id="run-1", environment=env, pdf=True
    )
    assert (pack / "evidence.pdf").is_file()
    subprocess.run(
        ["pdftoppm", "-r", "100", "-png", str(pack / "evidence.pdf"), str(tmp_path / "page")],
        check=True,
        timeout=120,
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 3
    for page in pages:
        cols = drawn_columns(page.read_bytes())
        width = cols.size
        # the 12 mm @page margin plus 3 of the 4 mm print gutter (evidence CSS): Chromium clips
        # what overflows at the margin, so a cut table draws into this band; one that fits not
        margin = int(width * 15 / 210)
        assert cols.any(), f"{page.name} is blank"
        assert not cols[width - margin :].any(), (
            f"{page.name}: drawn pixels in the right margin (cut content), "
            f"last drawn column {np.flatnonzero(cols)[-1]} of {width}"
        )


@needs_ssh_keygen
def test_finish_signs_and_verify_pack_checks_hash_and_signature(
    tmp_path: Path, keys: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    make_result(lost=0).save(tmp_path / "runs" / "s9" / "db-kill-restart.json")
    args = ["finish", "--results", str(tmp_path), "--session", "s9", "--no-pdf"]
    assert cli.main([*args, "--signing-key", str(keys["team"][0])]) == 0
    out = capsys.readouterr().out
    digest = out.split("pack hash: ")[1].split()[0]
    assert "(signed)" in out
    pack = tmp_path / "evidence" / "s9"
    check = ["verify-pack", str(pack), "--expected-hash", digest]
    assert cli.main([*check, "--allowed-signers", str(keys["team"][1])]) == 0
    assert cli.main([*check, "--allowed-signers", str(keys["mallory"][1])]) == 1
