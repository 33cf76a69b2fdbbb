"""CURVE keys for TCP: the daemon's key pair and the allow-list of client public keys.

keys dir layout (see bridge.paths.default_keys_dir):
  server.key, server.key_secret      the daemon's pair (clients need server.key)
  allowed/<name>.key                 public keys of clients the daemon accepts
  clients/<name>.key[_secret]        client pairs made here by `neurender keys add` (copy to the client)
Files are zmq.auth certificate files (z85 keys); secrets are 0600.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import zmq
import zmq.auth

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _check_name(name: str) -> None:
    if not _NAME.match(name) or name in ("server", ".", ".."):
        raise ValueError(f"key name {name!r}: use 1-64 of A-Z a-z 0-9 _ . - (and not 'server')")


def _create_pair(directory: Path, name: str) -> tuple[Path, Path]:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(directory), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def ensure_server_keys(keys_dir: Path) -> tuple[bytes, bytes]:
    """The daemon's (public, secret) z85 keys, created on first use."""
    secret = keys_dir / "server.key_secret"
    if not secret.exists():
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _create_pair(keys_dir, "server")
    public, sec = zmq.auth.load_certificate(str(secret))
    return public, sec


def add_client(keys_dir: Path, name: str) -> tuple[Path, Path]:
    """New client pair in clients/, its public key allow-listed in allowed/."""
    _check_name(name)
    if (keys_dir / "allowed" / f"{name}.key").exists():
        raise FileExistsError(f"a client named {name!r} is already allowed")
    public, secret = _create_pair(keys_dir / "clients", name)
    allow(keys_dir, name, zmq.auth.load_certificate(str(public))[0])
    return public, secret


def allow(keys_dir: Path, name: str, public_key: bytes) -> Path:
    """Allow-list a public key made elsewhere (z85, 40 chars)."""
    _check_name(name)
    if len(public_key) != 40:
        raise ValueError("a CURVE public key is 40 z85 characters")
    zmq.utils.z85.decode(public_key)  # raises on a malformed key
    d = keys_dir / "allowed"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = d / f"{name}.key"
    path.write_text(f"# neurender client {name}\nmetadata\ncurve\n    public-key = \"{public_key.decode()}\"\n")
    return path


def revoke(keys_dir: Path, name: str) -> bool:
    _check_name(name)
    path = keys_dir / "allowed" / f"{name}.key"
    if path.exists():
        path.unlink()
        return True
    return False


def allowed(keys_dir: Path) -> dict[str, bytes]:
    d = keys_dir / "allowed"
    if not d.is_dir():
        return {}
    return {p.stem: zmq.auth.load_certificate(str(p))[0] for p in sorted(d.glob("*.key"))}


def load_public(key: bytes | str | os.PathLike) -> bytes:
    """A z85 public key given directly or as a certificate file path."""
    if isinstance(key, bytes) and len(key) == 40:
        return key
    if isinstance(key, str) and len(key) == 40 and not os.path.exists(key):
        return key.encode()
    return zmq.auth.load_certificate(str(key))[0]


def load_pair(keys: tuple | str | os.PathLike) -> tuple[bytes, bytes]:
    """(public, secret) given directly or as a `.key_secret` file path."""
    if isinstance(keys, tuple):
        pub, sec = keys
        return (pub.encode() if isinstance(pub, str) else pub), (sec.encode() if isinstance(sec, str) else sec)
    pub, sec = zmq.auth.load_certificate(str(keys))
    if sec is None:
        raise ValueError(f"{keys} holds no secret key")
    return pub, sec
