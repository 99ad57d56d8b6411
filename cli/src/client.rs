//! Talking to a node over gRPC: connect, refusals, and submitting a signed
//! transaction until it is committed.
//!
//! Nonces. [`submit_all`] asks the node for the signer's next free nonce
//! (Query.GetSigner: the committed next nonce, past the key's transactions
//! waiting in that node's mempool) and signs from there. Races are
//! corrected from the refusals: a `bad_nonce` refusal says "... is used
//! already: the next is N" (docs/api.md), and the transaction is signed
//! again with N; a `nonce_taken` refusal (another transaction of the key
//! with that nonce waits in the mempool) moves on to the following nonce.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use symbiont_contracts::keys::Keypair;
use symbiont_contracts::tx::{SignedTx, TxBody, TxKind};
use symbiont_proto::v1::node_client::NodeClient;
use symbiont_proto::v1::query_client::QueryClient;
use symbiont_proto::v1::stream_client::StreamClient;
use symbiont_proto::v1::{GetSignerRequest, GetTxRequest, StatusRequest, SubmitTxRequest, TxState};
use tonic::transport::{Channel, Endpoint};

/// How long to wait for a node to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often [`submit`] asks whether the transaction is committed.
const POLL: Duration = Duration::from_millis(50);
/// At most this many submissions of one transaction are tried past
/// nonce refusals (a signer can have 64 transactions waiting).
const MAX_NONCE_STEPS: usize = 70;
/// How many transactions of one batch wait to be committed at once: the
/// node refuses nonces more than 16 ahead of the signer's next one.
const WINDOW: usize = 16;

/// The options every command that talks to a node takes.
#[derive(Clone, Debug)]
pub struct Global {
    pub node: String,
    pub key: Option<std::path::PathBuf>,
    pub json: bool,
    pub timeout: Duration,
}

impl Global {
    /// The signing key (`--key`).
    pub fn keypair(&self) -> Result<Keypair> {
        let Some(path) = &self.key else {
            bail!("this command signs a transaction: give the signer's key file with --key FILE");
        };
        symbiont_node::keyfile::read(path)
            .with_context(|| format!("cannot read the key {}", path.display()))
    }
}

/// A client config file: which node to talk to and which key signs.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub node: Option<String>,
    pub key: Option<std::path::PathBuf>,
}

impl ClientConfig {
    /// Reads `path`; a relative `key` is taken relative to the file's directory.
    pub fn read(path: &std::path::Path) -> Result<ClientConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the client config {}", path.display()))?;
        let mut config: ClientConfig = toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a client config (node = \"http://host:port\", key = \"file.pem\")",
                path.display()
            )
        })?;
        if let (Some(key), Some(dir)) = (&config.key, path.parent())
            && key.is_relative()
        {
            config.key = Some(dir.join(key));
        }
        Ok(config)
    }
}

/// Prints a submission's outcome (a sentence, or JSON with --json); an
/// outcome other than applied is an error (exit status 1).
pub fn report(outcome: &Outcome, json: bool) -> Result<()> {
    use crate::output::outln;
    if json {
        outln!("{}", serde_json::to_string_pretty(outcome)?)?;
    } else if outcome.succeeded() {
        outln!("{}", outcome.sentence())?;
    }
    if outcome.succeeded() {
        Ok(())
    } else {
        bail!("{}", outcome.sentence())
    }
}

/// The clients of the three services on one connection (clones share it).
#[derive(Clone)]
pub struct Client {
    pub node: NodeClient<Channel>,
    pub query: QueryClient<Channel>,
    pub stream: StreamClient<Channel>,
}

/// A current-thread runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub async fn connect(url: &str) -> Result<Client> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .with_context(|| format!("--node {url:?} is not a URL (like http://127.0.0.1:9090)"))?
        .connect_timeout(CONNECT_TIMEOUT);
    let channel = endpoint.connect().await.map_err(|e| {
        anyhow!(
            "cannot reach the node at {url}: {e} (is it running? --node or SYMBIONT_NODE say where)"
        )
    })?;
    Ok(Client {
        node: NodeClient::new(channel.clone()),
        query: QueryClient::new(channel.clone()),
        stream: StreamClient::new(channel),
    })
}

/// A refused call: the stable code and the node's sentence.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

impl Refusal {
    /// The code from the `symbiont-code` trailer, else the message's
    /// prefix, else the gRPC status code in snake case.
    pub fn from_status(status: &tonic::Status) -> Refusal {
        let message = status.message().to_string();
        let code = status
            .metadata()
            .get("symbiont-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| {
                let (prefix, _) = message.split_once(':')?;
                let stable = !prefix.is_empty()
                    && prefix.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
                stable.then(|| prefix.to_string())
            })
            .unwrap_or_else(|| grpc_code_name(status.code()));
        Refusal { code, message }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.starts_with(&format!("{}:", self.code)) {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

impl std::error::Error for Refusal {}

fn grpc_code_name(code: tonic::Code) -> String {
    let name = format!("{code:?}");
    let mut snake = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    snake
}

/// A refused call as an error: "refused: code: message".
pub fn refused(status: tonic::Status) -> anyhow::Error {
    anyhow::Error::new(Refusal::from_status(&status)).context("the node refused")
}

/// The nonce a `bad_nonce` refusal names: "... the next is N".
pub fn next_nonce_of(message: &str) -> Option<u64> {
    let (_, rest) = message.rsplit_once("the next is ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// What became of a submitted transaction.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Committed and applied.
    Applied {
        tx_id: String,
        nonce: u64,
        height: u64,
        index: u32,
    },
    /// Committed and failed with a result code: it changed nothing but its
    /// receipt and the signer's nonce.
    Failed {
        tx_id: String,
        nonce: u64,
        height: u64,
        index: u32,
        code: String,
        advice: String,
    },
    /// Not admitted by the node.
    Refused { code: String, message: String },
    /// Admitted but not seen committed within the timeout.
    Timeout {
        tx_id: String,
        nonce: u64,
        state: String,
        waited_s: u64,
    },
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        matches!(self, Outcome::Applied { .. })
    }

    /// One line for people.
    pub fn sentence(&self) -> String {
        match self {
            Outcome::Applied {
                tx_id,
                height,
                index,
                ..
            } => {
                format!("committed: transaction {tx_id} applied at height {height}, index {index}")
            }
            Outcome::Failed {
                tx_id,
                height,
                index,
                code,
                advice,
                ..
            } => format!(
                "committed but failed: transaction {tx_id} at height {height}, index {index}: {code}. {advice}"
            ),
            Outcome::Refused { code, message } => {
                let message = message
                    .strip_prefix(&format!("{code}: "))
                    .unwrap_or(message);
                format!("refused: {code}: {message}")
            }
            Outcome::Timeout {
                tx_id,
                state,
                waited_s,
                ..
            } => format!(
                "timeout: transaction {tx_id} not committed within {waited_s} s (it is {state} at this node); `symbiont tx show {tx_id}` tells what became of it"
            ),
        }
    }
}

/// What to do about a transaction that failed with `code`.
pub fn advice(code: &str) -> &'static str {
    match code {
        "unauthorized" | "wrong_firm" => {
            "Sign with the right key: the firm's admin key for key and governance changes, an operator key for market and contract actions."
        }
        "unknown_signer" => {
            "The key is no longer a key of a member firm: have the firm's admin authorize it."
        }
        "unknown_firm" => "Check the firm id (`symbiont firm` commands name firms by id).",
        "key_in_use" => {
            "That key belongs to a firm already: generate a new one (`symbiont keys gen`)."
        }
        "invalid_key" => {
            "The key is not a valid ed25519 public key: check it (`symbiont keys show`)."
        }
        "unknown_key" => "The firm has no such key: check it against the firm's keys.",
        "cannot_revoke_admin" => {
            "A firm's admin key cannot be revoked; it is changed by governance."
        }
        "unknown_kind" => "No such resource kind: use a kind id the network registered.",
        "licence_missing" | "licence_expired" => {
            "Waste needs a valid licence of the taking firm: ask the facilitator to grant it."
        }
        "facilitator_trades" => {
            "The facilitator firm does not trade: sign with a member firm's key."
        }
        "unknown_listing" => "No such listing: check the id with `symbiont market list`.",
        "listing_closed" | "listing_expired" => "The listing can no longer be accepted.",
        "own_listing" => "A firm cannot accept its own listing.",
        "not_owner" => "Only the firm that posted a listing can withdraw it.",
        "invalid" => "A field of the transaction is out of range: check the values.",
        _ => {
            "Nothing changed but the signer's nonce: fix the cause the code names and submit again."
        }
    }
}

/// Signs `kind` with `key` (chain id from the node's Status, nonce as the
/// module documentation says), submits it and waits up to `timeout` for it
/// to be committed.
pub async fn submit(
    client: &mut Client,
    key: &Keypair,
    kind: TxKind,
    timeout: Duration,
) -> Result<Outcome> {
    let row = crate::common::Row {
        label: String::new(),
        kind,
        not_before_ms: 0,
    };
    let mut outcomes = submit_all(client, key, vec![row], timeout, |_| ()).await?;
    Ok(outcomes.remove(0))
}

/// A transaction submitted and not yet seen committed.
struct InFlight {
    row: usize,
    tx: SignedTx,
    nonce: u64,
    since: Instant,
}

/// Signs and submits the rows' transactions in order (each not before its
/// `not_before_ms`) with consecutive nonces of `key`,
/// keeping up to [`WINDOW`] of them waiting at once, and waits for each to
/// be committed (`timeout` from its own submission). Returns one outcome
/// per row, in order; `progress` is called with each outcome as it is
/// known. A refused transaction does not use its nonce: the next kind is
/// signed with it.
pub async fn submit_all(
    client: &mut Client,
    key: &Keypair,
    rows: Vec<crate::common::Row>,
    timeout: Duration,
    mut progress: impl FnMut(&Outcome),
) -> Result<Vec<Outcome>> {
    let status = client
        .node
        .status(StatusRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    let chain_id = status.chain_id;
    let signer = client
        .query
        .get_signer(GetSignerRequest {
            public_key: key.public().0.to_vec(),
        })
        .await
        .map_err(refused)?
        .into_inner();
    let mut outcomes: Vec<Option<Outcome>> = rows.iter().map(|_| None).collect();
    let mut in_flight = std::collections::VecDeque::<InFlight>::new();
    let mut nonce = signer.next_free_nonce.max(1);
    for (
        row,
        crate::common::Row {
            kind,
            not_before_ms,
            ..
        },
    ) in rows.into_iter().enumerate()
    {
        crate::common::sleep_until_ms(not_before_ms).await;
        let mut steps = 0;
        loop {
            if in_flight.len() >= WINDOW {
                let done = in_flight.pop_front().expect("window is not empty");
                let outcome = wait_committed(client, done, timeout).await?;
                progress(&outcome.1);
                outcomes[outcome.0] = Some(outcome.1);
            }
            let tx = SignedTx::sign(
                TxBody {
                    chain_id: chain_id.clone(),
                    nonce,
                    kind: kind.clone(),
                },
                key,
            );
            let answer = client
                .node
                .submit_tx(SubmitTxRequest { tx: tx.to_bytes() })
                .await;
            let refusal = match answer {
                Ok(_) => None,
                Err(status) => Some(Refusal::from_status(&status)),
            };
            steps += 1;
            // Admitted; ALREADY_EXISTS is safe as success when retrying
            // (docs/api.md).
            let refusal = refusal.filter(|r| r.code != "duplicate" && r.code != "already_included");
            if let Some(r) = refusal {
                match r.code.as_str() {
                    _ if steps >= MAX_NONCE_STEPS => {}
                    "bad_nonce" => match next_nonce_of(&r.message) {
                        Some(next) if next > nonce => {
                            nonce = next;
                            continue;
                        }
                        _ => {}
                    },
                    "nonce_taken" => {
                        nonce += 1;
                        continue;
                    }
                    // Too many of ours waiting: let the oldest commit.
                    "nonce_too_far_ahead" | "signer_full" | "mempool_full" => {
                        match in_flight.pop_front() {
                            Some(done) => {
                                let (done_row, outcome) =
                                    wait_committed(client, done, timeout).await?;
                                progress(&outcome);
                                outcomes[done_row] = Some(outcome);
                            }
                            None => tokio::time::sleep(POLL).await,
                        }
                        continue;
                    }
                    _ => {}
                }
                // Refused for good: the row's outcome; its nonce is unused.
                let outcome = refused_outcome(r);
                progress(&outcome);
                outcomes[row] = Some(outcome);
                break;
            }
            in_flight.push_back(InFlight {
                row,
                tx,
                nonce,
                since: Instant::now(),
            });
            nonce += 1;
            break;
        }
    }
    while let Some(done) = in_flight.pop_front() {
        let outcome = wait_committed(client, done, timeout).await?;
        progress(&outcome.1);
        outcomes[outcome.0] = Some(outcome.1);
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every row has an outcome"))
        .collect())
}

/// Polls until `sent` is committed or `timeout` has passed since it was
/// submitted.
async fn wait_committed(
    client: &mut Client,
    sent: InFlight,
    timeout: Duration,
) -> Result<(usize, Outcome)> {
    let tx_id = hex::encode(sent.tx.id().0);
    let nonce = sent.nonce;
    loop {
        let answer = client
            .node
            .get_tx(GetTxRequest {
                tx_id: sent.tx.id().0.to_vec(),
            })
            .await
            .map_err(refused)?
            .into_inner();
        if answer.state() == TxState::Committed {
            let outcome = if answer.error.is_empty() {
                Outcome::Applied {
                    tx_id,
                    nonce,
                    height: answer.height,
                    index: answer.index,
                }
            } else {
                Outcome::Failed {
                    tx_id,
                    nonce,
                    height: answer.height,
                    index: answer.index,
                    advice: advice(&answer.error).to_string(),
                    code: answer.error,
                }
            };
            return Ok((sent.row, outcome));
        }
        if sent.since.elapsed() >= timeout {
            return Ok((
                sent.row,
                Outcome::Timeout {
                    tx_id,
                    nonce,
                    state: tx_state_name(answer.state()).to_string(),
                    waited_s: timeout.as_secs(),
                },
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn refused_outcome(refusal: Refusal) -> Outcome {
    Outcome::Refused {
        code: refusal.code,
        message: refusal.message,
    }
}

pub fn tx_state_name(state: TxState) -> &'static str {
    match state {
        TxState::Unspecified | TxState::Unknown => "unknown",
        TxState::Pending => "pending",
        TxState::Committed => "committed",
    }
}

/// A 32-byte id given as 64 hex digits.
pub fn parse_id(text: &str) -> Result<[u8; 32]> {
    let mut id = [0u8; 32];
    if text.len() != 64 || hex::decode_to_slice(text, &mut id).is_err() {
        bail!("{text:?} is not an id: 64 hex digits expected");
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_nonce_is_read_from_a_bad_nonce_message() {
        assert_eq!(
            next_nonce_of("bad_nonce: nonce 3 of ed25519:3b6a is used already: the next is 5"),
            Some(5)
        );
        assert_eq!(next_nonce_of("bad_nonce: something else"), None);
    }

    #[test]
    fn a_refusal_code_comes_from_the_trailer_or_the_message() {
        let status = tonic::Status::failed_precondition("bad_nonce: nonce 1 ...: the next is 2");
        assert_eq!(Refusal::from_status(&status).code, "bad_nonce");
        let status = tonic::Status::unavailable("shutting down");
        assert_eq!(Refusal::from_status(&status).code, "unavailable");
    }
}
