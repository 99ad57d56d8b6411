//! The canonical codec: golden byte vectors and strict decoding.

mod support;

use proptest::prelude::*;
use support::Bytes;
use symbiont_contracts::codec::{self, CodecError, MAX_DECODE_BYTES};
use symbiont_contracts::genesis::Genesis;
use symbiont_contracts::keys::{PublicKey, Signature};
use symbiont_contracts::tx::{KeyRole, SignedTx, TxBody, TxError, TxKind};

#[test]
fn integers_are_fixed_width_little_endian() {
    assert_eq!(codec::encode(&0x0102u16), vec![0x02, 0x01]);
    assert_eq!(codec::encode(&1u32), vec![1, 0, 0, 0]);
    assert_eq!(codec::encode(&1u64), vec![1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(codec::encode(&-1i64), vec![0xff; 8]);
    assert_eq!(
        codec::encode(&-2i128),
        [vec![0xfe], vec![0xff; 15]].concat()
    );
    assert_eq!(codec::encode(&u64::MAX), vec![0xff; 8]);
}

#[test]
fn strings_sequences_options_and_bools() {
    assert_eq!(codec::encode("ab"), Bytes::default().str("ab").0);
    assert_eq!(
        codec::encode(&vec![7u32, 8]),
        Bytes::default().len(2).u32(7).u32(8).0
    );
    assert_eq!(codec::encode(&None::<u32>), vec![0]);
    assert_eq!(codec::encode(&Some(5u32)), vec![1, 5, 0, 0, 0]);
    assert_eq!(codec::encode(&true), vec![1]);
    assert_eq!(
        codec::encode(&(1u8, "x")),
        Bytes::default().u8(1).str("x").0
    );
}

#[test]
fn keys_and_signatures_are_raw_bytes() {
    assert_eq!(codec::encode(&PublicKey([9; 32])), vec![9; 32]);
    assert_eq!(codec::encode(&Signature([3; 64])), vec![3; 64]);
    let decoded: Signature = codec::decode(&[3; 64]).unwrap();
    assert_eq!(decoded, Signature([3; 64]));
}

fn sample_body() -> TxBody {
    TxBody {
        chain_id: "kalundborg-1".into(),
        nonce: 7,
        kind: TxKind::AuthorizeKey {
            firm: "gyproc".into(),
            key: PublicKey([0xab; 32]),
            role: KeyRole::Meter,
        },
    }
}

#[test]
fn golden_tx_body() {
    let expected = Bytes::default()
        .str("kalundborg-1")
        .u64(7)
        .variant(0) // TxKind::AuthorizeKey
        .str("gyproc")
        .raw(&[0xab; 32])
        .variant(1) // KeyRole::Meter
        .0;
    assert_eq!(codec::encode(&sample_body()), expected);
    let revoke = TxKind::RevokeKey {
        firm: "gyproc".into(),
        key: PublicKey([1; 32]),
    };
    assert_eq!(
        codec::encode(&revoke),
        Bytes::default().variant(1).str("gyproc").raw(&[1; 32]).0
    );
}

#[test]
fn golden_signed_tx_and_sign_bytes() {
    let body = sample_body();
    let sign_bytes = Bytes::default()
        .str("symbiont/tx/v1")
        .raw(&codec::encode(&body))
        .0;
    assert_eq!(body.sign_bytes(), sign_bytes);

    let tx = SignedTx {
        body: body.clone(),
        signer: PublicKey([0x11; 32]),
        signature: Signature([0x22; 64]),
    };
    let expected = Bytes::default()
        .raw(&codec::encode(&body))
        .raw(&[0x11; 32])
        .raw(&[0x22; 64])
        .0;
    assert_eq!(tx.to_bytes(), expected);
    assert_eq!(tx.id().0, *blake3::hash(&expected).as_bytes());
    // Pinned: a change to any type in the tx changes this and must be a
    // deliberate, documented format change.
    assert_eq!(
        tx.id().to_hex(),
        "1183321acf20f0a578dd371ac16022a2484736afa87c860d4b91a66b2328881b"
    );
}

#[test]
fn golden_genesis() {
    let text = include_str!("../../deploy/genesis/kalundborg.toml");
    let genesis = Genesis::from_toml(text).unwrap();
    let bytes = codec::encode(&genesis);
    // The first fields, laid out by hand.
    let head = Bytes::default()
        .str("kalundborg-1")
        .u64(1_796_083_200_000)
        .str("DKK")
        .u8(2)
        .u64(1000) // timeout_propose_ms
        .u64(500)
        .u64(500)
        .u64(250)
        .u32(2000) // max_block_txs
        .u32(4_194_304)
        .u64(2000)
        .len(8) // firms
        .str("orsted")
        .str("Asnaes Power Station")
        .raw(&genesis.firms[0].admin_key.0)
        .bool(false)
        .0;
    assert_eq!(&bytes[..head.len()], &head[..]);
    assert_eq!(genesis.hash().0, *blake3::hash(&bytes).as_bytes());
    assert_eq!(
        genesis.hash().to_hex(),
        "e475d1ed2cefa5004d9baff993e911a54a736e4fa03098bce9192ca4b75b99ea"
    );
}

#[test]
fn roundtrip_signed_tx() {
    let tx = SignedTx {
        body: sample_body(),
        signer: PublicKey([1; 32]),
        signature: Signature([2; 64]),
    };
    let decoded: SignedTx = codec::decode(&tx.to_bytes()).unwrap();
    assert_eq!(decoded, tx);
}

#[test]
fn rejects_trailing_bytes() {
    let mut bytes = codec::encode(&sample_body());
    bytes.push(0);
    assert_eq!(
        codec::decode::<TxBody>(&bytes),
        Err(CodecError::TrailingBytes { trailing: 1 })
    );
}

#[test]
fn rejects_truncated_input() {
    let bytes = codec::encode(&sample_body());
    let error = codec::decode::<TxBody>(&bytes[..bytes.len() - 1]).unwrap_err();
    assert!(
        matches!(error, CodecError::UnexpectedEnd { .. }),
        "{error:?}"
    );
}

#[test]
fn rejects_unknown_variant() {
    let bytes = Bytes::default().str("c").u64(1).variant(99).0;
    let error = codec::decode::<TxBody>(&bytes).unwrap_err();
    assert!(
        matches!(error, CodecError::UnknownVariant { .. }),
        "{error:?}"
    );
}

#[test]
fn rejects_oversize_length_before_allocating() {
    // A string that claims 2^40 bytes, and a list of 2^64 - 1 u64s.
    let bytes = Bytes::default().u64(1 << 40).raw(b"abc").0;
    let limit = MAX_DECODE_BYTES;
    assert_eq!(
        codec::decode::<String>(&bytes),
        Err(CodecError::DeclaredLengthTooLarge { limit })
    );
    let vec_bytes = Bytes::default().u64(u64::MAX).0;
    // Sequences are read element by element (serde caps preallocation), so
    // a huge count fails at the end of the input, having allocated little.
    assert_eq!(
        codec::decode::<Vec<u64>>(&vec_bytes),
        Err(CodecError::UnexpectedEnd { needed: 8 })
    );
    // A plausible length with too little input behind it.
    let short = Bytes::default().u64(100).raw(b"abc").0;
    assert!(matches!(
        codec::decode::<Vec<u8>>(&short),
        Err(CodecError::UnexpectedEnd { .. })
    ));
    let too_long = vec![0u8; MAX_DECODE_BYTES + 1];
    assert_eq!(
        codec::decode::<Vec<u8>>(&too_long),
        Err(CodecError::Oversize {
            len: MAX_DECODE_BYTES + 1,
            limit: MAX_DECODE_BYTES
        })
    );
}

#[test]
fn rejects_bad_bool_and_utf8() {
    assert!(matches!(
        codec::decode::<bool>(&[2]),
        Err(CodecError::Malformed { .. })
    ));
    let bad_utf8 = Bytes::default().u64(2).raw(&[0xc3, 0x28]).0;
    assert!(matches!(
        codec::decode::<String>(&bad_utf8),
        Err(CodecError::Malformed { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode::<SignedTx>(&bytes);
        let _ = codec::decode::<TxBody>(&bytes);
        let _ = codec::decode::<Genesis>(&bytes);
        let _ = SignedTx::from_bytes(&bytes);
    }

    #[test]
    fn mutated_valid_tx_never_panics(position in 0usize..200, value in any::<u8>()) {
        let tx = SignedTx { body: sample_body(), signer: PublicKey([1; 32]), signature: Signature([2; 64]) };
        let mut bytes = tx.to_bytes();
        let position = position % bytes.len();
        bytes[position] = value;
        if let Ok(decoded) = codec::decode::<SignedTx>(&bytes) {
            // Whatever decodes re-encodes to exactly the same bytes: one value, one encoding.
            prop_assert_eq!(codec::encode(&decoded), bytes);
        }
    }

    #[test]
    fn roundtrip_any_body(chain in "[a-z0-9-]{0,20}", nonce in any::<u64>(), firm in ".{0,20}", key in any::<[u8; 32]>(), meter in any::<bool>()) {
        let role = if meter { KeyRole::Meter } else { KeyRole::Operator };
        let body = TxBody { chain_id: chain, nonce, kind: TxKind::AuthorizeKey { firm, key: PublicKey(key), role } };
        prop_assert_eq!(codec::decode::<TxBody>(&codec::encode(&body)).unwrap(), body);
    }
}

#[test]
fn rejects_maps_out_of_order_or_repeated() {
    use std::collections::BTreeMap;
    let map: BTreeMap<String, u16> = [("alpha".to_string(), 1), ("beta".to_string(), 2)].into();
    let canonical = Bytes::default()
        .len(2)
        .str("alpha")
        .raw(&[1, 0])
        .str("beta")
        .raw(&[2, 0])
        .0;
    assert_eq!(codec::encode(&map), canonical);
    assert_eq!(codec::decode::<BTreeMap<String, u16>>(&canonical), Ok(map));
    let swapped = Bytes::default()
        .len(2)
        .str("beta")
        .raw(&[2, 0])
        .str("alpha")
        .raw(&[1, 0])
        .0;
    assert_eq!(
        codec::decode::<BTreeMap<String, u16>>(&swapped),
        Err(CodecError::NonCanonical)
    );
    let repeated = Bytes::default()
        .len(2)
        .str("alpha")
        .raw(&[1, 0])
        .str("alpha")
        .raw(&[2, 0])
        .0;
    assert_eq!(
        codec::decode::<BTreeMap<String, u16>>(&repeated),
        Err(CodecError::NonCanonical)
    );
}

/// y = p + 3 (p = 2^255 - 19): a non-canonical encoding of the point
/// y = 3, which the old decoder took as a key distinct from `03 00 .. 00`.
fn non_canonical_key() -> PublicKey {
    let mut bytes = [0xff; 32];
    bytes[0] = 0xf0;
    bytes[31] = 0x7f;
    PublicKey(bytes)
}

fn is_non_canonical_key_error(error: &CodecError) -> bool {
    matches!(error, CodecError::Malformed { detail } if detail.contains("not the canonical encoding"))
}

#[test]
fn non_canonical_keys_are_refused_in_transactions_and_genesis() {
    // As the signer of a transaction: `malformed`, before any signature check.
    let tx = SignedTx {
        body: sample_body(),
        signer: non_canonical_key(),
        signature: Signature([0x22; 64]),
    };
    let error = SignedTx::from_bytes(&tx.to_bytes()).unwrap_err();
    assert_eq!(error.code(), "malformed");
    assert!(
        matches!(&error, TxError::Malformed(e) if is_non_canonical_key_error(e)),
        "{error:?}"
    );
    // As a key inside the body.
    let mut body = sample_body();
    body.kind = TxKind::AuthorizeKey {
        firm: "gyproc".into(),
        key: non_canonical_key(),
        role: KeyRole::Operator,
    };
    let error = codec::decode::<TxBody>(&codec::encode(&body)).unwrap_err();
    assert!(is_non_canonical_key_error(&error), "{error:?}");
    // As a firm's admin key in a genesis.
    let mut genesis =
        Genesis::from_toml(include_str!("../../deploy/genesis/kalundborg.toml")).unwrap();
    genesis.firms[0].admin_key = non_canonical_key();
    let error = codec::decode::<Genesis>(&codec::encode(&genesis)).unwrap_err();
    assert!(is_non_canonical_key_error(&error), "{error:?}");
}
