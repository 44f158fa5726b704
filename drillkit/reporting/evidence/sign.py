"""Signing the pack's manifest with a key the team controls, and checking that signature.

`ssh-keygen -Y sign -f KEY -n drillkit-evidence manifest.json` writes `manifest.json.sig` (an SSH
signature over the manifest, which pins every artifact by its SHA-256); `ssh-keygen -Y verify`
checks it against an allowed-signers file (`<principal> <public key>` per line, as in git's
`gpg.ssh.allowedSignersFile`) or a bare public key. openssh-client is a Debian package; the key
never enters the pack and its path is the only thing drillkit keeps of it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from drillkit.errors import DrillError

NAMESPACE = "drillkit-evidence"
SIGNATURE = "manifest.json.sig"
TIMEOUT_S = 30.0
_KEY_PREFIXES = ("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-")


def ssh_keygen() -> str:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise DrillError("signing needs ssh-keygen (apt-get install -y openssh-client)")
    return exe


def sign_manifest(manifest: Path, key: Path) -> Path:
    """Sign `manifest` with the private key at `key`; returns the signature file beside it."""
    key = Path(key)
    if not key.is_file():
        raise DrillError(f"signing key {key} not found")
    proc = subprocess.run(
        [ssh_keygen(), "-Y", "sign", "-q", "-f", str(key), "-n", NAMESPACE, str(manifest)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    sig = Path(str(manifest) + ".sig")
    if proc.returncode != 0 or not sig.is_file():
        # ssh-keygen's message names the key file and the problem, never the key material
        tail = " | ".join(proc.stderr.strip().splitlines()[-2:])
        raise DrillError(f"signing with {key} failed (ssh-keygen exit {proc.returncode}): {tail}")
    return sig


def _allowed_signers(signers: Path, tmp: Path) -> Path:
    """An allowed-signers file: `signers` itself, or one made for a bare public key."""
    text = Path(signers).read_text(encoding="utf-8", errors="replace").strip()
    if text.startswith(_KEY_PREFIXES) and len(text.splitlines()) == 1:
        made = tmp / "allowed_signers"
        made.write_text(f'drillkit namespaces="{NAMESPACE}" {text}\n', encoding="utf-8")
        return made
    return Path(signers)


def verify_signature(manifest: Path, signature: Path, signers: Path) -> list[str]:
    """[] when `signature` is a valid signature of `manifest` by a key in `signers` (an
    allowed-signers file or a public key file), for drillkit's namespace; else one problem line."""
    if not Path(signers).is_file():
        return [f"allowed signers {signers} not found"]
    exe = ssh_keygen()
    with tempfile.TemporaryDirectory(prefix="drillkit-verify-") as tmp:
        allowed = _allowed_signers(Path(signers), Path(tmp))
        found = subprocess.run(
            [exe, "-Y", "find-principals", "-s", str(signature), "-f", str(allowed)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        principals = [p for p in found.stdout.split() if p]
        if found.returncode != 0 or not principals:
            return [f"signature: {SIGNATURE} was not made by any key in {signers}"]
        with open(manifest, "rb") as data:
            proc = subprocess.run(
                [
                    exe,
                    "-Y",
                    "verify",
                    "-f",
                    str(allowed),
                    "-I",
                    principals[0],
                    "-n",
                    NAMESPACE,
                    "-s",
                    str(signature),
                ],
                stdin=data,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
            )
    if proc.returncode != 0:
        return [f"signature: {SIGNATURE} does not match manifest.json (signed by {principals[0]})"]
    return []


__all__ = ["NAMESPACE", "SIGNATURE", "sign_manifest", "ssh_keygen", "verify_signature"]
