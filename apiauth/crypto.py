"""Encryption of secret fields: AES-256-GCM under a key ring, bound to row and field."""

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = "v1"


class KeyRingError(Exception):
    """A key ring setting that cannot be used."""


class DecryptionError(Exception):
    """A ciphertext that no key of the ring opens for this row and field."""


def key_id(raw_key):
    """Return the short public identifier of a key, stored beside each ciphertext."""
    return hashlib.sha256(raw_key).hexdigest()[:8]


def _decode_key(text):
    """Decode one key in the Fernet format (32 bytes, URL-safe base64)."""
    try:
        raw = base64.urlsafe_b64decode(text.encode())
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != 32:
        raise KeyRingError(
            "Each APIAUTH_ENCRYPTION_KEYS entry must be 32 random bytes in URL-safe base64 "
            "(as Fernet.generate_key() makes them)."
        )
    return raw


class KeyRing:
    """An ordered set of keys: the first encrypts, every one decrypts."""

    def __init__(self, encoded_keys):
        if not encoded_keys:
            raise KeyRingError("The encryption key ring is empty.")
        self._keys = {}
        for text in encoded_keys:
            raw = _decode_key(text)
            self._keys.setdefault(key_id(raw), AESGCM(raw))
        self.primary_id = key_id(_decode_key(encoded_keys[0]))

    @property
    def key_ids(self):
        """Identifiers of every key in the ring, primary first."""
        return list(self._keys)

    def encrypt(self, plaintext, context):
        """Encrypt plaintext for the row and field named by context."""
        nonce = os.urandom(12)
        sealed = self._keys[self.primary_id].encrypt(nonce, plaintext.encode(), context.encode())
        payload = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{FORMAT_VERSION}.{self.primary_id}.{payload}"

    def decrypt(self, token, context):
        """Decrypt a value sealed for exactly this row and field."""
        try:
            version, kid, payload = token.split(".", 2)
            cipher = self._keys[kid]
            blob = base64.urlsafe_b64decode(payload.encode())
            return cipher.decrypt(blob[:12], blob[12:], context.encode()).decode()
        except (ValueError, KeyError, InvalidTag) as error:
            raise DecryptionError(f"cannot decrypt {context.split(':')[-1]}") from error

    @staticmethod
    def key_id_of(token):
        """Return the identifier of the key that sealed a ciphertext."""
        return token.split(".", 2)[1]
