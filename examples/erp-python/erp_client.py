#!/usr/bin/env python3
"""A Symbiont ERP client: builds and signs transactions itself
(symbiont_tx.py, from docs/ledger-format.md), submits them over gRPC
(symbiont.v1.Node/SubmitTx), polls GetTx until committed, and follows the
symbiont.v1.Stream/Events stream.

Stubs come from ./generate.sh (into generated/).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "generated"))

try:
    import grpc
    from symbiont.v1 import (
        node_pb2,
        node_pb2_grpc,
        query_pb2,
        query_pb2_grpc,
        stream_pb2,
        stream_pb2_grpc,
    )
except ImportError as e:  # pragma: no cover
    sys.exit(f"cannot import the gRPC stubs ({e}): run ./generate.sh first")

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import symbiont_tx as tx
from symbiont_tx import TxKind

NEXT_NONCE = re.compile(r"the next is (\d+)")


def channel(addr: str) -> grpc.Channel:
    addr = addr.removeprefix("http://")
    return grpc.insecure_channel(addr)


def code_of(err: grpc.RpcError) -> str:
    for k, v in err.trailing_metadata() or ():
        if k == "symbiont-code":
            return v
    return (err.details() or "").split(":", 1)[0]


def submit(ch, key, kind: bytes, nonce: int | None) -> tuple[bytes, int]:
    """Signs `kind` with `key` and submits it. Without an explicit nonce it
    asks the node for the key's next free nonce (Query/GetSigner) and, if
    another transaction took it meanwhile (bad_nonce), takes the next one
    the refusal names."""
    node = node_pb2_grpc.NodeStub(ch)
    chain_id = node.Status(node_pb2.StatusRequest(), timeout=10).chain_id
    if nonce is None:
        query = query_pb2_grpc.QueryStub(ch)
        signer = query.GetSigner(
            query_pb2.GetSignerRequest(public_key=tx.public_bytes(key)), timeout=10
        )
        n = signer.next_free_nonce
    else:
        n = nonce
    for _ in range(3):
        signed, txid = tx.sign_tx(key, chain_id, n, kind)
        try:
            resp = node.SubmitTx(node_pb2.SubmitTxRequest(tx=signed), timeout=10)
        except grpc.RpcError as err:
            code = code_of(err)
            m = NEXT_NONCE.search(err.details() or "")
            if nonce is None and code == "bad_nonce" and m:
                n = int(m.group(1))
                continue
            if code in ("duplicate", "already_included"):
                return txid, n
            raise SystemExit(f"SubmitTx refused: {err.code().name} {err.details()}")
        if resp.tx_id != txid:
            raise SystemExit(
                f"node computed tx id {resp.tx_id.hex()}, we computed {txid.hex()}"
            )
        return txid, n
    raise SystemExit("could not find the next nonce")


def wait_committed(ch, txid: bytes, timeout_s: float) -> node_pb2.GetTxResponse:
    node = node_pb2_grpc.NodeStub(ch)
    deadline = time.monotonic() + timeout_s
    while True:
        r = node.GetTx(node_pb2.GetTxRequest(tx_id=txid), timeout=10)
        if r.state == node_pb2.TX_STATE_COMMITTED:
            return r
        if time.monotonic() > deadline:
            raise SystemExit(
                f"tx {txid.hex()} not committed after {timeout_s}s "
                f"(state {node_pb2.TxState.Name(r.state)})"
            )
        time.sleep(0.25)


def describe_event(ev) -> str:
    which = ev.WhichOneof("event")
    head = f"height {ev.height} #{ev.index} t={ev.time_ms} firms={list(ev.firms)} {which}"
    body = getattr(ev, which) if which else None
    if which in ("tx_committed", "tx_failed"):
        s = f"{head} kind={body.kind} tx={body.tx_id.hex()} signer=ed25519:{body.signer.hex()}"
        return s + (f" code={body.code}" if body.code else "")
    if body is None:
        return head
    fields = []
    for fd, value in body.ListFields():
        fields.append(f"{fd.name}={value.hex() if isinstance(value, bytes) else value}")
    return f"{head} " + " ".join(fields).replace("\n", " ")


def follow_events(ch, from_height: int, limit: int, firm: str | None,
                  want_tx: bytes | None = None, timeout_s: float = 60) -> bool:
    """Prints events from `from_height`; stops after `limit` events, or at
    the event of `want_tx` if given. Returns whether want_tx was seen."""
    stub = stream_pb2_grpc.StreamStub(ch)
    req = stream_pb2.StreamEventsRequest(from_height=from_height)
    if firm:
        req.firm = firm
    seen = 0
    stream = stub.Events(req, timeout=timeout_s)
    try:
        for ev in stream:
            print(describe_event(ev), flush=True)
            seen += 1
            which = ev.WhichOneof("event")
            if want_tx is not None and which in ("tx_committed", "tx_failed"):
                if getattr(ev, which).tx_id == want_tx:
                    return which == "tx_committed"
            if seen >= limit:
                break
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
        print(f"events: stream ended after {timeout_s}s", file=sys.stderr)
    finally:
        stream.cancel()
    return False


def report(txid: bytes, nonce: int, r) -> None:
    result = "applied" if not r.error else f"failed: {r.error}"
    print(f"tx {txid.hex()} nonce {nonce} committed at height {r.height} index {r.index}: {result}",
          flush=True)


def default_firm(pem: str) -> str:
    return os.path.splitext(os.path.basename(pem))[0]


def write_new_key(path: str) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


# --- commands -----------------------------------------------------------------

def cmd_status(a):
    r = node_pb2_grpc.NodeStub(channel(a.grpc)).Status(node_pb2.StatusRequest(), timeout=10)
    print(f"chain {r.chain_id} height {r.height} peers {r.peers} step {r.step} "
          f"validator {r.is_validator}" + (f" stall: {r.stall_reason}" if r.stall_reason else ""))


def _submit_and_report(a, key, kind) -> tuple[bytes, object]:
    ch = channel(a.grpc)
    txid, nonce = submit(ch, key, kind, a.nonce)
    print(f"submitted tx {txid.hex()} (nonce {nonce}), waiting for commit...", flush=True)
    r = wait_committed(ch, txid, a.timeout)
    report(txid, nonce, r)
    return txid, r


def cmd_authorize_key(a):
    """The firm admin authorizes a new meter (or operator) key."""
    admin = tx.load_private_key(a.key)
    firm = a.firm or default_firm(a.key)
    if a.new_key:
        new_pub = tx.public_bytes(write_new_key(a.new_key))
        print(f"wrote new key {a.new_key}: {tx.key_text(new_pub)}")
    else:
        new_pub = tx.public_bytes(Ed25519PrivateKey.generate())
    role = tx.KEY_ROLE_METER if a.role == "meter" else tx.KEY_ROLE_OPERATOR
    kind = TxKind.authorize_key(firm, new_pub, role)
    print(f"AuthorizeKey firm={firm} key={tx.key_text(new_pub)} role={a.role} "
          f"signer={tx.key_text(tx.public_bytes(admin))}")
    txid, r = _submit_and_report(a, admin, kind)
    ok = True
    if a.events:
        print(f"events from height {r.height}:")
        ok = follow_events(channel(a.grpc), r.height, a.limit, None, want_tx=txid,
                           timeout_s=a.timeout)
        print(f"event of tx {txid.hex()}: {'tx_committed seen' if ok else 'NOT seen as applied'}")
    if a.expect_applied and (r.error or not ok):
        sys.exit(1)


def cmd_record_delivery(a):
    """A billing meter records the delivered quantity D of a contract period."""
    meter = tx.load_private_key(a.key)
    contract = bytes.fromhex(a.contract)
    kind = TxKind.record_delivery(contract, a.period, a.quantity)
    print(f"RecordDelivery contract={a.contract} period={a.period} quantity={a.quantity} "
          f"signer={tx.key_text(tx.public_bytes(meter))}")
    _, r = _submit_and_report(a, meter, kind)
    if a.expect_applied and r.error:
        sys.exit(1)
    if a.expect_error is not None and r.error != a.expect_error:
        sys.exit(f"expected result {a.expect_error!r}, got {r.error!r}")


def cmd_events(a):
    follow_events(channel(a.grpc), a.from_height, a.limit, a.firm, timeout_s=a.timeout)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grpc", default="127.0.0.1:26756",
                   help="node gRPC address (testnet: the p2p port + 100)")
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait")
    sub = p.add_subparsers(dest="cmd", required=True)

    sub.add_parser("status", help="where the node stands").set_defaults(fn=cmd_status)

    s = sub.add_parser("authorize-key", help="a firm admin authorizes a new key")
    s.add_argument("--key", required=True, help="the admin's PKCS#8 PEM (e.g. DIR/firms/firm-0.pem)")
    s.add_argument("--firm", help="the firm id (default: the PEM file's name)")
    s.add_argument("--role", choices=["meter", "operator"], default="meter")
    s.add_argument("--new-key", help="write the new key's PEM here (default: throw it away)")
    s.add_argument("--nonce", type=int, help="default: 1, or the next the node names")
    s.add_argument("--events", action="store_true", help="then follow Events from the commit height")
    s.add_argument("--limit", type=int, default=20, help="events to print at most")
    s.add_argument("--expect-applied", action="store_true",
                   help="exit 1 unless applied (and, with --events, its event seen)")
    s.set_defaults(fn=cmd_authorize_key)

    s = sub.add_parser("record-delivery", help="a billing meter records a delivery")
    s.add_argument("--key", required=True, help="the meter key's PKCS#8 PEM")
    s.add_argument("--contract", required=True, help="contract id, 64 hex digits")
    s.add_argument("--period", type=int, required=True)
    s.add_argument("--quantity", type=int, required=True, help="thousandths of the unit")
    s.add_argument("--nonce", type=int)
    s.add_argument("--expect-applied", action="store_true")
    s.add_argument("--expect-error", metavar="CODE",
                   help="exit 1 unless it commits with this result code")
    s.set_defaults(fn=cmd_record_delivery)

    s = sub.add_parser("events", help="follow symbiont.v1.Stream/Events")
    s.add_argument("--from-height", type=int, default=1)
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--firm")
    s.set_defaults(fn=cmd_events)

    a = p.parse_args(argv)
    a.fn(a)


if __name__ == "__main__":
    main()
