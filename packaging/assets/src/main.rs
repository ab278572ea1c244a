//! `compartment-assets OUT_DIR`: writes the man pages, shell completions and default
//! settings file the Debian package ships, rendered from the daemon's and the CLI's clap
//! definitions.
//!
//! # Layout
//!
//! - [`man`]: compartmentctl(1), a page per subcommand, and compartmentd(8).
//! - [`completions`]: bash, zsh and fish completions for `compartmentctl` and `compartment`.
//! - [`defaults`]: `/etc/default/compartmentd`, every daemon setting commented out.
//!
//! Output, relative to `OUT_DIR` (the packaging script gzips the pages and moves
//! everything to its place):
//!
//! ```text
//! man/man1/compartmentctl.1  man/man1/compartmentctl-user-invite.1 …  man/man8/compartmentd.8
//! completions/bash/compartmentctl  completions/bash/compartment
//! completions/zsh/_compartmentctl  completions/zsh/_compartment
//! completions/fish/compartmentctl.fish  completions/fish/compartment.fish
//! default/compartmentd
//! ```

#![forbid(unsafe_code)]

mod completions;
mod defaults;
mod man;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

/// Writes compartment's man pages, shell completions and /etc/default file into a directory.
#[derive(Debug, Parser)]
#[command(name = "compartment-assets", version)]
struct Args {
    /// The directory to write into; `man/`, `completions/` and `default/` are created in it
    #[arg(value_name = "OUT_DIR")]
    out_dir: PathBuf,

    /// The date in the man pages' footer, YYYY-MM-DD (the packaging script passes the
    /// changelog's, so that builds are reproducible) [default: none]
    #[arg(long, value_name = "DATE")]
    date: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match write_all(&args) {
        Ok(count) => {
            println!("wrote {count} files under {}", args.out_dir.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("compartment-assets: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Writes every asset, returning how many files it wrote.
fn write_all(args: &Args) -> Result<usize, String> {
    let date = args.date.as_deref().unwrap_or_default();
    let mut files = man::pages(date).map_err(|err| format!("cannot render a man page: {err}"))?;
    files
        .extend(completions::scripts().map_err(|err| format!("cannot write a completion: {err}"))?);
    files.push(defaults::file());
    for file in &files {
        write_file(&args.out_dir.join(&file.path), &file.contents)?;
    }
    Ok(files.len())
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    }
    std::fs::write(path, contents).map_err(|err| format!("cannot write {}: {err}", path.display()))
}

/// One file to write, relative to the output directory.
pub struct Asset {
    pub path: PathBuf,
    pub contents: Vec<u8>,
}
