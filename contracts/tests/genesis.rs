//! Genesis: the example park, every validation error, hash stability.

use symbiont_contracts::genesis::{Genesis, GenesisError, MAX_TOTAL_VOTING_POWER, Unit};
use symbiont_contracts::keys::Keypair;

const KALUNDBORG: &str = include_str!("../../deploy/genesis/kalundborg.toml");

fn key(seed: u8) -> String {
    Keypair::from_seed([seed; 32]).public().to_string()
}

/// A small valid genesis; tests break one thing at a time.
fn minimal() -> String {
    format!(
        r#"
chain_id = "test-park"
genesis_time_ms = 1000

[currency]
code = "EUR"
minor_units = 2

[consensus]
timeout_propose_ms = 1000
timeout_prevote_ms = 500
timeout_precommit_ms = 500
timeout_delta_ms = 250
max_block_txs = 100
max_block_bytes = 1048576
max_clock_drift_ms = 2000

[[firms]]
id = "plant-a"
name = "Plant A"
admin_key = "{a}"

[[firms]]
id = "plant-b"
name = "Plant B"
admin_key = "{b}"

[[nodes]]
id = "node-a"
firm = "plant-a"
site = "Site A"
key = "{na}"
validator = true
power = 5

[[nodes]]
id = "node-b"
firm = "plant-b"
site = "Site B"
key = "{nb}"

[[resource_kinds]]
id = "steam"
name = "Steam"
unit = "t"
emission_factor_g = 170000
quality = ["temperature_c"]

[[resource_kinds]]
id = "sludge"
name = "Sludge"
unit = "t"
emission_factor_g = 50000
waste = true
ewc_code = "19 08 05"
"#,
        a = key(1),
        b = key(2),
        na = key(3),
        nb = key(4)
    )
}

fn check(text: &str) -> Result<Genesis, GenesisError> {
    Genesis::from_toml(text)
}

#[test]
fn kalundborg_example_is_valid() {
    let genesis = check(KALUNDBORG).unwrap();
    assert_eq!(genesis.chain_id, "kalundborg-1");
    assert_eq!(genesis.firms.len(), 8);
    assert_eq!(genesis.validators().count(), 4);
    assert_eq!(genesis.total_power(), 40);
    let kinds: Vec<&str> = genesis
        .resource_kinds
        .iter()
        .map(|k| k.id.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "steam",
            "district-heat",
            "process-water",
            "gypsum",
            "fly-ash",
            "sludge",
            "co2"
        ]
    );
    assert!(genesis.firms.iter().any(|f| f.facilitator));
}

#[test]
fn minimal_is_valid_and_defaults_apply() {
    let genesis = check(&minimal()).unwrap();
    assert!(!genesis.nodes[1].validator);
    assert_eq!(genesis.nodes[1].power, 0);
    assert_eq!(genesis.resource_kinds[0].unit, Unit::Tonne);
    assert_eq!(genesis.resource_kinds[0].ewc_code, None);
}

#[test]
fn hash_ignores_comments_and_layout_but_not_content() {
    let base = check(&minimal()).unwrap().hash();
    let commented = format!(
        "# a comment\n\n{}\n# trailing\n",
        minimal().replace("power = 5", "power   =   5 # five")
    );
    assert_eq!(check(&commented).unwrap().hash(), base);
    let changed = minimal().replace("power = 5", "power = 6");
    assert_ne!(check(&changed).unwrap().hash(), base);
}

fn expect_error(text: String, predicate: impl Fn(&GenesisError) -> bool) {
    match check(&text) {
        Ok(_) => panic!("accepted an invalid genesis"),
        Err(error) => {
            assert!(predicate(&error), "unexpected error: {error:?}");
            assert!(!error.to_string().is_empty());
        }
    }
}

#[test]
fn duplicate_ids() {
    expect_error(
        minimal()
            .replace("id = \"plant-b\"", "id = \"plant-a\"")
            .replace("firm = \"plant-b\"", "firm = \"plant-a\""),
        |e| matches!(e, GenesisError::DuplicateId { what: "firm", id } if id == "plant-a"),
    );
    expect_error(
        minimal().replace("id = \"node-b\"", "id = \"node-a\""),
        |e| matches!(e, GenesisError::DuplicateId { what: "node", .. }),
    );
    expect_error(
        minimal().replace("id = \"sludge\"", "id = \"steam\""),
        |e| {
            matches!(
                e,
                GenesisError::DuplicateId {
                    what: "resource kind",
                    ..
                }
            )
        },
    );
    expect_error(
        minimal().replace("quality = [\"temperature_c\"]", "quality = [\"t\", \"t\"]"),
        |e| {
            matches!(
                e,
                GenesisError::DuplicateId {
                    what: "quality field",
                    ..
                }
            )
        },
    );
}

#[test]
fn duplicate_key() {
    expect_error(
        minimal().replace(&key(4), &key(1)),
        |e| matches!(e, GenesisError::DuplicateKey { first, second, .. } if first.contains("plant-a") && second.contains("node-b")),
    );
}

#[test]
fn zero_power_and_power_without_validator() {
    expect_error(
        minimal().replace("power = 5", "power = 0"),
        |e| matches!(e, GenesisError::ZeroPower { node } if node == "node-a"),
    );
    expect_error(minimal().replace("validator = true\npower = 5", ""), |e| {
        matches!(e, GenesisError::NoValidators)
    });
    expect_error(minimal().replace("validator = true\n", ""), |e| {
        matches!(e, GenesisError::PowerWithoutValidator { power: 5, .. })
    });
}

/// `minimal()` with validator powers `a` (node-a) and `b` (a new node-c).
fn with_powers(a: u64, b: u64) -> String {
    minimal().replace("power = 5", &format!("power = {a}"))
        + &format!(
            "\n[[nodes]]\nid = \"node-c\"\nfirm = \"plant-a\"\nsite = \"C\"\nkey = \"{}\"\nvalidator = true\npower = {b}\n",
            key(5),
        )
}

#[test]
fn total_power_is_at_most_max_total_voting_power() {
    // The largest total consensus can count with (3 x total fits in u64).
    let half = MAX_TOTAL_VOTING_POWER / 2;
    let max = with_powers(half, MAX_TOTAL_VOTING_POWER - half);
    assert_eq!(check(&max).unwrap().total_power(), MAX_TOTAL_VOTING_POWER);
    // One more is refused, although it fits in a u64.
    let over = with_powers(half, MAX_TOTAL_VOTING_POWER - half + 1);
    let total = u128::from(MAX_TOTAL_VOTING_POWER) + 1;
    expect_error(
        over.clone(),
        |e| matches!(e, GenesisError::TotalPowerTooLarge { total: t } if *t == total),
    );
    let message = check(&over).unwrap_err().to_string();
    assert!(
        message.contains(&MAX_TOTAL_VOTING_POWER.to_string()) && message.contains("u64::MAX / 3"),
        "{message}"
    );
    // Beyond u64 too: the total is exact, not wrapped.
    expect_error(
        with_powers(u64::MAX, u64::MAX),
        |e| matches!(e, GenesisError::TotalPowerTooLarge { total } if *total == 2 * u128::from(u64::MAX)),
    );
}

#[test]
fn unknown_firm() {
    expect_error(
        minimal().replace("firm = \"plant-b\"", "firm = \"plant-z\""),
        |e| matches!(e, GenesisError::UnknownFirm { node, firm } if node == "node-b" && firm == "plant-z"),
    );
}

#[test]
fn bad_keys() {
    // Not the text form: a parse error that names the line.
    expect_error(
        minimal().replace(&key(1), "ed25519:1234"),
        |e| matches!(e, GenesisError::Parse(message) if message.contains("ed25519:") && message.contains("line")),
    );
    // Well-formed text, but the identity point: unusable.
    let identity = format!("ed25519:01{}", "00".repeat(31));
    expect_error(
        minimal().replace(&key(2), &identity),
        |e| matches!(e, GenesisError::BadKey { owner, .. } if owner.contains("plant-b")),
    );
}

#[test]
fn bad_fields() {
    expect_error(minimal().replace("test-park", "Test Park"), |e| {
        matches!(
            e,
            GenesisError::InvalidField {
                what: "chain_id",
                ..
            }
        )
    });
    expect_error(minimal().replace("\"EUR\"", "\"euro\""), |e| {
        matches!(
            e,
            GenesisError::InvalidField {
                what: "currency code",
                ..
            }
        )
    });
    expect_error(
        minimal().replace("minor_units = 2", "minor_units = 9"),
        |e| matches!(e, GenesisError::InvalidField { .. }),
    );
    expect_error(
        minimal().replace("name = \"Plant A\"", "name = \"\""),
        |e| {
            matches!(
                e,
                GenesisError::InvalidField {
                    what: "firm name",
                    ..
                }
            )
        },
    );
    expect_error(
        minimal().replace("unit = \"t\"", "unit = \"barrel\""),
        |e| matches!(e, GenesisError::Parse(_)),
    );
    expect_error(
        minimal().replace("ewc_code = \"19 08 05\"", "ewc_code = \"190805\""),
        |e| {
            matches!(
                e,
                GenesisError::InvalidField {
                    what: "EWC code",
                    ..
                }
            )
        },
    );
    expect_error(
        minimal().replace("ewc_code = \"19 08 05\"", ""),
        |e| matches!(e, GenesisError::WasteWithoutCode { kind } if kind == "sludge"),
    );
}

#[test]
fn unknown_fields_are_refused() {
    expect_error(
        minimal().replace("power = 5", "power = 5\npowr = 6"),
        |e| matches!(e, GenesisError::Parse(message) if message.contains("powr")),
    );
}

#[test]
fn bad_consensus_parameters() {
    expect_error(
        minimal().replace("timeout_propose_ms = 1000", "timeout_propose_ms = 0"),
        |e| {
            matches!(
                e,
                GenesisError::BadParameter {
                    name: "timeout_propose_ms",
                    ..
                }
            )
        },
    );
    expect_error(
        minimal().replace("max_block_bytes = 1048576", "max_block_bytes = 1000"),
        |e| {
            matches!(
                e,
                GenesisError::BadParameter {
                    name: "max_block_bytes",
                    ..
                }
            )
        },
    );
    // Above 8 MiB: a block would not fit a gossip message.
    expect_error(
        minimal().replace("max_block_bytes = 1048576", "max_block_bytes = 8388609"),
        |e| {
            matches!(
                e,
                GenesisError::BadParameter {
                    name: "max_block_bytes",
                    ..
                }
            )
        },
    );
    expect_error(
        minimal().replace("max_block_txs = 100\n", ""),
        |e| matches!(e, GenesisError::Parse(m) if m.contains("max_block_txs")),
    );
}

#[test]
fn no_firms() {
    let text = minimal();
    let cut = text.find("[[firms]]").unwrap();
    let text = text[..cut].replace(
        "genesis_time_ms = 1000",
        "genesis_time_ms = 1000\nfirms = []\nnodes = []\nresource_kinds = []",
    );
    expect_error(text, |e| matches!(e, GenesisError::Empty { what: "firm" }));
}

#[test]
fn every_timeout_must_be_above_zero() {
    for name in [
        "timeout_propose_ms",
        "timeout_prevote_ms",
        "timeout_precommit_ms",
        "timeout_delta_ms",
        "max_clock_drift_ms",
        "max_block_txs",
    ] {
        let text = minimal();
        let line = text
            .lines()
            .find(|line| line.starts_with(&format!("{name} = ")))
            .unwrap();
        let zero = text.replace(line, &format!("{name} = 0"));
        expect_error(
            zero.clone(),
            |e| matches!(e, GenesisError::BadParameter { name: n, .. } if *n == name),
        );
        let message = check(&zero).unwrap_err().to_string();
        assert!(
            message.contains(name) && message.contains("must be above 0"),
            "{message}"
        );
    }
}

/// The rule for names and sites, as the doc and the error message state it.
const NAME_RULE: &str = "must contain a non-whitespace character, be at most 128 bytes, \
                         and contain no control characters";

#[test]
fn names_and_sites_follow_the_stated_rule() {
    let cases = [
        ("name = \"Plant A\"", "name = \"{}\"", "firm name"),
        ("site = \"Site A\"", "site = \"{}\"", "node site"),
        ("name = \"Steam\"", "name = \"{}\"", "resource kind name"),
    ];
    for (original, template, what) in cases {
        let with = |value: &str| minimal().replace(original, &template.replace("{}", value));
        for bad in [
            "",
            " ",
            "\\t \\u00a0",
            "Plant\\nA",
            "Plant\\u007fA",
            &"x".repeat(129),
        ] {
            let text = with(bad);
            expect_error(
                text.clone(),
                |e| matches!(e, GenesisError::InvalidField { what: w, .. } if *w == what),
            );
            let message = check(&text).unwrap_err().to_string();
            assert!(message.contains(NAME_RULE), "{message}");
        }
        // At the limits: one non-blank character, 128 bytes (here 64 two-byte
        // characters), inner spaces.
        for good in [" x ", &"x".repeat(128), &"ø".repeat(64), "Plant  A"] {
            check(&with(good)).unwrap();
        }
    }
}

#[test]
fn id_rule_states_the_length() {
    let long_chain = "c".repeat(65);
    let message = check(&minimal().replace("test-park", &long_chain))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("must be 1 to 64 characters, each a lowercase"),
        "{message}"
    );
    check(&minimal().replace("test-park", &"c".repeat(64))).unwrap();
    let long_id = "n".repeat(33);
    let message = check(&minimal().replace("\"node-b\"", &format!("\"{long_id}\"")))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("must be 1 to 32 characters, each a lowercase"),
        "{message}"
    );
}

#[test]
fn a_key_cannot_appear_twice_under_two_encodings() {
    // y = 3 written canonically, and as y = p + 3 (p = 2^255 - 19).
    let canonical = format!("ed25519:03{}", "00".repeat(31));
    let aliased = format!("ed25519:f0{}7f", "ff".repeat(30));
    let both = minimal()
        .replace(&key(2), &canonical)
        .replace(&key(4), &aliased);
    expect_error(
        both,
        |e| matches!(e, GenesisError::Parse(m) if m.contains("not the canonical encoding") && m.contains(&canonical)),
    );
    // The canonical one alone is a usable key.
    check(&minimal().replace(&key(2), &canonical)).unwrap();
}
