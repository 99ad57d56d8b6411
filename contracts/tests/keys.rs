//! Keys: RFC 8032 vectors, PEM files, text form, PeerIds.

use symbiont_contracts::codec::{self, CodecError};
use symbiont_contracts::keys::{
    KeyError, Keypair, PublicKey, Signature, check_key_file_mode, verify_batch,
};

fn unhex<const N: usize>(text: &str) -> [u8; N] {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).unwrap();
    out
}

/// RFC 8032 section 7.1, TEST 2 (one-byte message 0x72).
#[test]
fn rfc8032_test_vector() {
    let keypair = Keypair::from_seed(unhex(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    ));
    assert_eq!(
        keypair.public().0,
        unhex::<32>("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
    );
    let signature = keypair.sign(&[0x72]);
    assert_eq!(
        signature.0,
        unhex::<64>(
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        )
    );
    assert_eq!(keypair.public().verify(&[0x72], &signature), Ok(()));
    assert_eq!(
        keypair.public().verify(&[0x73], &signature),
        Err(KeyError::BadSignature)
    );
}

#[test]
fn pem_roundtrip_and_openssl_form() {
    let keypair = Keypair::from_seed([7; 32]);
    let pem = keypair.to_pkcs8_pem();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    // PKCS#8 v1 for ed25519 is 48 bytes of DER: 64 base64 characters on one line.
    assert_eq!(pem.lines().nth(1).unwrap().len(), 64);
    let back = Keypair::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(back.public(), keypair.public());
}

#[test]
fn reads_a_key_written_by_openssl() {
    // `openssl genpkey -algorithm ed25519`; its public key from
    // `openssl pkey -pubout -outform DER | tail -c 32 | xxd -p`.
    let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINur55Lq5FDyIL1qlwx0F1v1Jt03xOKU8D1+19Uxk4LS\n-----END PRIVATE KEY-----\n";
    let keypair = Keypair::from_pkcs8_pem(pem).unwrap();
    assert_eq!(
        keypair.public().to_string(),
        "ed25519:4266cb6a5e1b348d1fb949fe698afd19471e80347d6e0c9d1e8ee991cf3a60ef"
    );
}

#[test]
fn rejects_bad_pem() {
    for bad in [
        "",
        "hello",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ] {
        assert!(
            matches!(
                Keypair::from_pkcs8_pem(bad),
                Err(KeyError::BadPrivateKeyFile(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn public_key_text_form() {
    let key = Keypair::from_seed([1; 32]).public();
    let text = key.to_string();
    assert!(text.starts_with("ed25519:") && text.len() == 8 + 64);
    assert_eq!(text.parse::<PublicKey>(), Ok(key));
    let digits = &text[8..];
    for bad in [
        digits.to_string(),                  // no prefix
        format!("ed25519:{}", &digits[1..]), // short
        format!("ed25519:{}", digits.to_uppercase()),
        format!("ed25519:{}zz", &digits[2..]), // not hex
        format!("ed448:{digits}"),
    ] {
        assert!(
            matches!(bad.parse::<PublicKey>(), Err(KeyError::BadPublicKeyText(_))),
            "{bad}"
        );
    }
}

#[test]
fn invalid_and_weak_public_keys() {
    // The identity point (small order) parses but is unusable.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(
        PublicKey(identity).validate(),
        Err(KeyError::InvalidPublicKey)
    );
    // y = 2 is not on the curve.
    let mut off_curve = [0u8; 32];
    off_curve[0] = 2;
    assert_eq!(
        PublicKey(off_curve).validate(),
        Err(KeyError::InvalidPublicKey)
    );
    assert_eq!(
        PublicKey(off_curve).verify(b"m", &Signature([0; 64])),
        Err(KeyError::InvalidPublicKey)
    );
    assert_eq!(Keypair::from_seed([5; 32]).public().validate(), Ok(()));
}

#[test]
fn peer_id_matches_libp2p() {
    for seed in [[0u8; 32], [1; 32], [0xfe; 32]] {
        let ours = Keypair::from_seed(seed).public().peer_id();
        let theirs = libp2p_identity::Keypair::ed25519_from_bytes(seed)
            .unwrap()
            .public()
            .to_peer_id();
        assert_eq!(ours, theirs.to_string());
        assert!(ours.starts_with("12D3KooW"));
    }
}

#[test]
fn key_file_mode_rule() {
    assert_eq!(check_key_file_mode(0o100600), Ok(()));
    assert_eq!(check_key_file_mode(0o400), Ok(()));
    assert_eq!(
        check_key_file_mode(0o644),
        Err(KeyError::KeyFileTooOpen { mode: 0o644 })
    );
    assert_eq!(
        check_key_file_mode(0o100640),
        Err(KeyError::KeyFileTooOpen { mode: 0o640 })
    );
}

#[test]
fn batch_verification_names_the_bad_signatures() {
    let keypairs: Vec<Keypair> = (0..8u8).map(|i| Keypair::from_seed([i; 32])).collect();
    let messages: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 10]).collect();
    let mut items: Vec<(&[u8], PublicKey, Signature)> = keypairs
        .iter()
        .zip(&messages)
        .map(|(k, m)| (m.as_slice(), k.public(), k.sign(m)))
        .collect();
    assert_eq!(verify_batch(&items), Ok(()));
    assert_eq!(verify_batch(&[]), Ok(()));
    items[2].2.0[0] ^= 1;
    items[6].1 = keypairs[0].public();
    assert_eq!(verify_batch(&items), Err(vec![2, 6]));
}

/// Non-canonical encodings of curve points, each with the point's one
/// (canonical) encoding. `PublicKey` bytes are little-endian y with the
/// sign of x in the top bit; p = 2^255 - 19 is `ed ff .. ff 7f`.
fn non_canonical_keys() -> Vec<([u8; 32], [u8; 32])> {
    // y = p + k, written with the sign bit `sign`: the point y = k.
    let above_p = |k: u8, sign: u8| {
        let mut bytes = [0xff; 32];
        bytes[0] = 0xed + k;
        bytes[31] = 0x7f | sign;
        let mut canonical = [0; 32];
        canonical[0] = k;
        canonical[31] = sign;
        (bytes, canonical)
    };
    // x = 0 with the sign bit set: y = 1 (the identity), y = p - 1.
    let mut identity = [0; 32];
    identity[0] = 1;
    let mut identity_signed = identity;
    identity_signed[31] = 0x80;
    let mut minus_one = [0xff; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    let mut minus_one_signed = minus_one;
    minus_one_signed[31] = 0xff;
    vec![
        // y = 3 is a point of large order: the old code accepted both
        // encodings as two different, valid keys.
        above_p(3, 0),
        above_p(3, 0x80),
        above_p(0, 0),
        (above_p(1, 0).0, identity),
        (identity_signed, identity),
        (minus_one_signed, minus_one),
    ]
}

#[test]
fn non_canonical_public_keys_are_refused_everywhere() {
    for (bytes, canonical) in non_canonical_keys() {
        let error = KeyError::NonCanonicalPublicKey {
            key: PublicKey(bytes),
            canonical: PublicKey(canonical),
        };
        let refusal = Err(error.clone());
        assert_eq!(PublicKey::from_bytes(bytes), refusal);
        assert_eq!(PublicKey::from_bytes(canonical), Ok(PublicKey(canonical)));
        // The text form.
        let text = format!("ed25519:{}", hex::encode(bytes));
        assert_eq!(text.parse::<PublicKey>(), refusal, "{text}");
        // The canonical codec, alone and inside a transaction.
        let decoded = codec::decode::<PublicKey>(&bytes);
        assert!(
            matches!(&decoded, Err(CodecError::Malformed { detail })
                if detail.contains("not the canonical encoding")
                    && detail.contains(&hex::encode(canonical))),
            "{decoded:?}"
        );
        // A `PublicKey` built from the field skips `from_bytes`: using it
        // still refuses it.
        assert_eq!(PublicKey(bytes).validate(), Err(error.clone()));
        assert_eq!(
            PublicKey(bytes).verify(b"m", &Signature([0; 64])),
            Err(error)
        );
        assert_eq!(
            verify_batch(&[(b"m", PublicKey(bytes), Signature([0; 64]))]),
            Err(vec![0])
        );
    }
    // Bytes that are no point at all have no other encoding: they decode,
    // and are refused as unusable when used.
    let mut off_curve = [0u8; 32];
    off_curve[0] = 2;
    assert_eq!(PublicKey::from_bytes(off_curve), Ok(PublicKey(off_curve)));
    assert_eq!(
        codec::decode::<PublicKey>(&off_curve),
        Ok(PublicKey(off_curve))
    );
}

#[test]
fn non_canonical_key_message_names_both_encodings() {
    let (bytes, canonical) = non_canonical_keys()[0];
    let message = PublicKey::from_bytes(bytes).unwrap_err().to_string();
    assert!(message.contains(&hex::encode(bytes)), "{message}");
    assert!(message.contains(&hex::encode(canonical)), "{message}");
    assert!(message.contains("2^255 - 19"), "{message}");
}

#[test]
fn pkcs8_with_a_non_canonical_public_key_is_refused() {
    // PKCS#8 v2 may carry the public key; it must be the seed's, byte for
    // byte, so a non-canonical encoding of it is refused.
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, KeypairBytes, PublicKeyBytes};
    let seed = [9; 32];
    let with_public = |public: [u8; 32]| {
        KeypairBytes {
            secret_key: seed,
            public_key: Some(PublicKeyBytes(public)),
        }
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap()
        .to_string()
    };
    let public = Keypair::from_seed(seed).public();
    let accepted = Keypair::from_pkcs8_pem(&with_public(public.0)).unwrap();
    assert_eq!(accepted.public(), public);
    for (bytes, _) in non_canonical_keys() {
        assert!(matches!(
            Keypair::from_pkcs8_pem(&with_public(bytes)),
            Err(KeyError::BadPrivateKeyFile(_))
        ));
    }
}
