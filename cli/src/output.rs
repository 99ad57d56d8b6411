//! Everything `symbiont` prints goes through here, so that one rule holds
//! for every command: when the reader of our output goes away (`| head`,
//! `| grep -q`, a closed terminal), the command stops quietly.
//!
//! The Rust runtime ignores SIGPIPE, so a write to a closed pipe fails with
//! `io::ErrorKind::BrokenPipe`, and `println!` turns that failure into a
//! panic ("failed printing to stdout"). Commands therefore print with
//! [`outln!`], which returns the error, `?` carries it up to `main`, and
//! [`exit_code`] turns it into a quiet exit. (The alternative, restoring
//! the default SIGPIPE action at start-up, needs an `unsafe` FFI call that
//! is not portable without `libc`; this way is plain Rust and also reports
//! the other write errors, such as a full disk, instead of panicking on them.)
//! `println!`, `print!`, `eprintln!` and `eprint!` are disallowed in this
//! crate (`cli/clippy.toml`).

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

/// `println!` that returns the write error instead of panicking:
/// `outln!("{x}")?;` in a command.
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Write one line to stdout.
pub fn line(args: fmt::Arguments<'_>) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .map_err(output_error)
}

/// Push out anything still buffered, so that its write error is seen here
/// and not dropped at exit.
pub fn flush() -> io::Result<()> {
    io::stdout().lock().flush().map_err(output_error)
}

/// Say which write failed, keeping the kind for [`exit_code`].
fn output_error(error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("cannot write to stdout: {error}"))
}

/// The process's exit status for a command's result, after reporting an
/// error on stderr.
///
/// A closed output (broken pipe) exits quietly with status 0: the reader
/// chose to stop reading (`symbiont genesis check FILE --json | head`), the
/// command has done its work by the time it prints its result (validated
/// the file, written the key), and a failure status would break scripts
/// that run such pipelines under `set -o pipefail`. ripgrep does the
/// same; C tools instead die of SIGPIPE (shell status 141).
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // If stderr is closed too there is no one left to tell.
            let _ = writeln!(io::stderr().lock(), "error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io_error| io_error.kind() == io::ErrorKind::BrokenPipe)
    })
}
