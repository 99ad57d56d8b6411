"""Canonical encoding and signing of Symbiont transactions, written from
docs/ledger-format.md alone (sections 1, 3 and 4). No Rust helper is used.

The canonical encoding is bincode 2 with little-endian fixed-width integers:
strings and sequences are prefixed with their length as u64, enums with their
variant index as u32, fixed-size byte arrays (keys, hashes, signatures) are
written bare, Option is 00 / 01+value, maps are a u64 count then the entries
in strictly ascending key order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import blake3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

TX_DOMAIN = "symbiont/tx/v1"
MAX_SIGNED_TX_BYTES = 65_536


# --- section 1: primitive encoders -------------------------------------------

def u8(v: int) -> bytes:
    return struct.pack("<B", v)


def u16(v: int) -> bytes:
    return struct.pack("<H", v)


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def i64(v: int) -> bytes:
    return struct.pack("<q", v)


def boolean(v: bool) -> bytes:
    return b"\x01" if v else b"\x00"


def string(s: str) -> bytes:
    b = s.encode("utf-8")
    return u64(len(b)) + b


def fixed(b: bytes, n: int) -> bytes:
    if len(b) != n:
        raise ValueError(f"expected {n} bytes, got {len(b)}")
    return bytes(b)


def hash32(b: bytes) -> bytes:
    return fixed(b, 32)


def pubkey(b: bytes) -> bytes:
    return fixed(b, 32)


def option(v, enc) -> bytes:
    return b"\x00" if v is None else b"\x01" + enc(v)


def seq(items, enc) -> bytes:
    items = list(items)
    return u64(len(items)) + b"".join(enc(x) for x in items)


def str_map(m: Dict[str, object], enc_value) -> bytes:
    """map<string, V>: keys in strictly ascending bytewise order."""
    keys = sorted(m, key=lambda k: k.encode("utf-8"))
    return u64(len(keys)) + b"".join(string(k) + enc_value(m[k]) for k in keys)


def variant(index: int, *fields: bytes) -> bytes:
    return u32(index) + b"".join(fields)


def H(canonical_bytes: bytes) -> bytes:
    """Section 2: BLAKE3-256 of canonical bytes."""
    return blake3.blake3(canonical_bytes).digest()


# --- payload types (section 4) -----------------------------------------------

KEY_ROLE_OPERATOR = 0
KEY_ROLE_METER = 1


@dataclass
class ListingTerms:
    kind: str
    quantity_per_period: int
    price: int
    delivery_point: str
    quality: Dict[str, int]
    period_ms: int
    periods: int
    valid_until_ms: int

    def encode(self) -> bytes:
        return (
            string(self.kind)
            + u64(self.quantity_per_period)
            + i64(self.price)
            + string(self.delivery_point)
            + str_map(self.quality, i64)
            + u64(self.period_ms)
            + u32(self.periods)
            + u64(self.valid_until_ms)
        )


# --- TxKind: a tagged tuple (variant index, encoded fields) --------------------

class TxKind:
    """Constructors for the TxKind variants, each returning its canonical
    bytes (u32 variant index then the fields in order)."""

    @staticmethod
    def authorize_key(firm: str, key: bytes, role: int) -> bytes:
        return variant(0, string(firm), pubkey(key), u32(role))

    @staticmethod
    def revoke_key(firm: str, key: bytes) -> bytes:
        return variant(1, string(firm), pubkey(key))

    @staticmethod
    def vote(proposal: bytes, approve: bool) -> bytes:
        return variant(3, hash32(proposal), boolean(approve))

    @staticmethod
    def grant_licence(firm: str, ewc_code: str, expires_ms: int) -> bytes:
        return variant(5, string(firm), string(ewc_code), u64(expires_ms))

    @staticmethod
    def post_offer(listing: ListingTerms) -> bytes:
        return variant(6, listing.encode())

    @staticmethod
    def post_request(listing: ListingTerms) -> bytes:
        return variant(7, listing.encode())

    @staticmethod
    def accept(listing: bytes) -> bytes:
        return variant(8, hash32(listing))

    @staticmethod
    def withdraw(listing: bytes) -> bytes:
        return variant(9, hash32(listing))

    @staticmethod
    def countersign(contract: bytes) -> bytes:
        return variant(11, hash32(contract))

    @staticmethod
    def terminate(contract: bytes) -> bytes:
        return variant(12, hash32(contract))

    @staticmethod
    def record_availability(contract: bytes, period: int, quantity: int) -> bytes:
        return variant(13, hash32(contract), u32(period), u64(quantity))

    @staticmethod
    def record_delivery(contract: bytes, period: int, quantity: int) -> bytes:
        """The metered delivery: the billing meter's quantity D for a
        contract period, in thousandths of the kind's unit."""
        return variant(14, hash32(contract), u32(period), u64(quantity))

    @staticmethod
    def record_check(contract: bytes, period: int, quantity: int) -> bytes:
        return variant(15, hash32(contract), u32(period), u64(quantity))

    @staticmethod
    def settle_period(contract: bytes, period: int) -> bytes:
        return variant(16, hash32(contract), u32(period))

    @staticmethod
    def acknowledge_payment_firms(payer: str, payee: str, amount: int) -> bytes:
        # Account = 0 Firm(id: string) | 1 Pool(pool: Hash)
        return variant(17, variant(0, string(payer)), variant(0, string(payee)), i64(amount))

    @staticmethod
    def create_pool(name: str, keys: Dict[str, int], start_ms: int, period_ms: int) -> bytes:
        return variant(18, string(name), str_map(keys, u16), u64(start_ms), u64(period_ms))

    @staticmethod
    def post_pool_amount(pool: bytes, period: int, amount: int) -> bytes:
        return variant(19, hash32(pool), u32(period), i64(amount))

    @staticmethod
    def split_pool(pool: bytes, period: int) -> bytes:
        return variant(20, hash32(pool), u32(period))

    @staticmethod
    def open_dispute(contract: bytes, period: int, reason: str) -> bytes:
        return variant(21, hash32(contract), u32(period), string(reason))

    @staticmethod
    def resolve_dispute(contract: bytes, period: int, adjustment: int) -> bytes:
        return variant(22, hash32(contract), u32(period), i64(adjustment))

    @staticmethod
    def join_pool(pool: bytes) -> bytes:
        return variant(23, hash32(pool))

    @staticmethod
    def object_pool_amount(pool: bytes, period: int, posting: bytes) -> bytes:
        return variant(24, hash32(pool), u32(period), hash32(posting))

    @staticmethod
    def resolve_pool_objection(pool: bytes, period: int, posting: bytes, accept: bool) -> bytes:
        return variant(25, hash32(pool), u32(period), hash32(posting), boolean(accept))


# --- TxBody, sign bytes, SignedTx (section 4) ------------------------------------

def encode_body(chain_id: str, nonce: int, kind: bytes) -> bytes:
    """TxBody = chain_id: string, nonce: u64, kind: TxKind."""
    return string(chain_id) + u64(nonce) + kind


def sign_bytes(body: bytes) -> bytes:
    """canonical(("symbiont/tx/v1", body)): u64 14, the tag, then the body."""
    return string(TX_DOMAIN) + body


def encode_signed(body: bytes, signer: bytes, signature: bytes) -> bytes:
    """SignedTx = body, signer (32 bytes), signature (64 bytes)."""
    out = body + pubkey(signer) + fixed(signature, 64)
    if len(out) > MAX_SIGNED_TX_BYTES:
        raise ValueError(f"signed transaction is {len(out)} bytes, above {MAX_SIGNED_TX_BYTES}")
    return out


def tx_id(signed: bytes) -> bytes:
    """BLAKE3 of the canonical SignedTx (body, signer and signature)."""
    return H(signed)


# --- keys (section 3) ---------------------------------------------------------

def load_private_key(path: str) -> Ed25519PrivateKey:
    """A PKCS#8 PEM Ed25519 key (what `symbiont-node testnet` writes)."""
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def public_bytes(key: Union[Ed25519PrivateKey, Ed25519PublicKey]) -> bytes:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_text(pk: bytes) -> str:
    return "ed25519:" + pk.hex()


def sign_tx(key: Ed25519PrivateKey, chain_id: str, nonce: int, kind: bytes) -> Tuple[bytes, bytes]:
    """Builds and signs a transaction; returns (signed canonical bytes, tx id)."""
    body = encode_body(chain_id, nonce, kind)
    signature = key.sign(sign_bytes(body))
    signed = encode_signed(body, public_bytes(key), signature)
    return signed, tx_id(signed)
