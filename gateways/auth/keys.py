"""API keys in SQLite: who may sign for which account, with what.

An `ed25519` key stores only the public key; an `hmac-sha256` key stores its
secret, so the database file is kept readable by its owner only (0600). Every
change bumps a revision number, which a running server polls to learn of
revocations within a second.
"""

import base64
import ipaddress
import os
import secrets
import sqlite3
import time
from pathlib import Path

import msgspec
from nacl.signing import SigningKey

FILE = "keys.sqlite"
TYPES = ("ed25519", "hmac-sha256")
PERMISSIONS = ("read", "trade")

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY, account INTEGER NOT NULL, type TEXT NOT NULL,
    material BLOB NOT NULL, permissions TEXT NOT NULL, ip_allow TEXT NOT NULL,
    expires_ms INTEGER, created_ms INTEGER NOT NULL, revoked_ms INTEGER);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0);
"""


class ApiKey(msgspec.Struct, frozen=True):
    key_id: str
    account: int
    type: str  # ed25519 | hmac-sha256
    material: bytes  # the Ed25519 public key, or the HMAC secret
    permissions: tuple[str, ...]
    ip_allow: tuple[str, ...]  # CIDRs; empty: any address
    expires_ms: int | None
    created_ms: int
    revoked_ms: int | None

    def usable_at(self, now_ms: int) -> bool:
        return self.revoked_ms is None and (self.expires_ms is None or now_ms < self.expires_ms)

    def allows_ip(self, ip: str) -> bool:
        if not self.ip_allow:
            return True
        address = ipaddress.ip_address(ip)
        return any(address in ipaddress.ip_network(cidr, strict=False) for cidr in self.ip_allow)

    def public(self) -> dict:
        """What `keys list` shows: never the secret."""
        out = msgspec.structs.asdict(self)
        out["material"] = (
            base64.b64encode(self.material).decode() if self.type == "ed25519" else "(secret)"
        )
        return out


class KeyStore:
    def __init__(self, data_dir: Path):
        path = Path(data_dir) / FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        if fresh:  # created owner-only before any secret is written to it
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(path, 0o600)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def _insert(self, account: int, type_: str, material: bytes, permissions, ip_allow,
                expires_ms: int | None) -> ApiKey:  # fmt: skip
        if type_ not in TYPES:
            raise ValueError(f"key type must be one of {TYPES}")
        if not permissions or set(permissions) - set(PERMISSIONS):
            raise ValueError(f"permissions must be some of {PERMISSIONS}")
        for cidr in ip_allow:
            ipaddress.ip_network(cidr, strict=False)  # refuses what is not a CIDR
        key = ApiKey(
            key_id="fg" + secrets.token_hex(8), account=account, type=type_, material=material,
            permissions=tuple(sorted(set(permissions))), ip_allow=tuple(ip_allow),
            expires_ms=expires_ms, created_ms=time.time_ns() // 1_000_000, revoked_ms=None,
        )  # fmt: skip
        self.db.execute("BEGIN")
        self.db.execute(
            "INSERT INTO keys VALUES (?,?,?,?,?,?,?,?,?)",
            (key.key_id, key.account, key.type, key.material, ",".join(key.permissions),
             ",".join(key.ip_allow), key.expires_ms, key.created_ms, None),
        )  # fmt: skip
        self._bump()
        return key

    def create(self, account: int, type_: str = "ed25519", permissions=PERMISSIONS,
               ip_allow=(), expires_ms: int | None = None,
               secret: bytes | None = None) -> tuple[ApiKey, bytes]:  # fmt: skip
        """A new key and its secret (the Ed25519 seed, or the HMAC secret),
        which the caller shows once. `secret` imports one instead of drawing it."""
        seed = secrets.token_bytes(32) if secret is None else secret
        if type_ == "ed25519":
            material = bytes(SigningKey(seed).verify_key)
        else:
            material = seed
        return self._insert(account, type_, material, permissions, ip_allow, expires_ms), seed

    def add(self, account: int, public_key: bytes, permissions=PERMISSIONS, ip_allow=(),
            expires_ms: int | None = None) -> ApiKey:  # fmt: skip
        """Register a public key the client made (Ed25519, 32 bytes)."""
        if len(public_key) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")
        return self._insert(account, "ed25519", public_key, permissions, ip_allow, expires_ms)

    def revoke(self, key_id: str) -> bool:
        self.db.execute("BEGIN")
        done = self.db.execute(
            "UPDATE keys SET revoked_ms = ? WHERE key_id = ? AND revoked_ms IS NULL",
            (time.time_ns() // 1_000_000, key_id),
        ).rowcount
        self._bump()
        return bool(done)

    def _bump(self):
        self.db.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
        self.db.execute("COMMIT")

    def revision(self) -> int:
        return self.db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0]

    def all(self) -> list[ApiKey]:
        rows = self.db.execute("SELECT * FROM keys ORDER BY created_ms, key_id").fetchall()
        return [ApiKey(key_id, account, type_, bytes(material),
                       tuple(p for p in permissions.split(",") if p),
                       tuple(c for c in ip_allow.split(",") if c), expires_ms, created_ms,
                       revoked_ms)
                for key_id, account, type_, material, permissions, ip_allow, expires_ms,
                created_ms, revoked_ms in rows]  # fmt: skip

    def close(self):
        self.db.close()


DEMO_CREDENTIALS = "demo-credentials.json"
TARGET_COMP_ID = "FLOWGATE"


def write_demo_credentials(store: KeyStore, data_dir: Path, accounts: list[int]) -> Path | None:
    """On a data directory without keys: one Ed25519 and one HMAC key per
    account, written with their secrets to demo-credentials.json (0600), as
    API.md's "Running it" describes. Returns the file, or None if keys exist."""
    if store.all():
        return None
    entries = []
    for account in accounts:
        for type_ in TYPES:
            key, secret = store.create(account, type_)
            fix = type_ == "ed25519"  # FIX logs on with Ed25519 keys only
            entries.append({
                "account": account, "key": key.key_id, "type": type_,
                "secret": base64.b64encode(secret).decode(),
                "sender_comp_id": f"ACCOUNT{account}" if fix else None,
                "target_comp_id": TARGET_COMP_ID if fix else None,
            })  # fmt: skip
    path = Path(data_dir) / DEMO_CREDENTIALS
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(msgspec.json.format(msgspec.json.encode(entries), indent=2) + b"\n")
    return path
