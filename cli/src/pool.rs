//! `symbiont pool`: shared infrastructure pools, their postings and splits.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::json;
use symbiont_contracts::tx::TxKind;
use symbiont_proto::v1 as pb;

use crate::client::{self, Global, connect, refused};
use crate::common::{Money, all_pages, id, submit_one, submit_with_money, table};
use crate::output::outln;
use crate::units::{
    format_decimal, format_duration_ms, format_time_ms, parse_duration_ms, parse_percent_bp,
    parse_time_ms,
};

#[derive(Subcommand)]
pub enum PoolCommand {
    /// Create a pool (signed with an admin or operator key, --key): its
    /// members and their sharing keys (summing to 100%), and its period
    /// schedule. Your firm operates it: it acknowledges payments into it.
    /// Each member's admin then joins (`pool join`); a member that creates
    /// the pool with its admin key has joined already. The pool's id is
    /// the transaction's id.
    ///
    /// Example: symbiont --key hub.pem pool create "PV field" --share city=33.33%
    /// --share pharma=33.33% --share power=33.34% --start 2027-01-01 --period 30d
    Create {
        /// The pool's name.
        name: String,
        /// A member and its sharing key: FIRM=PERCENT (repeatable).
        #[arg(long = "share", value_name = "FIRM=PERCENT", required = true)]
        shares: Vec<String>,
        /// When period 0 starts (block time): now, now+1h, 2027-01-01, ...
        #[arg(long)]
        start: String,
        /// Length of a period: 1d, 30d, ...
        #[arg(long)]
        period: String,
    },
    /// A member firm's admin joins a pool (--key: the admin key); the pool
    /// is active once every member has joined.
    ///
    /// Example: symbiont --key pharma-admin.pem pool join 7d0a…c3
    Join {
        /// The pool's id.
        pool: String,
    },
    /// A member posts income it collected (positive) or a cost it paid
    /// (negative) for the pool in a period (signed with an operator key,
    /// --key). Money moves at the split.
    ///
    /// Example: symbiont --key power-ops.pem pool post 7d0a…c3 0 -- -500.00
    Post {
        /// The pool's id.
        pool: String,
        /// The period.
        period: u32,
        /// The amount in the network's currency (negative: a cost).
        #[arg(allow_hyphen_values = true)]
        amount: String,
    },
    /// Another member objects to a posting before the split (operator key,
    /// --key): the amount stays out of the split unless a facilitator
    /// accepts it.
    ///
    /// Example: symbiont --key city-ops.pem pool object 7d0a…c3 0 4be1…90
    Object {
        /// The pool's id.
        pool: String,
        /// The period.
        period: u32,
        /// The posting's id (the tx id of the post; `pool show` lists them).
        posting: String,
    },
    /// A facilitator resolves an objection before the split (--key: an
    /// operator key of the facilitator).
    ///
    /// Example: symbiont --key hub-ops.pem pool resolve 7d0a…c3 0 4be1…90 --accept
    Resolve {
        /// The pool's id.
        pool: String,
        /// The period.
        period: u32,
        /// The posting's id.
        posting: String,
        /// Put the amount back into the split.
        #[arg(long, conflicts_with = "refuse", required_unless_present = "refuse")]
        accept: bool,
        /// Keep it out of the split.
        #[arg(long)]
        refuse: bool,
    },
    /// Split a finished period among the members by their keys (a member's
    /// operator key, --key).
    ///
    /// Example: symbiont --key power-ops.pem pool split 7d0a…c3 0
    Split {
        /// The pool's id.
        pool: String,
        /// The period.
        period: u32,
    },
    /// Show a pool: members, keys, and each period's postings and split.
    ///
    /// Example: symbiont pool show 7d0a…c3
    Show {
        /// The pool's id.
        pool: String,
    },
    /// List pools.
    ///
    /// Example: symbiont pool list --firm pharma
    List {
        /// Only pools this firm is a member or the operator of.
        #[arg(long)]
        firm: Option<String>,
    },
}

pub fn run(command: PoolCommand, global: &Global) -> Result<()> {
    match command {
        PoolCommand::Create {
            name,
            shares,
            start,
            period,
        } => {
            let mut keys = BTreeMap::new();
            for share in &shares {
                let Some((firm, percent)) = share.split_once('=') else {
                    bail!("--share {share:?}: FIRM=PERCENT expected");
                };
                let bp = parse_percent_bp(percent).with_context(|| format!("--share {share:?}"))?;
                if keys.insert(firm.to_string(), bp).is_some() {
                    bail!("--share: {firm} is named twice");
                }
            }
            let kind = TxKind::CreatePool {
                name,
                keys,
                start_ms: parse_time_ms(&start).context("--start")?,
                period_ms: parse_duration_ms(&period).context("--period")?,
            };
            submit_one(global, kind, |outcome| {
                if let client::Outcome::Applied { tx_id, .. } = outcome {
                    outln!(
                        "pool {tx_id} created: each member's admin joins with `symbiont pool join {tx_id}`"
                    )?;
                }
                Ok(())
            })
        }
        PoolCommand::Join { pool } => {
            let pool = id(&pool)?;
            submit_one(global, TxKind::JoinPool { pool }, |_| Ok(()))
        }
        PoolCommand::Post {
            pool,
            period,
            amount,
        } => {
            let pool = id(&pool)?;
            submit_with_money(global, |money| {
                Ok(TxKind::PostPoolAmount {
                    pool,
                    period,
                    amount: money.parse(&amount, "AMOUNT")?,
                })
            })
        }
        PoolCommand::Object {
            pool,
            period,
            posting,
        } => {
            let (pool, posting) = (id(&pool)?, id(&posting)?);
            submit_one(
                global,
                TxKind::ObjectPoolAmount {
                    pool,
                    period,
                    posting,
                },
                |_| Ok(()),
            )
        }
        PoolCommand::Resolve {
            pool,
            period,
            posting,
            accept,
            refuse: _,
        } => {
            let (pool, posting) = (id(&pool)?, id(&posting)?);
            submit_one(
                global,
                TxKind::ResolvePoolObjection {
                    pool,
                    period,
                    posting,
                    accept,
                },
                |_| Ok(()),
            )
        }
        PoolCommand::Split { pool, period } => {
            let pool = id(&pool)?;
            submit_one(global, TxKind::SplitPool { pool, period }, |_| {
                outln!("`symbiont pool show {pool}` shows the split")?;
                Ok(())
            })
        }
        PoolCommand::Show { pool } => client::runtime()?.block_on(show(global, &pool)),
        PoolCommand::List { firm } => client::runtime()?.block_on(list(global, firm)),
    }
}

fn pool_json(p: &pb::Pool) -> serde_json::Value {
    json!({
        "id": hex::encode(&p.id),
        "name": p.name,
        "operator": p.operator,
        "shares": p.keys.iter().map(|k| json!({
            "member": k.member,
            "share": format!("{}%", format_decimal(i128::from(k.basis_points), 2)),
        })).collect::<Vec<_>>(),
        "start": format_time_ms(p.start_ms),
        "period": format_duration_ms(p.period_ms),
        "joined": p.joined,
        "waiting": p.waiting,
        "active": p.active,
    })
}

async fn show(global: &Global, text: &str) -> Result<()> {
    let pool_id = id(text)?;
    let client = connect(&global.node).await?;
    let (periods, (currency, pool)) = all_pages(|page_token| {
        let mut query = client.query.clone();
        async move {
            let answer = query
                .get_pool(pb::GetPoolRequest {
                    id: pool_id.0.to_vec(),
                    page_size: 1000,
                    page_token,
                })
                .await
                .map_err(refused)?
                .into_inner();
            Ok((
                answer.periods,
                answer.next_page_token,
                (answer.currency.unwrap_or_default(), answer.pool),
            ))
        }
    })
    .await?;
    let money = Money(currency);
    let pool = pool.context("the node's answer has no pool")?;
    let periods_json: Vec<_> = periods
        .iter()
        .map(|p| {
            json!({
                "period": p.period,
                "gain_net": money.show(p.gain_net),
                "split_done": p.split_done,
                "split": p.split.iter().map(|s| json!({
                    "member": s.member, "amount": money.show(s.amount),
                })).collect::<Vec<_>>(),
                "postings": p.postings.iter().map(|s| json!({
                    "id": hex::encode(&s.id),
                    "member": s.member,
                    "amount": money.show(s.amount),
                    "status": s.status,
                    "by": s.by,
                    "counts": s.counts,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    if global.json {
        let mut value = pool_json(&pool);
        value["periods"] = json!(periods_json);
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    outln!(
        "pool {} \"{}\", operated by {}",
        hex::encode(&pool.id),
        pool.name,
        pool.operator
    )?;
    outln!(
        "periods of {} from {}; {}",
        format_duration_ms(pool.period_ms),
        format_time_ms(pool.start_ms),
        if pool.active {
            "active".to_string()
        } else {
            format!("waiting for {} to join", pool.waiting.join(", "))
        }
    )?;
    let rows: Vec<Vec<String>> = pool
        .keys
        .iter()
        .map(|k| {
            vec![
                k.member.clone(),
                format!("{}%", format_decimal(i128::from(k.basis_points), 2)),
                if pool.joined.contains(&k.member) {
                    "joined"
                } else {
                    "waiting"
                }
                .to_string(),
            ]
        })
        .collect();
    table(&["MEMBER", ">SHARE", "STATUS"], &rows)?;
    for p in &periods {
        outln!()?;
        outln!(
            "period {}: gain-sharing net {}{}",
            p.period,
            money.show(p.gain_net),
            if p.split_done {
                ", split"
            } else {
                ", not split yet"
            }
        )?;
        let rows: Vec<Vec<String>> = p
            .postings
            .iter()
            .map(|s| {
                vec![
                    hex::encode(&s.id),
                    s.member.clone(),
                    money.show(s.amount),
                    if s.by.is_empty() {
                        s.status.clone()
                    } else {
                        format!("{} by {}", s.status, s.by)
                    },
                    if s.counts { "yes" } else { "no" }.to_string(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            table(&["POSTING", "MEMBER", ">AMOUNT", "STATUS", "COUNTS"], &rows)?;
        }
        if p.split_done {
            let rows: Vec<Vec<String>> = p
                .split
                .iter()
                .map(|s| vec![s.member.clone(), money.show(s.amount)])
                .collect();
            table(&["MEMBER", ">PART"], &rows)?;
        }
    }
    Ok(())
}

async fn list(global: &Global, firm: Option<String>) -> Result<()> {
    let client = connect(&global.node).await?;
    let (pools, ()) = all_pages(|page_token| {
        let mut query = client.query.clone();
        let firm = firm.clone().unwrap_or_default();
        async move {
            let answer = query
                .list_pools(pb::ListPoolsRequest {
                    firm,
                    page_size: 1000,
                    page_token,
                })
                .await
                .map_err(refused)?
                .into_inner();
            Ok((answer.pools, answer.next_page_token, ()))
        }
    })
    .await?;
    if global.json {
        let items: Vec<_> = pools.iter().map(pool_json).collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({ "pools": items }))?
        )?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = pools
        .iter()
        .map(|p| {
            vec![
                hex::encode(&p.id),
                p.name.clone(),
                p.operator.clone(),
                p.keys
                    .iter()
                    .map(|k| {
                        format!(
                            "{}={}%",
                            k.member,
                            format_decimal(i128::from(k.basis_points), 2)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                if p.active { "active" } else { "waiting" }.to_string(),
            ]
        })
        .collect();
    table(&["ID", "NAME", "OPERATOR", "SHARES", "STATUS"], &rows)
}
