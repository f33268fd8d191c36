"""Reviewer accounts in Redis: argon2 password hashes, roles, and slowed-down failed sign-ins.

{ns}:review:user:{name}           hash: password (argon2id), role, blur
{ns}:review:signin:fails:{name}   failed sign-ins in the current window (counter, TTL)
{ns}:review:signin:lock:{name}    present while sign-in for this name is refused (TTL)
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Literal

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict

from pipeline.errors import ConfigError

Role = Literal["reviewer", "admin"]
ROLES: tuple[Role, ...] = ("reviewer", "admin")

USER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
#: Shorter passwords are refused: argon2 slows guessing, it cannot save "1234".
MIN_PASSWORD = 10
#: Failed sign-ins allowed before each further one locks the name for a while.
FREE_FAILURES = 3
#: The lock doubles with each failure past the free ones, up to this.
MAX_LOCK_S = 300
#: Failures are forgotten this long after the last one.
FAILURE_WINDOW_S = 900


class User(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    role: Role
    blur: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class UserStore:
    """Accounts of one namespace. argon2id with the library's defaults (RFC 9106 profile)."""

    def __init__(
        self, client: redis.Redis[str], namespace: str, hasher: PasswordHasher | None = None
    ) -> None:
        self.redis = client
        self.prefix = f"{namespace}:review:user:"
        self.fails_prefix = f"{namespace}:review:signin:fails:"
        self.lock_prefix = f"{namespace}:review:signin:lock:"
        self.hasher = hasher or PasswordHasher()

    @cached_property
    def _decoy(self) -> str:
        """Verified against when the name is unknown, so a miss costs what a hit costs."""
        return self.hasher.hash("not a password of anyone")

    def add(self, name: str, password: str, role: Role) -> bool:
        """Create the account, or set a new password and role; True if it is new."""
        if not USER_NAME.match(name):
            msg = f"user name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'"
            raise ConfigError(msg)
        if role not in ROLES:
            msg = f"role {role!r}: must be one of {', '.join(ROLES)}"
            raise ConfigError(msg)
        if len(password) < MIN_PASSWORD:
            msg = f"password for {name}: at least {MIN_PASSWORD} characters"
            raise ConfigError(msg)
        key = self.prefix + name
        created = not self.redis.exists(key)
        self.redis.hset(key, mapping={"password": self.hasher.hash(password), "role": role})
        return created

    def get(self, name: str) -> User | None:
        fields = self.redis.hmget(self.prefix + name, ["role", "blur"])
        role, blur = fields
        if role not in ROLES:
            return None
        return User(name=name, role=role, blur=blur == "1")

    def set_blur(self, name: str, blur: bool) -> None:
        self.redis.hset(self.prefix + name, "blur", "1" if blur else "0")

    def locked_for_s(self, name: str) -> float:
        """Seconds until this name may try again; 0 if it may now."""
        ms = int(self.redis.pttl(self.lock_prefix + name))
        return max(ms, 0) / 1000

    def verify(self, name: str, password: str) -> User | None:
        """The user if the password is theirs; a failure counts towards locking the name.

        Callers check `locked_for_s` first and do not call this while it is positive.
        """
        valid_name = USER_NAME.match(name) is not None
        stored = self.redis.hget(self.prefix + name, "password") if valid_name else None
        try:
            ok = self.hasher.verify(stored or self._decoy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            ok = False
        user = self.get(name) if ok else None
        if user is None:
            if valid_name:  # a name no account can have leaves no counter behind
                self._failed(name)
            return None
        self.redis.delete(self.fails_prefix + name, self.lock_prefix + name)
        return user

    def _failed(self, name: str) -> None:
        fails_key = self.fails_prefix + name
        with self.redis.pipeline() as pipe:
            pipe.incr(fails_key)
            pipe.expire(fails_key, FAILURE_WINDOW_S)
            failures = int(pipe.execute()[0])
        if failures >= FREE_FAILURES:
            lock_s = min(2 ** (failures - FREE_FAILURES), MAX_LOCK_S)
            self.redis.set(self.lock_prefix + name, "1", ex=lock_s)
