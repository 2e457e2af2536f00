"""Users and roles of an annotation store: scrypt password hashes, authentication, who may do what."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from annotate.login import MIN_PASSWORD_LENGTH
from annotate.store.records import ROLES, NotFound, PermissionDenied, ValidationError


def hash_password(password: str, salt: bytes | None = None, algo: str | None = None) -> tuple[str, bytes, bytes]:
    salt = salt or secrets.token_bytes(16)
    algo = algo or "scrypt"
    if algo == "scrypt":
        try:
            digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
            return algo, salt, digest
        except (ValueError, AttributeError):  # OpenSSL without scrypt
            algo = "pbkdf2_sha256"
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 200_000)
    return "pbkdf2_sha256", salt, digest


class UsersMixin:
    """The users table (part of :class:`annotate.store.Store`)."""

    @property
    def auth_enabled(self) -> bool:
        if self._enforce is not None:
            return self._enforce
        return self._conn().execute("SELECT COUNT(*) FROM users").fetchone()[0] > 0

    def add_user(self, name: str, password: str, role: str = "labeler") -> None:
        if role not in ROLES:
            raise ValidationError(f"role must be one of {ROLES}, got {role!r}")
        name = name.strip()
        if not name or name.startswith("model:"):
            raise ValidationError("user names must be non-empty and not start with 'model:'")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise ValidationError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
        algo, salt, digest = hash_password(password)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO users(name, role, algo, salt, hash, created_at) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET role=excluded.role, algo=excluded.algo, salt=excluded.salt, "
                "hash=excluded.hash",
                (name, role, algo, salt, digest, time.time()),
            )

    def set_role(self, name: str, role: str) -> None:
        if role not in ROLES:
            raise ValidationError(f"role must be one of {ROLES}, got {role!r}")
        with self._tx() as conn:
            if conn.execute("UPDATE users SET role=? WHERE name=?", (role, name)).rowcount == 0:
                raise NotFound(f"no user {name!r}")

    def remove_user(self, name: str) -> None:
        with self._tx() as conn:
            if conn.execute("DELETE FROM users WHERE name=?", (name,)).rowcount == 0:
                raise NotFound(f"no user {name!r}")

    def list_users(self) -> list[tuple[str, str]]:
        return [(r["name"], r["role"]) for r in self._conn().execute("SELECT name, role FROM users ORDER BY name")]

    def authenticate(self, name: str, password: str) -> bool:
        row = self._conn().execute("SELECT algo, salt, hash FROM users WHERE name=?", (name,)).fetchone()
        if row is None:
            hash_password(password)  # same cost either way
            return False
        _algo, _salt, digest = hash_password(password, salt=row["salt"], algo=row["algo"])
        return hmac.compare_digest(digest, row["hash"])

    def role_of(self, name: str | None) -> str | None:
        if not name:
            return None
        row = self._conn().execute("SELECT role FROM users WHERE name=?", (name,)).fetchone()
        return None if row is None else row["role"]

    def can(self, user: str | None, action: str) -> bool:
        """action: 'label' (edit points, labeler statuses), 'review' (approve/reject), 'admin' (import, users)."""
        if not self.auth_enabled:
            return True
        role = self.role_of(user)
        if role is None:
            return False
        need = {"label": 0, "review": 1, "admin": 2}[action]
        return ROLES.index(role) >= need

    def require(self, user: str | None, action: str) -> None:
        if not self.can(user, action):
            if not user or self.role_of(user) is None:
                raise PermissionDenied("log in first: with authentication on, anonymous users cannot change anything")
            raise PermissionDenied(f"user {user!r} ({self.role_of(user)}) may not {action}")
