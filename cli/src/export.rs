//! `symbiont export`: stream a node's ledger into an export file
//! (docs/export-format.md) for `symbiont audit` or anyone's verifier.
//!
//! The file is written as FILE.partial and renamed to FILE once its end
//! frame is written and synced, so FILE is always complete. An
//! interrupted export leaves FILE.partial; the next run with the same
//! --out keeps its complete, sound frames (it cuts off a frame cut short)
//! and asks the node for the rest, after checking that the partial file
//! holds this node's genesis.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, IsTerminal, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use symbiont_contracts::codec;
use symbiont_contracts::hash::Hash;
use symbiont_node::block::Block;
use symbiont_node::export::{self, BlockFrame, EndFrame, ExportWriter};
use symbiont_proto::v1::{GetGenesisRequest, StatusRequest, StreamBlocksRequest, StreamedBlock};

use crate::client::{Global, connect, refused, runtime};
use crate::output::outln;

/// Largest block message accepted from the node (a block is at most
/// `MAX_BLOCK_BYTES`; the certificate and results add little).
const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// The partial file is synced every this many blocks (and at the end).
const SYNC_EVERY_BLOCKS: u64 = 1000;

/// The options of `symbiont export` (its help is in main.rs).
#[derive(Args)]
pub struct ExportArgs {
    /// The export file to write (FILE.partial while it is being written).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The last height to export (default: the node's tip when the export
    /// starts).
    #[arg(long, value_name = "HEIGHT")]
    to: Option<u64>,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Serialize)]
struct Exported {
    file: String,
    chain_id: String,
    genesis_hash: String,
    height: u64,
    block_hash: String,
    /// Heights this run fetched (a resumed export fetched only the rest).
    fetched_from: u64,
    bytes: u64,
    resumed: bool,
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// A progress bar on stderr over heights, hidden when stderr is not a
/// terminal.
pub fn progress_bar(total: u64, unit: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    let template = format!("{{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {unit} ({{eta}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

pub fn run(args: ExportArgs, global: &Global) -> Result<()> {
    if args.out.exists() && !args.force {
        bail!(
            "{} exists: give --force to overwrite it, or another --out",
            args.out.display()
        );
    }
    runtime()?.block_on(export(&args, global))
}

async fn export(args: &ExportArgs, global: &Global) -> Result<()> {
    let mut client = connect(&global.node).await?;
    let genesis = client
        .node
        .get_genesis(GetGenesisRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    let genesis_hash = Hash::of_bytes(&genesis.genesis);
    if genesis.genesis_hash != genesis_hash.0 {
        bail!(
            "the node's genesis bytes do not hash to the genesis hash it gives: is it a Symbiont node?"
        );
    }
    let chain: symbiont_contracts::genesis::Genesis = codec::decode(&genesis.genesis)
        .context("the node's genesis does not decode: is this CLI of the node's version?")?;
    let status = client
        .node
        .status(StatusRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    let target = match args.to {
        Some(to) if to > status.height => bail!(
            "--to {to} is beyond the node's tip (height {}): export up to the tip, or wait",
            status.height
        ),
        Some(to) => to,
        None => status.height,
    };

    let partial = partial_path(&args.out);
    let (mut writer, mut last_height, mut last_hash, resumed) =
        open_partial(&partial, &genesis.genesis, genesis_hash, target)?;
    let fetched_from = last_height + 1;
    let bar = progress_bar(target, "blocks");
    bar.set_position(last_height);
    if last_height < target {
        let mut stream = client
            .stream
            .clone()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .blocks(StreamBlocksRequest {
                from_height: last_height + 1,
            })
            .await
            .map_err(refused)?
            .into_inner();
        while last_height < target {
            let Some(message) = stream.message().await.map_err(|status| {
                refused(status).context(format!(
                    "the block stream broke after height {last_height}: run the same command again to resume"
                ))
            })?
            else {
                bail!("the node ended the block stream after height {last_height}: run the same command again to resume");
            };
            let (frame, hash) = frame_of(message, last_height + 1)?;
            writer
                .block(&frame)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            last_height = frame.height;
            last_hash = hash;
            if last_height % SYNC_EVERY_BLOCKS == 0 {
                writer.get_mut().flush()?;
                writer.get_mut().get_ref().sync_data()?;
            }
            bar.set_position(last_height);
        }
    }
    bar.finish_and_clear();
    let bytes = writer.written()
        + export::FRAME_OVERHEAD_BYTES
        + EndFrame {
            height: 0,
            block_hash: last_hash,
        }
        .payload()
        .len() as u64;
    let file = writer
        .finish(EndFrame {
            height: last_height,
            block_hash: last_hash,
        })
        .with_context(|| format!("cannot write {}", partial.display()))?;
    file.get_ref().sync_all()?;
    drop(file);
    fs::rename(&partial, &args.out).with_context(|| {
        format!(
            "cannot rename {} to {}",
            partial.display(),
            args.out.display()
        )
    })?;
    let exported = Exported {
        file: args.out.display().to_string(),
        chain_id: chain.chain_id,
        genesis_hash: genesis_hash.to_string(),
        height: last_height,
        block_hash: last_hash.to_string(),
        fetched_from,
        bytes,
        resumed,
    };
    if global.json {
        outln!("{}", serde_json::to_string_pretty(&exported)?)?;
    } else {
        outln!(
            "exported chain {} heights 1 to {} ({} bytes{}) to {}",
            exported.chain_id,
            exported.height,
            exported.bytes,
            if resumed {
                format!(", resumed at height {fetched_from}")
            } else {
                String::new()
            },
            exported.file
        )?;
        outln!("check it with: symbiont audit {}", exported.file)?;
    }
    Ok(())
}

/// The export frame of a streamed block, checked to be `expected`'s.
fn frame_of(message: StreamedBlock, expected: u64) -> Result<(BlockFrame, Hash)> {
    if message.height != expected {
        bail!(
            "the node sent height {} where height {expected} was due",
            message.height
        );
    }
    if message.results_missing {
        bail!(
            "the node has no stored results for height {expected} (its data dir predates stored events): export from a node that stores them"
        );
    }
    if message.results.len() != message.tx_count as usize {
        bail!(
            "the node sent {} results for the {} transactions of height {expected}",
            message.results.len(),
            message.tx_count
        );
    }
    let block: Block = codec::decode(&message.block)
        .with_context(|| format!("the node's block {expected} does not decode"))?;
    let hash = block.hash();
    if message.block_hash != hash.0 {
        bail!("the node's block {expected} does not hash to the block hash it gives");
    }
    Ok((
        BlockFrame {
            height: expected,
            block: message.block,
            certificate: message.certificate,
            results: message.results,
        },
        hash,
    ))
}

type Writer = ExportWriter<BufWriter<File>>;

/// Opens FILE.partial: resumes it when it holds this genesis, else starts
/// it. Returns the writer, the last height and block hash in it, and
/// whether it resumed.
fn open_partial(
    partial: &Path,
    genesis: &[u8],
    genesis_hash: Hash,
    target: u64,
) -> Result<(Writer, u64, Hash, bool)> {
    if partial.exists() {
        let scanned = File::open(partial)
            .map_err(export::ExportError::Io)
            .and_then(|file| export::scan(std::io::BufReader::new(file)));
        match scanned {
            Ok(found) if found.genesis == genesis => {
                if found.last_height > target {
                    bail!(
                        "{} already holds heights up to {}, beyond height {target}: delete it or export up to its height",
                        partial.display(),
                        found.last_height
                    );
                }
                let last_hash = match &found.last_block {
                    Some(bytes) => codec::decode::<Block>(bytes)
                        .with_context(|| {
                            format!(
                                "the last block of {} does not decode: delete it",
                                partial.display()
                            )
                        })?
                        .hash(),
                    None => genesis_hash,
                };
                let mut file = OpenOptions::new().write(true).open(partial)?;
                // Drop a frame cut short (and an end frame: it is
                // written again).
                file.set_len(found.valid_bytes)?;
                file.seek(SeekFrom::End(0))?;
                let writer = ExportWriter::resume(BufWriter::new(file), found.valid_bytes);
                return Ok((writer, found.last_height, last_hash, true));
            }
            Ok(_) => bail!(
                "{} is an export of another chain (another genesis): delete it or choose another --out",
                partial.display()
            ),
            Err(error) => bail!(
                "{} cannot be resumed ({error}): delete it to start again",
                partial.display()
            ),
        }
    }
    let file =
        File::create(partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let writer = ExportWriter::new(BufWriter::new(file), genesis)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    Ok((writer, 0, genesis_hash, false))
}
