"""The suppression list: salted hashes of forgotten addresses, so that none is ever added again.

The salt is random, made once by the m002 migration and kept in the database (table
`suppression_salt`). It is not derived from the secret key, so rotating DIGEST_SECRET_KEY
never lets a forgotten address back in; the database alone can check an address, but no
address can be read back from it.
"""

from __future__ import annotations

import hashlib
import hmac

from sqlite_utils import Database

from ..clock import to_db, utcnow


def address_hash(db: Database, address: str) -> str:
    """HMAC-SHA256 of the address in lower case, keyed with the database's salt."""
    salt = db.execute("SELECT salt FROM suppression_salt WHERE id = 1").fetchone()[0]
    message = address.strip().lower().encode("utf-8")
    return hmac.new(salt.encode("ascii"), message, hashlib.sha256).hexdigest()


def is_suppressed(db: Database, address: str) -> bool:
    return (
        db.execute(
            "SELECT 1 FROM suppressions WHERE address_hash = ?", [address_hash(db, address)]
        ).fetchone()
        is not None
    )


def suppress(db: Database, address: str, reason: str) -> None:
    """Keep the address's hash (once) so that add, import and sign-up refuse it from now on."""
    db.execute(
        "INSERT OR IGNORE INTO suppressions (address_hash, reason, created_at) VALUES (?, ?, ?)",
        [address_hash(db, address), reason, to_db(utcnow())],
    )
