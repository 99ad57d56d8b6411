//! Signed transactions: every verification error, ids, batch verification.

use symbiont_contracts::codec::CodecError;
use symbiont_contracts::keys::{Keypair, PublicKey};
use symbiont_contracts::tx::{
    KeyRole, MAX_TX_BYTES, SignedTx, TxBody, TxError, TxKind, verify_txs,
};

const CHAIN: &str = "kalundborg-1";

fn body(nonce: u64, firm: &str) -> TxBody {
    TxBody {
        chain_id: CHAIN.into(),
        nonce,
        kind: TxKind::AuthorizeKey {
            firm: firm.into(),
            key: PublicKey([0xab; 32]),
            role: KeyRole::Operator,
        },
    }
}

fn admin() -> Keypair {
    Keypair::from_seed([42; 32])
}

#[test]
fn signed_tx_verifies_and_roundtrips() {
    let tx = SignedTx::sign(body(1, "novo"), &admin());
    assert_eq!(tx.signer, admin().public());
    assert_eq!(tx.verify(CHAIN), Ok(()));
    let bytes = tx.to_bytes();
    assert_eq!(SignedTx::from_bytes_verified(&bytes, CHAIN), Ok(tx.clone()));
    assert_eq!(tx.id(), SignedTx::from_bytes(&bytes).unwrap().id());
}

#[test]
fn tx_id_covers_signature_and_body() {
    let a = SignedTx::sign(body(1, "novo"), &admin());
    let b = SignedTx::sign(body(2, "novo"), &admin());
    let c = SignedTx::sign(body(1, "novo"), &Keypair::from_seed([43; 32]));
    assert_ne!(a.id(), b.id());
    assert_ne!(a.id(), c.id());
}

#[test]
fn tampered_body_is_a_bad_signature() {
    let mut tx = SignedTx::sign(body(1, "novo"), &admin());
    tx.body.kind = TxKind::RevokeKey {
        firm: "novo".into(),
        key: PublicKey([0xab; 32]),
    };
    assert_eq!(
        tx.verify(CHAIN),
        Err(TxError::BadSignature {
            signer: admin().public()
        })
    );
}

#[test]
fn wrong_signer_is_a_bad_signature() {
    let mut tx = SignedTx::sign(body(1, "novo"), &admin());
    tx.signer = Keypair::from_seed([1; 32]).public();
    assert!(matches!(
        tx.verify(CHAIN),
        Err(TxError::BadSignature { .. })
    ));
}

#[test]
fn wrong_chain_id_is_refused() {
    let tx = SignedTx::sign(body(1, "novo"), &admin());
    assert_eq!(
        tx.verify("other-park"),
        Err(TxError::WrongChainId {
            expected: "other-park".into(),
            got: CHAIN.into()
        })
    );
    // Rewriting the chain id to replay it elsewhere breaks the signature.
    let mut replayed = tx.clone();
    replayed.body.chain_id = "other-park".into();
    assert!(matches!(
        replayed.verify("other-park"),
        Err(TxError::BadSignature { .. })
    ));
}

#[test]
fn nonce_must_be_exactly_previous_plus_one() {
    let signer = admin().public();
    let first = SignedTx::sign(body(1, "novo"), &admin());
    assert_eq!(first.check_nonce(None), Ok(()));
    assert_eq!(
        first.check_nonce(Some(1)),
        Err(TxError::BadNonce {
            signer,
            expected: 2,
            got: 1
        })
    );
    let fifth = SignedTx::sign(body(5, "novo"), &admin());
    assert_eq!(fifth.check_nonce(Some(4)), Ok(()));
    assert_eq!(
        fifth.check_nonce(Some(3)),
        Err(TxError::BadNonce {
            signer,
            expected: 4,
            got: 5
        })
    );
    let zero = SignedTx::sign(body(0, "novo"), &admin());
    assert_eq!(
        zero.check_nonce(None),
        Err(TxError::BadNonce {
            signer,
            expected: 1,
            got: 0
        })
    );
    let last = SignedTx::sign(body(u64::MAX, "novo"), &admin());
    assert_eq!(
        last.check_nonce(Some(u64::MAX)),
        Err(TxError::NonceExhausted { signer })
    );
}

#[test]
fn oversize_is_refused_before_decoding_and_on_verify() {
    let huge = SignedTx::sign(body(1, &"x".repeat(MAX_TX_BYTES)), &admin());
    let len = huge.to_bytes().len();
    assert!(len > MAX_TX_BYTES);
    assert_eq!(
        huge.verify(CHAIN),
        Err(TxError::Oversize {
            len,
            limit: MAX_TX_BYTES
        })
    );
    assert_eq!(
        SignedTx::from_bytes(&huge.to_bytes()),
        Err(TxError::Oversize {
            len,
            limit: MAX_TX_BYTES
        })
    );
    // Just under the limit is fine.
    let small = SignedTx::sign(body(1, "novo"), &admin()).to_bytes().len();
    let fits = SignedTx::sign(body(1, &"x".repeat(MAX_TX_BYTES - small + 4)), &admin());
    assert_eq!(fits.to_bytes().len(), MAX_TX_BYTES);
    assert_eq!(fits.verify(CHAIN), Ok(()));
}

#[test]
fn malformed_bytes_are_typed() {
    assert!(matches!(
        SignedTx::from_bytes(&[1, 2, 3]),
        Err(TxError::Malformed(CodecError::UnexpectedEnd { .. }))
    ));
    let mut bytes = SignedTx::sign(body(1, "novo"), &admin()).to_bytes();
    bytes.extend_from_slice(&[0, 0]);
    assert_eq!(
        SignedTx::from_bytes(&bytes),
        Err(TxError::Malformed(CodecError::TrailingBytes {
            trailing: 2
        }))
    );
    assert_eq!(
        TxError::Malformed(CodecError::TrailingBytes { trailing: 2 }).code(),
        "malformed"
    );
}

#[test]
fn batch_verification_gives_one_verdict_per_tx() {
    let good: Vec<SignedTx> = (1..=6)
        .map(|n| SignedTx::sign(body(n, "novo"), &admin()))
        .collect();
    assert!(verify_txs(&good, CHAIN).iter().all(Result::is_ok));

    let mut mixed = good.clone();
    mixed[1].signature.0[10] ^= 0x40;
    mixed[3].body.chain_id = "elsewhere".into();
    mixed[4] = SignedTx::sign(body(5, &"x".repeat(MAX_TX_BYTES)), &admin());
    let verdicts = verify_txs(&mixed, CHAIN);
    let individually: Vec<_> = mixed.iter().map(|tx| tx.verify(CHAIN)).collect();
    assert_eq!(verdicts, individually);
    assert!(verdicts[0].is_ok() && verdicts[2].is_ok() && verdicts[5].is_ok());
    assert!(matches!(verdicts[1], Err(TxError::BadSignature { .. })));
    assert!(matches!(verdicts[3], Err(TxError::WrongChainId { .. })));
    assert!(matches!(verdicts[4], Err(TxError::Oversize { .. })));
}
