//! `symbiont gov`, `kind register` and `licence grant`: changes to the
//! network itself.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use symbiont_contracts::genesis::{ConsensusParams, Firm, Node, ResourceKind, Unit};
use symbiont_contracts::tx::{GovAction, TxKind};
use symbiont_proto::v1 as pb;

use crate::client::{self, Global, connect, refused};
use crate::common::{all_pages, id, submit_one, table};
use crate::firm::public_key;
use crate::output::outln;
use crate::units::{format_time_ms, parse_time_ms};

#[derive(Subcommand)]
pub enum GovCommand {
    /// Propose a change to the network, signed with your firm's admin key
    /// (--key); the proposal counts as your yes vote, and applies once more
    /// than 2/3 of the member firms approve.
    ///
    /// Example: symbiont --key firms/power.pem gov propose add-firm --id hub
    /// --name "Symbiosis hub" --admin-key hub-admin.pem --facilitator
    Propose {
        #[command(subcommand)]
        action: ActionCommand,
        /// Votes are accepted for this long from now (by this machine's clock).
        #[arg(long, default_value = "7d", global = true)]
        expires_in: String,
    },
    /// Vote on an open proposal, signed with your firm's admin key (--key).
    ///
    /// Example: symbiont --key firms/pharma.pem gov vote 2f9b…d1 --yes
    Vote {
        /// The proposal's id (64 hex digits, from `gov list`).
        proposal: String,
        /// Approve it.
        #[arg(long, conflicts_with = "no", required_unless_present = "no")]
        yes: bool,
        /// Reject it.
        #[arg(long)]
        no: bool,
    },
    /// List governance proposals and their votes.
    ///
    /// Example: symbiont gov list --open
    List {
        /// Only proposals that can still be voted on.
        #[arg(long)]
        open: bool,
    },
}

#[derive(Subcommand)]
pub enum ActionCommand {
    /// Admit a firm.
    ///
    /// Example: symbiont --key firms/power.pem gov propose add-firm --id hub
    /// --name "Symbiosis hub" --admin-key hub-admin.pem --facilitator
    AddFirm {
        /// The firm's id (e.g. "hub").
        #[arg(long)]
        id: String,
        /// The firm's name.
        #[arg(long)]
        name: String,
        /// The firm's admin key: public key text (ed25519:…) or a key file.
        #[arg(long)]
        admin_key: String,
        /// A neutral facilitator (registers kinds, arbitrates; trades nothing).
        #[arg(long)]
        facilitator: bool,
    },
    /// Remove a firm (its keys stop signing).
    ///
    /// Example: symbiont --key firms/power.pem gov propose remove-firm cement
    RemoveFirm {
        /// The firm's id.
        id: String,
    },
    /// Admit a node.
    ///
    /// Example: symbiont --key firms/pharma.pem gov propose add-node --id pharma-2
    /// --firm pharma --site "plant B" --key node2.pem --power 1
    AddNode {
        /// The node's id.
        #[arg(long)]
        id: String,
        /// The firm that runs it.
        #[arg(long)]
        firm: String,
        /// Its site (free text, e.g. a host name).
        #[arg(long)]
        site: String,
        /// The node's key: public key text or its key file.
        #[arg(long)]
        key: String,
        /// Voting power (0: a full node that does not validate).
        #[arg(long, default_value_t = 0)]
        power: u64,
    },
    /// Remove a node.
    ///
    /// Example: symbiont --key firms/pharma.pem gov propose remove-node pharma-2
    RemoveNode {
        /// The node's id.
        id: String,
    },
    /// Give a node voting power (0: no longer a validator).
    ///
    /// Example: symbiont --key firms/power.pem gov propose set-power power-1 2
    SetPower {
        /// The node's id.
        node: String,
        /// Its new voting power.
        power: u64,
    },
    /// Replace the consensus parameters with those of a TOML file (the
    /// keys of the genesis file's [consensus] table, at its top level).
    ///
    /// Example: symbiont --key firms/power.pem gov propose set-consensus consensus.toml
    SetConsensus {
        /// The TOML file.
        file: PathBuf,
    },
    /// Register a resource kind by governance.
    ///
    /// Example: symbiont --key firms/power.pem gov propose register-kind --id gypsum
    /// --name Gypsum --unit t --emission-factor-g 120000
    RegisterKind(KindArgs),
}

#[derive(Args)]
pub struct KindArgs {
    /// The kind's id (e.g. "fly-ash").
    #[arg(long)]
    id: String,
    /// Its name.
    #[arg(long)]
    name: String,
    /// Its unit: kWh, MWh, GJ, t or m3.
    #[arg(long)]
    unit: String,
    /// Grams CO2e avoided per unit delivered.
    #[arg(long)]
    emission_factor_g: u64,
    /// A waste: needs an EWC code, and its takers a licence.
    #[arg(long, requires = "ewc_code")]
    waste: bool,
    /// European Waste Catalogue code, "NN NN NN".
    #[arg(long)]
    ewc_code: Option<String>,
    /// A quality field offers and contracts state (repeatable).
    #[arg(long)]
    quality: Vec<String>,
}

impl KindArgs {
    fn kind(self) -> Result<ResourceKind> {
        let unit: Unit = serde_json::from_value(json!(self.unit))
            .map_err(|_| anyhow::anyhow!("--unit {:?}: kWh, MWh, GJ, t or m3", self.unit))?;
        Ok(ResourceKind {
            id: self.id,
            name: self.name,
            unit,
            emission_factor_g: self.emission_factor_g,
            waste: self.waste,
            ewc_code: self.ewc_code,
            quality: self.quality,
        })
    }
}

#[derive(Subcommand)]
pub enum KindCommand {
    /// A facilitator's admin registers a resource kind (--key: the
    /// facilitator's admin key).
    ///
    /// Example: symbiont --key hub-admin.pem kind register --id fly-ash
    /// --name "Fly ash" --unit t --emission-factor-g 800000 --waste --ewc-code "10 01 02"
    Register(KindArgs),
}

#[derive(Subcommand)]
pub enum LicenceCommand {
    /// A facilitator's admin records a firm's licence to take a waste code
    /// (--key: the facilitator's admin key).
    ///
    /// Example: symbiont --key hub-admin.pem licence grant plaster "10 01 02" --until 2028-01-01
    Grant {
        /// The licensed firm.
        firm: String,
        /// The waste's EWC code ("NN NN NN").
        ewc_code: String,
        /// When the licence expires: 2028-01-01, now+365d, ...
        #[arg(long)]
        until: String,
    },
}

pub fn gov(command: GovCommand, global: &Global) -> Result<()> {
    match command {
        GovCommand::Propose { action, expires_in } => {
            let expires_ms = parse_time_ms(&format!("now+{expires_in}"))
                .context("--expires-in (a duration like 7d)")?;
            let action = match action {
                ActionCommand::AddFirm {
                    id,
                    name,
                    admin_key,
                    facilitator,
                } => GovAction::AddFirm(Firm {
                    id,
                    name,
                    admin_key: public_key(&admin_key).context("--admin-key")?,
                    facilitator,
                }),
                ActionCommand::RemoveFirm { id } => GovAction::RemoveFirm { id },
                ActionCommand::AddNode {
                    id,
                    firm,
                    site,
                    key,
                    power,
                } => GovAction::AddNode(Node {
                    id,
                    firm,
                    site,
                    key: public_key(&key).context("--key of the node")?,
                    validator: power > 0,
                    power,
                }),
                ActionCommand::RemoveNode { id } => GovAction::RemoveNode { id },
                ActionCommand::SetPower { node, power } => GovAction::SetPower { node, power },
                ActionCommand::SetConsensus { file } => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let params: ConsensusParams = toml::from_str(&text).with_context(|| {
                        format!("{} is not a [consensus] table", file.display())
                    })?;
                    if let Err(error) = params.check() {
                        bail!("{}: {error}", file.display());
                    }
                    GovAction::SetConsensus(params)
                }
                ActionCommand::RegisterKind(args) => GovAction::RegisterKind(args.kind()?),
            };
            submit_one(global, TxKind::Propose { action, expires_ms }, |outcome| {
                if let client::Outcome::Applied { tx_id, .. } = outcome {
                    outln!(
                        "proposal {tx_id}: other firms' admins vote with `symbiont gov vote {tx_id} --yes`"
                    )?;
                }
                Ok(())
            })
        }
        GovCommand::Vote { proposal, yes, .. } => {
            let proposal = id(&proposal)?;
            submit_one(
                global,
                TxKind::Vote {
                    proposal,
                    approve: yes,
                },
                |_| {
                    outln!("`symbiont gov list` shows whether it passed")?;
                    Ok(())
                },
            )
        }
        GovCommand::List { open } => client::runtime()?.block_on(list(global, open)),
    }
}

pub fn kind(command: KindCommand, global: &Global) -> Result<()> {
    let KindCommand::Register(args) = command;
    let kind = args.kind()?;
    submit_one(global, TxKind::RegisterKind { kind }, |_| Ok(()))
}

pub fn licence(command: LicenceCommand, global: &Global) -> Result<()> {
    let LicenceCommand::Grant {
        firm,
        ewc_code,
        until,
    } = command;
    let expires_ms = parse_time_ms(&until).context("--until")?;
    submit_one(
        global,
        TxKind::GrantLicence {
            firm,
            ewc_code,
            expires_ms,
        },
        |_| Ok(()),
    )
}

async fn list(global: &Global, open_only: bool) -> Result<()> {
    let client = connect(&global.node).await?;
    let (proposals, ()) = all_pages(|page_token| {
        let mut query = client.query.clone();
        async move {
            let answer = query
                .list_proposals(pb::ListProposalsRequest {
                    open_only,
                    page_size: 1000,
                    page_token,
                })
                .await
                .map_err(refused)?
                .into_inner();
            Ok((answer.proposals, answer.next_page_token, ()))
        }
    })
    .await?;
    let votes = |p: &pb::Proposal| {
        p.votes
            .iter()
            .map(|v| format!("{}:{}", v.firm, if v.approve { "yes" } else { "no" }))
            .collect::<Vec<_>>()
    };
    if global.json {
        let items: Vec<_> = proposals
            .iter()
            .map(|p| {
                json!({
                    "id": hex::encode(&p.id),
                    "proposer": p.proposer,
                    "action": p.action_kind,
                    "subject": p.subject,
                    "expires": format_time_ms(p.expires_ms),
                    "status": p.status,
                    "votes": votes(p),
                    "passed_at": (p.passed_at_ms > 0).then(|| format_time_ms(p.passed_at_ms)),
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({ "proposals": items }))?
        )?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = proposals
        .iter()
        .map(|p| {
            vec![
                hex::encode(&p.id),
                p.proposer.clone(),
                format!("{} {}", p.action_kind, p.subject),
                p.status.clone(),
                format_time_ms(p.expires_ms),
                votes(p).join(" "),
            ]
        })
        .collect();
    table(
        &["ID", "PROPOSER", "ACTION", "STATUS", "EXPIRES", "VOTES"],
        &rows,
    )
}
