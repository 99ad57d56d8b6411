//! Golden bytes of the application's transaction kinds, state keys and
//! app hash, built by hand (tests/support) from the layout in
//! docs/ledger-format.md, so an auditor's own implementation can match them.

mod support;

use support::Bytes;
use symbiont_contracts::codec::encode;
use symbiont_contracts::hash::Hash;
use symbiont_contracts::state::{
    self, AvoidedAccount, Key, PoolPeriod, PoolPosting, PostingStatus, WriteSet,
};
use symbiont_contracts::tx::{Account, TxKind};

#[test]
fn settle_period_kind_layout() {
    let kind = TxKind::SettlePeriod {
        contract: Hash([7; 32]),
        period: 3,
    };
    let expected = Bytes::default().variant(16).raw(&[7; 32]).u32(3);
    assert_eq!(encode(&kind), expected.0);
}

#[test]
fn acknowledge_payment_kind_layout() {
    let kind = TxKind::AcknowledgePayment {
        payer: Account::Firm("pharma".into()),
        payee: Account::Pool(Hash([9; 32])),
        amount: -5,
    };
    let expected = Bytes::default()
        .variant(17)
        .variant(0)
        .str("pharma")
        .variant(1)
        .raw(&[9; 32])
        .u64(-5i64 as u64);
    assert_eq!(encode(&kind), expected.0);
}

#[test]
fn resolve_dispute_is_kind_22() {
    let kind = TxKind::ResolveDispute {
        contract: Hash::ZERO,
        period: 0,
        adjustment: 1,
    };
    assert_eq!(encode(&kind)[..4], 22u32.to_le_bytes());
}

#[test]
fn join_pool_kind_layout() {
    let kind = TxKind::JoinPool {
        pool: Hash([4; 32]),
    };
    let expected = Bytes::default().variant(23).raw(&[4; 32]);
    assert_eq!(encode(&kind), expected.0);
    assert_eq!(hex(&encode(&kind)), format!("17000000{}", "04".repeat(32)));
}

#[test]
fn object_pool_amount_kind_layout() {
    let kind = TxKind::ObjectPoolAmount {
        pool: Hash([4; 32]),
        period: 2,
        posting: Hash([6; 32]),
    };
    let expected = Bytes::default()
        .variant(24)
        .raw(&[4; 32])
        .u32(2)
        .raw(&[6; 32]);
    assert_eq!(encode(&kind), expected.0);
    assert_eq!(
        hex(&encode(&kind)),
        format!("18000000{}02000000{}", "04".repeat(32), "06".repeat(32))
    );
}

#[test]
fn resolve_pool_objection_is_the_last_kind() {
    let kind = TxKind::ResolvePoolObjection {
        pool: Hash([4; 32]),
        period: 2,
        posting: Hash([6; 32]),
        accept: true,
    };
    let expected = Bytes::default()
        .variant(25)
        .raw(&[4; 32])
        .u32(2)
        .raw(&[6; 32])
        .bool(true);
    assert_eq!(encode(&kind), expected.0);
    assert_eq!(
        hex(&encode(&kind)),
        format!("19000000{}02000000{}01", "04".repeat(32), "06".repeat(32))
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn state_key_layouts() {
    let balance = Key::Balance(Account::Firm("power".into()));
    assert_eq!(
        balance.bytes(),
        Bytes::default().variant(12).variant(0).str("power").0
    );
    let period = Key::Period {
        contract: Hash([1; 32]),
        period: 2,
    };
    assert_eq!(
        period.bytes(),
        Bytes::default().variant(11).raw(&[1; 32]).u32(2).0
    );
    let network = Key::Avoided(AvoidedAccount::Network);
    assert_eq!(network.bytes(), Bytes::default().variant(14).variant(1).0);
    assert_eq!(
        Key::Receipt(Hash([3; 32])).bytes(),
        Bytes::default().variant(17).raw(&[3; 32]).0
    );
}

#[test]
fn pool_period_record_layout() {
    let record = PoolPeriod {
        gain_net: -3,
        split: None,
        postings: vec![PoolPosting {
            id: Hash([6; 32]),
            member: "city".into(),
            amount: 40,
            status: PostingStatus::Objected {
                by: "power".into(),
                at_ms: 9,
            },
        }],
    };
    let expected = Bytes::default()
        .u64(-3i64 as u64)
        .u8(0)
        .len(1)
        .raw(&[6; 32])
        .str("city")
        .u64(40)
        .variant(1)
        .str("power")
        .u64(9);
    assert_eq!(encode(&record), expected.0);
}

#[test]
fn app_hash_layout() {
    let previous = Hash([5; 32]);
    let writes: WriteSet = vec![(vec![1, 2], Some(vec![3])), (vec![4], None)];
    let bytes = Bytes::default()
        .raw(&[5; 32])
        .len(2)
        .len(2)
        .raw(&[1, 2])
        .u8(1)
        .len(1)
        .raw(&[3])
        .len(1)
        .raw(&[4])
        .u8(0);
    assert_eq!(
        state::app_hash(&previous, &writes),
        Hash(*blake3::hash(&bytes.0).as_bytes())
    );
}
