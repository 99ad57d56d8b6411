//! The golden vectors written in docs/ledger-format.md, read from the
//! document itself, so that the document cannot drift from the code.
//!
//! A vector is a fenced block whose info string is `vector NAME`. Each line
//! holds hex bytes separated by spaces; `XX*N` is the byte `XX` N times;
//! anything from `#` to the end of the line is a comment.

use std::collections::BTreeMap;

pub const LEDGER_FORMAT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/ledger-format.md"
));

/// Vector name prefixes pinned by the node's tests (blocks and consensus
/// records); the contracts crate's tests pin every other vector.
pub const NODE_PREFIXES: &[&str] = &[
    "block.",
    "vote.",
    "proposal.",
    "certificate.",
    "evidence.",
    "validator_set.",
];

pub fn is_node_vector(name: &str) -> bool {
    NODE_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// Every vector of the document, by name. Panics on a malformed block or
/// a name used twice.
pub fn vectors() -> BTreeMap<String, Vec<u8>> {
    parse(LEDGER_FORMAT)
}

pub fn parse(text: &str) -> BTreeMap<String, Vec<u8>> {
    let mut vectors = BTreeMap::new();
    let mut current: Option<(String, Vec<u8>)> = None;
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        match current.as_mut() {
            None => {
                if let Some(name) = line.trim().strip_prefix("```vector ") {
                    current = Some((name.trim().to_string(), Vec::new()));
                }
            }
            Some((name, bytes)) => {
                if line.trim() == "```" {
                    let (name, bytes) = current.take().expect("in a vector");
                    assert!(!bytes.is_empty(), "vector {name} is empty");
                    let previous = vectors.insert(name.clone(), bytes);
                    assert!(previous.is_none(), "vector {name} appears twice");
                    continue;
                }
                let data = line.split('#').next().expect("split gives one part");
                for token in data.split_whitespace() {
                    parse_token(token, bytes)
                        .unwrap_or_else(|e| panic!("line {number}, vector {name}: {e}"));
                }
            }
        }
    }
    assert!(current.is_none(), "a vector block is not closed");
    vectors
}

fn parse_token(token: &str, out: &mut Vec<u8>) -> Result<(), String> {
    if let Some((digits, count)) = token.split_once('*') {
        if digits.len() != 2 || digits.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "{token:?}: a repeated byte is two lowercase hex digits"
            ));
        }
        let byte = u8::from_str_radix(digits, 16).map_err(|e| format!("{token:?}: {e}"))?;
        let count: usize = count.parse().map_err(|e| format!("{token:?}: {e}"))?;
        out.extend(std::iter::repeat_n(byte, count));
        return Ok(());
    }
    if !token.len().is_multiple_of(2) || token.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "{token:?}: an even number of lowercase hex digits expected"
        ));
    }
    out.extend(hex::decode(token).map_err(|e| format!("{token:?}: {e}"))?);
    Ok(())
}

/// Lowercase hex, wrapped at 32 bytes a line: how vectors are written.
pub fn to_block(bytes: &[u8]) -> String {
    bytes
        .chunks(32)
        .map(hex::encode)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compares computed vectors with the document's (only names for which
/// `mine` holds): every computed vector must be in the document with the
/// same bytes, and every document vector of `mine` must be computed.
/// On a mismatch, prints each differing vector as it should be written.
pub fn check_against_document(computed: &BTreeMap<String, Vec<u8>>, mine: impl Fn(&str) -> bool) {
    let document = vectors();
    let mut problems = Vec::new();
    for (name, bytes) in computed {
        assert!(mine(name), "vector {name} is not this crate's to check");
        match document.get(name) {
            Some(written) if written == bytes => {}
            Some(_) => problems.push(format!(
                "vector {name} differs; the code gives:\n```vector {name}\n{}\n```",
                to_block(bytes)
            )),
            None => problems.push(format!(
                "vector {name} is not in the document; the code gives:\n```vector {name}\n{}\n```",
                to_block(bytes)
            )),
        }
    }
    for name in document.keys().filter(|name| mine(name)) {
        if !computed.contains_key(name) {
            problems.push(format!("document vector {name} is checked by no test"));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n\n"));
}
