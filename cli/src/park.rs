//! A local park: `symbiont-node` processes on 127.0.0.1 made from a
//! genesis template (`symbiont-node testnet --genesis`), started, killed
//! and restarted one by one. `symbiont demo` and `symbiont bench` run on it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use symbiont_node::ports::{GRPC_PORT_OFFSET, METRICS_PORT_OFFSET};
use symbiont_proto::v1::StatusRequest;

use crate::client::connect;

/// One node as `symbiont-node testnet --json` describes it.
#[derive(Clone, Debug, Deserialize)]
pub struct ParkNode {
    pub name: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub grpc: String,
    pub metrics_address: String,
    pub validator: bool,
}

pub struct Park {
    /// Where the network lives: genesis.toml, firms/<firm>.pem, <node>/.
    pub dir: PathBuf,
    pub nodes: Vec<ParkNode>,
    binary: PathBuf,
    children: Vec<Option<Child>>,
    /// Leave the processes running when the park is dropped, in their own
    /// process group (so a Ctrl-C in this terminal does not reach them).
    pub keep: bool,
}

/// The `symbiont-node` binary: next to this executable (a cargo build
/// puts both in target/<profile>/), else on the PATH.
/// The directory for a park of `what` (demo, bench): `dir` if given (it
/// must not exist or be empty), else a new one under the system's
/// temporary directory.
pub fn run_dir(dir: Option<&Path>, what: &str) -> Result<PathBuf> {
    let dir = match dir {
        Some(dir) => {
            if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
                bail!("--dir {} is not empty", dir.display());
            }
            dir.to_path_buf()
        }
        None => std::env::temp_dir().join(format!(
            "symbiont-{what}-{}-{}",
            std::process::id(),
            crate::units::now_ms()
        )),
    };
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub fn node_binary() -> Result<PathBuf> {
    let name = format!("symbiont-node{}", std::env::consts::EXE_SUFFIX);
    if let Some(dir) = std::env::current_exe()?.parent() {
        let beside = dir.join(&name);
        if beside.is_file() {
            return Ok(beside);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(&name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "cannot find {name} next to this program or on the PATH: build it with `cargo build --release` (it builds both)"
    )
}

/// A p2p port such that `count` consecutive ports and their gRPC and
/// metrics ports are free now (checked, not reserved).
pub fn free_base_port(count: u16) -> Result<u16> {
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    for _ in 0..1000 {
        let first = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if first < 60000
            && (0..count).all(|i| {
                (i == 0 || free(first + i))
                    && free(first + GRPC_PORT_OFFSET + i)
                    && free(first + METRICS_PORT_OFFSET + i)
            })
        {
            return Ok(first);
        }
    }
    bail!("found no {count} free consecutive ports on 127.0.0.1")
}

impl Park {
    /// Writes the network of `genesis` (a template: its keys are replaced)
    /// into `dir/net`.
    pub fn create(dir: &Path, genesis: &str, keep: bool) -> Result<Park> {
        let binary = node_binary()?;
        std::fs::create_dir_all(dir)?;
        let template = dir.join("template.toml");
        std::fs::write(&template, genesis)?;
        let nodes_count = genesis.matches("[[nodes]]").count() as u16;
        let port = free_base_port(nodes_count.max(1))?;
        let net = dir.join("net");
        let output = Command::new(&binary)
            .args(["testnet", "--json", "--genesis"])
            .arg(&template)
            .arg("--dir")
            .arg(&net)
            .args(["--base-port", &port.to_string()])
            .output()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        Park::from_output(binary, net, output, keep)
    }

    /// A network of `validators` validators, one firm each (`firm-<i>`),
    /// as `symbiont-node testnet --validators` makes it, in `dir/net`.
    pub fn create_testnet(dir: &Path, validators: usize) -> Result<Park> {
        let binary = node_binary()?;
        std::fs::create_dir_all(dir)?;
        let port = free_base_port(validators as u16)?;
        let net = dir.join("net");
        let output = Command::new(&binary)
            .args(["testnet", "--json", "--validators", &validators.to_string()])
            .arg("--dir")
            .arg(&net)
            .args(["--base-port", &port.to_string()])
            .output()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        Park::from_output(binary, net, output, false)
    }

    fn from_output(
        binary: PathBuf,
        net: PathBuf,
        output: std::process::Output,
        keep: bool,
    ) -> Result<Park> {
        if !output.status.success() {
            bail!(
                "{} testnet failed: {}",
                binary.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let nodes: Vec<ParkNode> = serde_json::from_slice(&output.stdout)
            .context("symbiont-node testnet printed no node list")?;
        let children = nodes.iter().map(|_| None).collect();
        Ok(Park {
            dir: net,
            nodes,
            binary,
            children,
            keep,
        })
    }

    /// The index of the node named `name`.
    pub fn index(&self, name: &str) -> Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .with_context(|| format!("the park has no node {name}"))
    }

    /// A firm's admin key file.
    pub fn admin_key(&self, firm: &str) -> PathBuf {
        self.dir.join("firms").join(format!("{firm}.pem"))
    }

    /// Starts node `i` (`symbiont-node run`), its output in `<node>/node.log`.
    pub fn start(&mut self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("node.log"))?;
        let mut command = Command::new(&self.binary);
        command
            .args(["run", "--config"])
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if self.keep {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", node.name))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// SIGKILL to node `i`, as a power cut would.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut child) = self.children[i].take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Waits until node `i` answers Status with a height of at least
    /// `height`; returns its height.
    pub async fn wait_for_height(&self, i: usize, height: u64, timeout: Duration) -> Result<u64> {
        let start = Instant::now();
        loop {
            if let Ok(mut client) = connect(&self.nodes[i].grpc).await
                && let Ok(status) = client.node.status(StatusRequest {}).await
            {
                let at = status.into_inner().height;
                if at >= height {
                    return Ok(at);
                }
            }
            if start.elapsed() > timeout {
                bail!(
                    "{} did not reach height {height} within {} s (its log: {})",
                    self.nodes[i].name,
                    timeout.as_secs(),
                    self.nodes[i].dir.join("node.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process ids of the running nodes.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.nodes
            .iter()
            .zip(&self.children)
            .filter_map(|(node, child)| Some((node.name.clone(), child.as_ref()?.id())))
            .collect()
    }
}

impl Drop for Park {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
